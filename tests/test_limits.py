"""Limits: documented defaults, raised or lowered by environment variable, checked before the work."""
from __future__ import annotations

import os

import pytest
from safetensors.torch import save_file

from provenance import limits
from provenance.errors import MalformedInput
from provenance.io import open_source

from .hostile_corpus import valid_state


def test_every_limit_has_a_positive_default_and_a_description():
    assert limits.LIMITS and all(d > 0 and what for d, what in limits.LIMITS.values())
    table = limits.table_markdown()
    assert all(f"PROVENANCE_MAX_{name.upper()}" in table for name in limits.LIMITS)


def test_environment_variable_lowers_and_raises_a_limit(tmp_path, monkeypatch):
    save_file(valid_state(), tmp_path / "model.safetensors")
    n = len(valid_state())
    monkeypatch.setenv("PROVENANCE_MAX_TENSORS", str(n - 1))
    with pytest.raises(MalformedInput, match="PROVENANCE_MAX_TENSORS"):
        open_source(tmp_path / "model.safetensors")
    monkeypatch.setenv("PROVENANCE_MAX_TENSORS", str(n))
    with open_source(tmp_path / "model.safetensors") as src:
        assert len(src.infos()) == n


def test_a_bad_limit_value_is_refused(monkeypatch):
    monkeypatch.setenv("PROVENANCE_MAX_LAYERS", "many")
    with pytest.raises(MalformedInput, match="not an integer"):
        limits.limit("layers")
    monkeypatch.setenv("PROVENANCE_MAX_LAYERS", "0")
    with pytest.raises(MalformedInput, match="positive"):
        limits.limit("layers")


@pytest.mark.parametrize("kind", ["fifo", "directory", "device"])
def test_only_regular_files_are_read(tmp_path, kind):
    target = {"fifo": tmp_path / "f", "directory": tmp_path, "device": "/dev/zero"}[kind]
    if kind == "fifo":
        os.mkfifo(target)
    with pytest.raises(MalformedInput, match="FIFO|directory|device"):
        limits.regular_file(target, "file")
