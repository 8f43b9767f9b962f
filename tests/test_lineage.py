import json

import numpy as np
import pytest
import torch

from provenance.backends import get_backend
from provenance import kernels
from provenance.anchors import canonical, choose_anchors
from provenance.cli import main
from provenance.fingerprint import fingerprint_model, load_fingerprint
from provenance.lineage import compare_fingerprints
from provenance.zoo import transforms as T
from provenance.zoo.corpus import Vocab, corpus_text
from provenance.zoo.tiny import BASE_CONFIG, forward


@pytest.fixture(scope="module")
def fps(zoo):
    cpu = get_backend("cpu")
    names = ("base-s0", "base-s0-finetune", "base-s0-obfuscate", "base-s0-upcycle", "base-s0-vocab",
             "base-s0-remove_layer", "base-s1")
    return {n: fingerprint_model(zoo(n), cpu, label=n) for n in names}


def signal(result, name):
    return next(s for s in result["signals"] if s["name"] == name)


@pytest.mark.parametrize("derived", ["base-s0-finetune", "base-s0-obfuscate", "base-s0-upcycle", "base-s0-vocab",
                                     "base-s0-remove_layer"])
def test_derived_pairs_are_detected(fps, derived):
    r = compare_fingerprints(fps["base-s0"], fps[derived])
    assert r["verdict"] == "derived", r["reason"]
    assert r["p_value"] < 1e-6


def test_independent_same_data_models_are_independent(fps):
    r = compare_fingerprints(fps["base-s0"], fps["base-s1"])
    assert r["verdict"] == "independent", r["reason"]
    assert all(s["p_value"] > 0.01 for s in r["signals"] if s["used"] and s["p_value"] is not None)


def test_sigma_baseline_fails_where_the_verdict_holds(fps):
    # function-preserving rescaling moves every sigma-curve; the invariant signals do not move
    r = compare_fingerprints(fps["base-s0"], fps["base-s0-obfuscate"])
    assert signal(r, "sigma_curves")["statistic"] < 0.9 and not signal(r, "sigma_curves")["used"]
    assert signal(r, "attention_cka")["statistic"] > 0.999 and signal(r, "neuron_match")["statistic"] > 0.999


def test_upcycled_moe_is_compared_neuron_by_neuron(fps):
    r = compare_fingerprints(fps["base-s0"], fps["base-s0-upcycle"])
    s = signal(r, "dense_moe_match")
    assert s["used"] and s["p_value"] < 1e-6


def test_depth_alignment_finds_the_removed_layer(fps):
    r = compare_fingerprints(fps["base-s0"], fps["base-s0-remove_layer"])
    assert r["layer_map"] == [[0, 0], [1, 1], [3, 2]]


def test_fingerprint_files_give_the_same_verdict(fps, tmp_path):
    fps["base-s0"].save(tmp_path / "a.safetensors")
    fps["base-s1"].save(tmp_path / "b.safetensors")
    loaded = compare_fingerprints(load_fingerprint(tmp_path / "a.safetensors"), load_fingerprint(tmp_path / "b.safetensors"))
    direct = compare_fingerprints(fps["base-s0"], fps["base-s1"])
    assert loaded["verdict"] == direct["verdict"] and loaded["p_value"] == direct["p_value"]


def test_compare_json_contract_and_fail_on(zoo, tmp_path, capsys):
    a, b = zoo("base-s0"), zoo("base-s0-finetune")
    assert main(["--quiet", "fingerprint", str(a), "-o", str(tmp_path / "a.safetensors")]) == 0
    capsys.readouterr()
    assert main(["--quiet", "compare", str(tmp_path / "a.safetensors"), str(b), "--json", "--report", str(tmp_path / "rep")]) == 0
    r = json.loads(capsys.readouterr().out)
    for key in ("verdict", "p_value", "signals", "layer_map", "a", "b", "backend", "schema_version"):
        assert key in r
    for s in r["signals"]:
        assert {"name", "statistic", "p_value", "used", "note"} <= set(s)
    assert {"content_hash", "family", "layers"} <= set(r["a"]) and r["backend"]["backend"] == "cpu"
    figures = {p.name for p in (tmp_path / "rep" / "figures").iterdir()}
    calibrated = {f"signal_{s['name']}.png" for s in r["signals"] if s.get("null_values")}
    assert calibrated and figures == calibrated | {"sigma_curves.png"}  # one figure per calibrated signal
    assert "Verdict: derived" in (tmp_path / "rep" / "report.md").read_text()
    assert main(["--quiet", "compare", str(a), str(b), "--fail-on", "derived"]) == 1
    assert main(["--quiet", "compare", str(a), str(b), "--fail-on", "independent"]) == 0


def test_unbiased_cka_is_invariant_to_rotation_and_scale():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 16, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=g, dtype=torch.float64))
    k1, k2 = kernels.gram(x), kernels.gram(3.0 * x @ q)
    assert float(kernels.unbiased_cka(k1, k2)) == pytest.approx(1.0, abs=1e-10)
    y = torch.randn(64, 16, generator=g, dtype=torch.float64)
    assert abs(float(kernels.unbiased_cka(k1, kernels.gram(y)))) < 0.2


def test_batched_cka_is_the_textbook_estimator_for_every_pair():
    """The verdict's batched CKA (every layer pair in one product) against the unbiased HSIC written out with
    explicit diagonal removal, pair by pair, in numpy (the AWM baseline's implementation)."""
    from benchmarks.lineage_zoo import unbiased_cka as reference
    g = torch.Generator().manual_seed(3)
    xs = [torch.randn(40, 12, generator=g, dtype=torch.float64) for _ in range(3)]
    ys = [xs[0] @ torch.randn(12, 12, generator=g, dtype=torch.float64) + 0.5 * torch.randn(40, 12, generator=g, dtype=torch.float64),
          torch.randn(40, 12, generator=g, dtype=torch.float64)]
    batched = kernels.cka_matrix(torch.stack([kernels.gram(x) for x in xs]), torch.stack([kernels.gram(y) for y in ys]))
    assert batched.shape == (3, 2)
    for i, x in enumerate(xs):
        for j, y in enumerate(ys):
            assert float(batched[i, j]) == pytest.approx(reference(x.numpy(), y.numpy()), abs=1e-12)
            assert float(kernels.unbiased_cka(kernels.gram(x), kernels.gram(y))) == pytest.approx(float(batched[i, j]), abs=1e-12)
    assert float(batched[0, 0]) > 0.5 > abs(float(batched[1, 1]))


def test_assignment_recovers_a_permutation():
    g = torch.Generator().manual_seed(1)
    a = kernels.standardize_rows(torch.randn(50, 30, generator=g, dtype=torch.float64))
    perm = torch.randperm(50, generator=g)
    rows, cols, matched = kernels.match(kernels.neuron_similarity(None, a, None, -a[perm]))
    assert (perm[cols].numpy() == rows).all() and np.allclose(matched, 1.0)


@pytest.mark.parametrize("fn", [T.permute, T.rescale])
def test_function_preserving_transforms_preserve_outputs(base_state, fn):
    ids = Vocab.bytes_only().encode(corpus_text("other")[:64]).view(1, 64)
    out = forward(base_state, BASE_CONFIG, ids)
    moved = fn(base_state, BASE_CONFIG, torch.Generator().manual_seed(5))
    assert torch.allclose(forward(moved, BASE_CONFIG, ids), out, atol=1e-4)
    assert not torch.equal(moved["model.layers.0.mlp.up_proj.weight"], base_state["model.layers.0.mlp.up_proj.weight"])


def test_anchor_choice_is_shared_across_tokenizer_spellings():
    assert canonical("Ġthe") == canonical("▁the") == canonical("the", wordpiece=True) == " the"
    assert canonical("##ing", wordpiece=True) == "ing" and canonical("<0x0A>") == "\n"
    bpe = ["Ġthe", "Ġcat", "s", "Ġdog"] + [f"Ġw{i}" for i in range(100)]
    wp = ["the", "cat", "##s", "dog"] + [f"w{i}" for i in range(100)] + ["##x"]
    a, _, how = choose_anchors(bpe, len(bpe), 50)
    b, _, _ = choose_anchors(wp, len(wp), 50)
    assert how == "token strings" and len(set(a) & set(b)) >= 45


def test_compare_refuses_a_report_inside_a_model_directory_before_any_work(zoo, capsys):
    from provenance import errors
    a = zoo("base-s0")
    before = sorted(p.name for p in a.iterdir())
    assert main(["--quiet", "compare", str(a), str(zoo("base-s1")), "--report", str(a / "rep")]) == errors.UNSAFE
    assert sorted(p.name for p in a.iterdir()) == before and "refusing" in capsys.readouterr().err
