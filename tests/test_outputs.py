"""Outputs: written atomically, never half a file; fingerprints bitwise repeatable; interrupts clean."""
import subprocess
import sys

import pytest

from provenance.backends import get_backend
from provenance.atomic import atomic_path, write_json
from provenance.fingerprint import fingerprint_model, load_fingerprint


def test_atomic_write_leaves_nothing_on_interrupt(tmp_path):
    target = tmp_path / "report.json"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "r.json"
    write_json(target, {"a": 1})
    write_json(target, {"a": 2})
    assert target.read_text().strip().endswith("}") and '"a": 2' in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_fingerprints_are_bitwise_identical_across_runs(base_dir, tmp_path):
    cpu = get_backend("cpu")
    paths = []
    for k in range(2):
        fp = fingerprint_model(base_dir, cpu, label="base")
        fp.save(tmp_path / f"fp{k}.safetensors")
        paths.append(tmp_path / f"fp{k}.safetensors")
    assert paths[0].read_bytes() == paths[1].read_bytes()
    loaded = load_fingerprint(paths[0])
    assert loaded.doc["model"]["content_hash"] and loaded.tensors


INTERRUPT_SCRIPT = """
import sys
import provenance.fingerprint as f
from provenance.cli import main
real = f.Progress.step
calls = []
def step(self, what):
    calls.append(what)
    if len(calls) == 2:
        raise KeyboardInterrupt
    real(self, what)
f.Progress.step = step
sys.exit(main(["fingerprint", sys.argv[1], "-o", sys.argv[2]]))
"""


def test_ctrl_c_mid_fingerprint_exits_130_and_writes_nothing(base_dir, tmp_path):
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-c", INTERRUPT_SCRIPT, str(base_dir), str(out / "fp.safetensors")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 130, result.stderr
    assert "interrupted" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists() or list(out.iterdir()) == []


def test_model_directory_is_never_written(base_dir, tmp_path):
    before = {p.name: p.stat().st_mtime_ns for p in base_dir.iterdir()}
    from provenance.cli import main
    assert main(["--quiet", "compare", str(base_dir), str(base_dir), "--report", str(tmp_path / "r"), "--json"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in base_dir.iterdir()} == before
