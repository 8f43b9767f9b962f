"""Segment replay, reference outputs and `claim verify` end to end on the demo claims (tiny zoo models)."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

pytest.importorskip("transformers")

from provenance import errors  # noqa: E402
from provenance.cli import main  # noqa: E402
from provenance.claims.claimfile import parse_claim  # noqa: E402
from provenance.claims.demo import build_demo_claims  # noqa: E402
from provenance.claims.hfmodel import build_model, load_state  # noqa: E402
from provenance.claims.replay import SLACK, calibrate_and_judge, judge  # noqa: E402
from provenance.claims.segment import load_segment  # noqa: E402
from provenance.report.schemas import validate  # noqa: E402
from provenance.zoo import build  # noqa: E402
from provenance.zoo.tiny import forward  # noqa: E402


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return build_demo_claims(tmp_path_factory.mktemp("claims"))


def _copy(demo, tmp_path, name="honest"):
    folder = tmp_path / name
    shutil.copytree(demo[name].parent, folder)
    return folder


def test_transformers_forward_matches_zoo_forward():
    cfg, state = load_state(build("base-s0"))
    model = build_model(cfg, state, build("base-s0")).eval()
    ids = torch.randint(0, cfg["vocab_size"], (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, forward(state, cfg, ids), rtol=1e-5, atol=1e-5)


def test_moe_layout_is_refused_with_its_reason():
    with pytest.raises(errors.Unsupported, match="shared_expert_gate"):
        cfg, state = load_state(build("base-s0-upcycle"))
        build_model(cfg, state, build("base-s0-upcycle"))


def test_honest_segment_is_accepted_within_its_envelope(demo):
    result = calibrate_and_judge(load_segment(parse_claim(demo["honest"]).segment), "fp32")
    check = judge(result)
    assert check.result == "supports" and check.strength == "weak", check.detail
    assert result["ratio"] <= SLACK and result["distance"] > 0  # a different implementation: close, not identical
    assert set(result["mode_spread"]) | set(result["mode_notes"]) == {"fp32-threads", "fp32-reordered", "fp32-isa"}
    assert result["mode_spread"]["fp32-reordered"] > 0
    assert result["movement"] > 1e3 * result["envelope"]


@pytest.mark.parametrize("name", ["spoof-other-lineage", "spoof-interpolated", "spoof-wrong-data"])
def test_spoofs_are_rejected(demo, name):
    result = calibrate_and_judge(load_segment(parse_claim(demo[name]).segment), "fp32", modes=("fp32-reordered",))
    check = judge(result)
    assert check.result == "contradicts" and check.strength == "strong", check.detail
    assert result["ratio"] > 1e3


def test_bf16_claim_widens_the_envelope(demo):
    seg = load_segment(parse_claim(demo["honest"]).segment)
    fp32 = calibrate_and_judge(seg, "fp32", modes=("fp32-reordered",))
    bf16 = calibrate_and_judge(seg, "bf16", modes=("fp32-reordered", "bf16-inputs"))
    assert bf16["envelope"] > 10 * fp32["envelope"]


@pytest.mark.parametrize("edit, code, words", [
    (lambda f: (f / "recipe.json").write_text(json.dumps({**json.loads((f / "recipe.json").read_text()), "lr_schedule": 1})),
     errors.MALFORMED, "lr_schedule"),
    (lambda f: save_file({"input_ids": torch.zeros(8, 4, dtype=torch.long)}, f / "batches.safetensors"), errors.MALFORMED, "[k, batch, seq]"),
    (lambda f: save_file({"input_ids": torch.zeros(3, 2, 8, dtype=torch.long)}, f / "batches.safetensors"), errors.MALFORMED, "3 steps"),
    (lambda f: save_file({"input_ids": torch.full((8, 2, 8), 999, dtype=torch.long)}, f / "batches.safetensors"), errors.MALFORMED, "outside"),
    (lambda f: _poison_optimizer(f), errors.MALFORMED, "NaN"),
    (lambda f: save_file({"model.norm.weight": torch.ones(3)}, f / "end" / "model.safetensors"), errors.MALFORMED, "end checkpoint"),
])
def test_hostile_segments(demo, tmp_path, edit, code, words):
    folder = _copy(demo, tmp_path)
    edit(folder)
    with pytest.raises(errors.ProvenanceError) as exc:
        load_segment(parse_claim(folder / "claim.toml").segment)
    assert exc.value.exit_code == code and words in str(exc.value)


def _poison_optimizer(folder):
    path = folder / "start" / "optimizer.safetensors"
    tensors = load_file(path)
    name = next(iter(tensors))
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    save_file(tensors, path, metadata={"step": "20"})


def _reference(folder, weights="end", corrupt=None, drift=False):
    cfg, state = load_state(folder / weights)
    model = build_model(cfg, state, folder).eval()
    ids = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(input_ids=ids, output_hidden_states=True)
    tensors = {"input_ids": ids, "logits": out.logits.contiguous(), "hidden_states": out.hidden_states[-1].contiguous()}
    if corrupt:
        corrupt(tensors)
    save_file(tensors, folder / "ref.safetensors")
    text = (folder / "claim.toml").read_text().split("[segment]")[0]
    extra = ""
    if drift:  # a measured report: the device's fp32 matmul error is 3x this CPU's
        rows = [{"kernel": "matmul", "backend": b, "dtype": "fp32", "mode": "ieee", "max_rel_err": e, "emulated": False}
                for b, e in (("cpu", 1e-6), ("npu", 3e-6))]
        (folder / "drift.json").write_text(json.dumps({"schema_version": "1.0", "rows": rows}))
        extra = 'drift_reports = ["drift.json"]\n'
    (folder / "claim.toml").write_text(text + '[reference_outputs]\nfile = "ref.safetensors"\nmode = "fp32"\n' + extra)
    return folder / "claim.toml"


def test_claim_verify_consistent_with_statement_and_report(demo, tmp_path, capsys):
    claim = _reference(_copy(demo, tmp_path), drift=True)
    rc = main(["claim", "verify", str(claim), "--json", "--quiet", "--report", str(tmp_path / "rep")])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and doc["verdict"] == "consistent" and doc["schema_version"] == "1.0"
    validate(doc, "claim")
    assert "not proof" in doc["statement"]
    by = {c["name"]: c for c in doc["checks"]}
    assert by["reference_outputs"]["result"] == "supports" and by["lineage:base-s1"]["result"] == "supports"
    assert set(by["reference_outputs"]) >= {"name", "result", "strength", "detail"}
    assert by["reference_outputs"]["data"]["drift_scale"] == pytest.approx(3.0)
    assert (tmp_path / "rep" / "report.md").exists()


def test_reference_outputs_of_other_weights_are_inconsistent(demo, tmp_path, capsys):
    claim = _reference(_copy(demo, tmp_path), weights="suspect")
    rc = main(["claim", "verify", str(claim), "--json", "--quiet", "--fail-on", "inconsistent"])
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["verdict"] == "inconsistent" and rc == errors.CHECK_FAILED
    assert "--fail-on inconsistent" in captured.err
    assert next(c for c in doc["checks"] if c["name"] == "reference_outputs")["strength"] == "strong"


def test_claim_verify_prints_through_the_shared_lines(demo, tmp_path, capsys):
    claim = _reference(_copy(demo, tmp_path))
    out = tmp_path / "c.json"
    assert main(["-q", "claim", "verify", str(claim), "-o", str(out), "--fail-on", "consistent"]) == errors.CHECK_FAILED
    err = capsys.readouterr().err.splitlines()  # the top-level --quiet silences the claim's progress too
    assert err == [f"provenance: wrote {out}", f"provenance: verdict is consistent (--fail-on consistent): exit {errors.CHECK_FAILED}"]
    assert main(["claim", "verify", str(claim), "-o", str(tmp_path / "d.json")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == f"provenance: wrote {tmp_path / 'd.json'}"
    assert len(err) > 1 and all(line.startswith("provenance: claim: ") for line in err[:-1])


@pytest.mark.parametrize("corrupt, words", [
    (lambda t: t["logits"].__setitem__((0, 0, 0), float("nan")), "NaN"),
    (lambda t: t.__setitem__("logits", t["logits"][..., :10].contiguous()), "shape"),
    (lambda t: t.__setitem__("extra", torch.zeros(1)), "extra"),
])
def test_hostile_reference_outputs_write_nothing(demo, tmp_path, capsys, corrupt, words):
    claim = _reference(_copy(demo, tmp_path), corrupt=corrupt)
    rc = main(["claim", "verify", str(claim), "--quiet", "--report", str(tmp_path / "rep"), "-o", str(tmp_path / "c.json")])
    err = capsys.readouterr().err.strip()
    assert rc == errors.MALFORMED and words in err and len(err.splitlines()) == 1
    assert not (tmp_path / "rep").exists() and not (tmp_path / "c.json").exists()


def test_cli_hostile_claim_paths(demo, tmp_path, capsys):
    folder = _copy(demo, tmp_path)
    text = (folder / "claim.toml").read_text()
    (folder / "claim.toml").write_text(text.replace('path = "end"', 'path = "../../etc"'))
    assert main(["claim", "verify", str(folder / "claim.toml"), "--report", str(tmp_path / "rep")]) == errors.UNSAFE
    (folder / "claim.toml").write_text(text.replace('path = "end"', 'path = "gone"'))
    assert main(["claim", "verify", str(folder / "claim.toml")]) == errors.NOT_FOUND
    assert main(["claim", "verify", str(folder / "claim.toml"), "--report", str(folder / "end" / "r")]) == errors.NOT_FOUND
    (folder / "claim.toml").write_text(text)
    assert main(["claim", "verify", str(folder / "claim.toml"), "--report", str(folder / "end" / "r")]) == errors.UNSAFE
    assert not (tmp_path / "rep").exists() and not (folder / "end" / "r").exists()


def test_template_parses_once_its_paths_exist(tmp_path, capsys):
    out = tmp_path / "claim.toml"
    assert main(["claim", "template", str(out)]) == 0
    assert main(["claim", "template", str(out)]) == errors.MALFORMED  # no silent overwrite
    (tmp_path / "release").mkdir()
    claim = parse_claim(out)
    assert claim.claim["chip"] == "Ascend 910B" and claim.segment is None


def test_one_edited_tensor_is_caught_even_when_the_overall_distance_is_small(demo):
    seg = load_segment(parse_claim(demo["honest"]).segment)
    honest = calibrate_and_judge(seg, "fp32", modes=("fp32-reordered",))
    name = "model.layers.2.self_attn.k_proj.bias"
    row = honest["per_tensor"][name]
    # move that one tensor by 30 of its own envelopes: diluted in the model-wide distance
    delta = torch.randn(seg.end[name].shape, generator=torch.Generator().manual_seed(0))
    seg.end[name] = seg.end[name] + delta * (30 * row["envelope"] / float(delta.norm()))
    edited = calibrate_and_judge(seg, "fp32", modes=("fp32-reordered",))
    # the edit barely moves the model-wide distance (here 0.5 -> under 2 envelopes on AVX-512, about 4 on AVX2),
    # so a check on that distance alone would be weak; the per-tensor rule sees 30 envelopes
    assert edited["per_tensor"][name]["ratio"] > 25 and edited["ratio"] < edited["per_tensor"][name]["ratio"] / 5
    check = judge(edited)
    assert check.result == "contradicts" and check.strength == "strong" and name in check.detail
