import copy
import json
from pathlib import Path

import pytest
import torch

from provenance import errors
from provenance.cli import main
from provenance.drift import check_determinism, compare_reports, run_drift
from provenance.drift.compare import cpu_capability
from provenance.drift.emulation import round_mantissa
from provenance.errors import IncompatibleInputs

PAIR = ("base-s0", "base-s0-finetune", "base-s1")


@pytest.fixture(scope="module")
def report(zoo):
    return run_drift([str(zoo(n)) for n in PAIR], list(PAIR), ["cpu"], ["fp32", "bf16", "fp16"], progress=False)


def rows(report, **match):
    return [r for r in report["rows"] if all(r[k] == v for k, v in match.items())]


def test_cpu_fp32_is_near_float64(report):
    fp32 = rows(report, backend="cpu", dtype="fp32", mode="ieee", emulated=False)
    assert len(fp32) == 16  # 8 kernels, deterministic algorithms off and on
    assert all(r["median_rel_err"] < 1e-6 and r["cosine"] > 0.999999 for r in fp32)
    assert all(r["deterministic"] for r in fp32)


def test_half_precision_rows_show_larger_errors(report):
    for dtype in ("bf16", "fp16"):
        half = {r["kernel"]: r for r in rows(report, backend="cpu", dtype=dtype)}
        full = {r["kernel"]: r for r in rows(report, backend="cpu", dtype="fp32", deterministic_algorithms=False)}
        assert half["block_forward"]["median_rel_err"] > 10 * full["block_forward"]["median_rel_err"]
        assert half["std"]["median_rel_err"] > 10 * full["std"]["median_rel_err"]


def test_emulated_rows_are_labelled_and_in_the_expected_range(report):
    tf32 = {r["kernel"]: r for r in rows(report, mode="tf32")}
    assert tf32 and all(r["emulated"] and r["backend"] == "cpu-emulated-tf32" for r in tf32.values())
    assert "std" not in tf32  # reduced-precision matmul inputs do not apply to a reduction
    assert 1e-5 < tf32["anchor_features"]["median_rel_err"] < 2e-3  # published TF32 class: ~2.5e-4 median
    hf32 = {r["kernel"]: r for r in rows(report, mode="hf32")}
    assert hf32["anchor_features"]["median_rel_err"] < tf32["anchor_features"]["median_rel_err"]  # one more mantissa bit
    reordered = rows(report, mode="reordered")
    assert reordered and all(r["median_rel_err"] < 1e-5 for r in reordered)
    assert report["emulations"]["tf32"] and report["identity"]["cpu-emulated-tf32"]["emulated"]


def test_every_verdict_is_stable_with_a_margin(report):
    assert [v["verdict"] for v in report["verdicts"]] == ["derived", "independent", "independent"]
    # Well clear of 1, where drift could flip a verdict. The smallest measured: 8.5 (an independent pair on a zoo
    # built on torch's AVX2 path), 30 on AVX-512; the weights differ between the two, so does the margin.
    for v in report["verdicts"]:
        assert v["stable"] and v["margin_to_drift"] > 4


def test_report_is_json_with_the_documented_fields(report):
    doc = json.loads(json.dumps(report, allow_nan=False))
    for key in ("schema_version", "inputs", "identity", "rows", "verdicts"):
        assert key in doc
    for key in ("kernel", "backend", "dtype", "mode", "emulated", "max_rel_err", "median_rel_err", "max_ulp", "cosine",
                "deterministic", "time_ms"):
        assert key in doc["rows"][0]
    for key in ("pair", "verdict", "stable", "margin_to_drift"):
        assert key in doc["verdicts"][0]


def test_determinism_check_catches_a_nondeterministic_kernel():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, generator=g) * 10.0 ** torch.randint(-6, 6, (300,), generator=g)
    calls = [0]

    def shuffled_sum(t):  # float32 accumulation in a new order on every call, like an atomics-based GPU reduction
        calls[0] += 1
        acc = torch.zeros((), dtype=torch.float32)
        for v in t[torch.randperm(t.numel(), generator=torch.Generator().manual_seed(calls[0]))]:
            acc = acc + v
        return acc

    assert check_determinism(torch.sum, x)
    assert not check_determinism(shuffled_sum, x)


def test_round_mantissa_keeps_the_requested_bits():
    x = torch.tensor([1.0 + 2 ** -12, 1.0 + 2 ** -9, 3.14159265], dtype=torch.float32)
    r = round_mantissa(x, 10)
    assert r[0] == 1.0 and r[1] == 1.0 + 2 ** -9
    assert abs(float(r[2]) - 3.14159265) < 2 ** -10 * 4


def test_drift_compare_passes_identical_and_fails_worse(report, tmp_path):
    same = compare_reports([report, copy.deepcopy(report)], ["a", "b"])
    assert same["status"] == "pass" and same["counts"]["fail"] == 0 and all(v["agree"] for v in same["verdicts"])
    worse = copy.deepcopy(report)
    for r in worse["rows"]:
        if r["max_rel_err"] is not None:
            r["max_rel_err"] *= 50
    result = compare_reports([report, worse], ["ref", "worse"])
    assert result["status"] == "fail" and result["counts"]["fail"] > 0


def test_drift_compare_refuses_reports_of_different_inputs(report, tmp_path, capsys):
    other = copy.deepcopy(report)
    other["inputs"]["models"][0]["content_hash"] = "0" * 64
    other["inputs"]["models"][0]["recipe"]["model"] = "base-s9"  # not the same zoo model rebuilt
    with pytest.raises(IncompatibleInputs):
        compare_reports([report, other], ["a", "b"])
    (tmp_path / "a.json").write_text(json.dumps(report))
    (tmp_path / "b.json").write_text(json.dumps(other))
    rc = main(["drift", "compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    assert rc == errors.INCOMPATIBLE and "other models" in capsys.readouterr().err


def test_drift_command_writes_report_and_plots(zoo, tmp_path):
    args = ["--quiet", "drift", str(zoo("base-s0")), str(zoo("base-s1")), "--dtypes", "fp32", "-o", str(tmp_path / "d.json"),
            "--report", str(tmp_path / "rep")]
    assert main(args) == 0
    doc = json.loads((tmp_path / "d.json").read_text())
    assert doc["verdicts"][0]["verdict"] == "independent"
    assert (tmp_path / "rep" / "figures" / "drift_errors.png").exists()
    assert main(["--quiet", "drift", "compare", str(tmp_path / "d.json"), str(tmp_path / "d.json"), "--report",
                 str(tmp_path / "cmp")]) == 0
    assert (tmp_path / "cmp" / "figures" / "drift_ratios.png").exists()


def test_drift_never_writes_into_a_model_directory(zoo):
    model = zoo("base-s1")
    before = sorted(p.name for p in model.iterdir())
    rc = main(["--quiet", "drift", str(model), "--dtypes", "fp32", "-o", str(model / "drift.json")])
    assert rc == errors.UNSAFE and sorted(p.name for p in model.iterdir()) == before


COMMITTED = Path(__file__).parents[1] / "benchmarks" / "results" / "drift_cpu.json"
FP32_MEDIAN_CLASS = 1e-6  # fp32 kernels against the float64 golden: a few ulps at most, on any x86-64 CPU


@pytest.fixture(scope="module")
def committed_vs_here(zoo):
    """The shipped CPU drift report, one made here on the same zoo recipes, and their comparison. The zoo rebuilt
    here may differ in bits from the shipped one (AVX2, AVX-512 and CPU vendors round training differently)."""
    committed = json.loads(COMMITTED.read_text())
    labels = [m["label"] for m in committed["inputs"]["models"]]
    fresh = run_drift([str(zoo(n)) for n in labels], labels, ["cpu"], ["fp32"], progress=False)
    return committed, fresh, compare_reports([committed, fresh], ["committed", "fresh"])


def test_committed_drift_report_compares_with_one_made_here(committed_vs_here):
    committed, fresh, result = committed_vs_here
    n = len(committed["inputs"]["models"])
    assert len(result["verdicts"]) == n * (n - 1) // 2 and all(v["agree"] for v in result["verdicts"])
    assert [v["verdict"] for v in result["verdicts"]] == [v["verdict"] for v in committed["verdicts"]]
    assert all(m["recipe"]["model"] == m["label"] for m in committed["inputs"]["models"] + fresh["inputs"]["models"])
    same_bytes = [m["content_hash"] for m in committed["inputs"]["models"]] == [m["content_hash"] for m in fresh["inputs"]["models"]]
    if same_bytes:
        assert result["inputs_note"] is None
    else:
        assert "same zoo recipes" in result["inputs_note"] and cpu_capability(fresh) in result["inputs_note"]
    assert result["cpu_capabilities"]["fresh"] == torch.backends.cpu.get_cpu_capability()


def test_committed_and_fresh_fp32_errors_are_in_the_fp32_class(committed_vs_here):
    committed, fresh, result = committed_vs_here
    for report in (committed, fresh):
        fp32 = rows(report, backend="cpu", dtype="fp32", mode="ieee", emulated=False)
        assert len(fp32) == 16 and all(r["median_rel_err"] < FP32_MEDIAN_CLASS for r in fp32)
    compared = [r for r in result["rows"] if r["dtype"] == "fp32" and r["mode"] == "ieee"]
    assert len(compared) == 16 and all(r["ratio"] is not None for r in compared)


def test_same_recipe_on_another_cpu_is_compared_with_a_note_naming_both_capabilities(report):
    other = copy.deepcopy(report)
    for m in other["inputs"]["models"]:
        m["content_hash"] = "f" * 64
    other["inputs"]["kernel_inputs_sha256"] = "e" * 64
    other["golden"]["identity"]["cpu_capability"] = "OTHER_ISA"
    result = compare_reports([report, other], ["ref", "rebuilt"])
    here = torch.backends.cpu.get_cpu_capability()
    assert f"ref: {here}, rebuilt: OTHER_ISA" in result["inputs_note"] and "equivalent, not identical" in result["inputs_note"]
    assert result["verdicts"] and all(v["agree"] for v in result["verdicts"])


def test_other_recipes_are_refused_naming_the_cpu_capabilities(report, tmp_path, capsys):
    other = copy.deepcopy(report)
    other["inputs"]["models"][0]["content_hash"] = "0" * 64
    other["inputs"]["models"][0]["recipe"] = {**other["inputs"]["models"][0]["recipe"], "model": "base-s7"}
    other["golden"]["identity"]["cpu_capability"] = "OTHER_ISA"
    (tmp_path / "a.json").write_text(json.dumps(report))
    (tmp_path / "b.json").write_text(json.dumps(other))
    rc = main(["drift", "compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    err = capsys.readouterr().err.strip()
    assert rc == errors.INCOMPATIBLE and "other models" in err and "OTHER_ISA" in err and len(err.splitlines()) == 1
    del other["inputs"]["models"][0]["recipe"]  # a model that is not from the zoo: bytes are all there is
    with pytest.raises(IncompatibleInputs):
        compare_reports([report, other], ["a", "b"])


REBUILD_UNDER_AVX2 = """
import json, sys
from provenance.drift import run_drift
from provenance.zoo import build
path = str(build("base-s0"))
json.dump(run_drift([path, path], ["base-s0", "base-s0-again"], ["cpu"], ["fp32"], progress=False), open(sys.argv[1], "w"))
"""


def test_a_zoo_model_rebuilt_under_avx2_compares_with_one_built_here(zoo, tmp_path, capsys):
    """torch honours ATEN_CPU_CAPABILITY=avx2 set before it starts: the same recipe built on the AVX2 code path,
    whose bits differ from AVX-512's, still compares (on an AVX2 machine the bytes are simply the same)."""
    import os
    import subprocess
    import sys
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "PROVENANCE_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", REBUILD_UNDER_AVX2, str(tmp_path / "avx2.json")], env=env, check=True, timeout=600)
    avx2 = json.loads((tmp_path / "avx2.json").read_text())
    assert avx2["golden"]["identity"]["cpu_capability"] == "AVX2"
    assert avx2["golden"]["identity"]["cpu_capability_override"] == "avx2"
    path = str(zoo("base-s0"))
    here = run_drift([path, path], ["base-s0", "base-s0-again"], ["cpu"], ["fp32"], progress=False)
    (tmp_path / "here.json").write_text(json.dumps(here))
    rc = main(["drift", "compare", str(tmp_path / "here.json"), str(tmp_path / "avx2.json")])
    out = capsys.readouterr().out
    assert rc in (0, errors.CHECK_FAILED)  # a kernel's error ratio may legitimately differ; the inputs are accepted
    rebuilt = here["inputs"]["models"][0]["content_hash"] != avx2["inputs"]["models"][0]["content_hash"]
    assert ("equivalent, not identical" in out) == rebuilt
    assert rebuilt or torch.backends.cpu.get_cpu_capability() == "AVX2"


def test_models_that_cannot_feed_the_kernels_are_unsupported_not_a_crash(tmp_path, capsys):
    from safetensors.torch import save_file
    state = {"model.embed_tokens.weight": torch.randn(300, 16), "model.layers.0.self_attn.q_proj.weight": torch.randn(16, 16),
             "model.layers.0.mlp.gate_proj.weight": torch.randn(32, 16)}  # a llama-family model with no up/down
    save_file(state, tmp_path / "model.safetensors")
    assert main(["--quiet", "drift", str(tmp_path), "--dtypes", "fp32"]) == errors.UNSUPPORTED
    assert "drift kernels need" in capsys.readouterr().err
