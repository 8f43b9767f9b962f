"""Opening a model: the path a user gives, through a reader, into a canonical view."""
from __future__ import annotations

from pathlib import Path

from .arch import ModelView
from . import limits
from .io import open_source
from .schemas import SCHEMA_VERSIONS


def open_model(path: str | Path) -> ModelView:
    view = ModelView.from_source(open_source(path))
    try:  # before any per-layer loop: a name like layers.1000000000 must not become a billion iterations
        limits.check("layers", view.num_layers, view.source.root, "layers named by the tensors")
    except BaseException:
        view.source.close()
        raise
    return view


def inspect_model(path: str | Path, *, with_hashes: bool = True) -> dict:
    """Family and shape facts, roles and unmapped tensors, from headers alone."""
    with open_model(path) as view:
        source = view.source
        out = {
            "schema_version": SCHEMA_VERSIONS["inspect"],
            "path": str(path),
            "format": source.format,
            "family": view.family.name,
            **view.facts,
            "sha256": source.sha256() if with_hashes else {},
            "content_hash": source.content_hash() if with_hashes else None,
            "roles": {name: _role_label(ref) for name, ref in sorted(view.roles.items())},
            "unmapped": view.unmapped,
            "has_vocab": source.vocab_tokens is not None,
        }
    return out


def _role_label(ref) -> str:
    label = ref.role
    if ref.layer is not None:
        label = f"layers.{ref.layer}.{label}"
    if ref.expert is not None:
        label += f"[{ref.expert}]"
    return label
