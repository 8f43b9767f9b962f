"""Neuron matching at real widths: the pruned matcher against scipy's exact LSAP, its certificate, and the
match-neurons entry points on zoo checkpoints."""
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from scipy.optimize import linear_sum_assignment

from provenance import api, errors, kernels
from provenance.cli import main
from provenance.kernels.matching import match_groups, match_parts, match_slabs, part_similarity
from provenance.model import open_model
from provenance.neurons import match_layers
from provenance.report.schemas import errors as schema_errors


def _profiles(n, d, gen):
    mix = torch.randn(16, d, generator=gen)
    return torch.randn(n, 16, generator=gen) @ mix / 4 + 0.5 * torch.randn(n, d, generator=gen)


def _pair(n, m, noise, seed):
    """A's gate/up profiles; B = A's neurons at random columns (up signs flipped) plus noise, other columns fresh;
    noise None: B unrelated."""
    gen = torch.Generator().manual_seed(seed)
    gate, up = _profiles(n, 64, gen), _profiles(n, 64, gen)
    b_gate, b_up = _profiles(m, 64, gen), _profiles(m, 64, gen)
    cols = torch.randperm(m, generator=gen)[:n]
    if noise is not None:
        sign = torch.where(torch.rand(n, 1, generator=gen) < 0.5, -1.0, 1.0)
        b_gate[cols] = gate + noise * torch.randn(n, 64, generator=gen)
        b_up[cols] = sign * (up + noise * torch.randn(n, 64, generator=gen))
    parts = lambda g, u: ([kernels.standardize_rows(g)], [kernels.standardize_rows(u)])  # noqa: E731
    return parts(gate, up), parts(b_gate, b_up), cols.numpy()


def _exact(a, b):
    sim = part_similarity(a, b).double().numpy()
    rows, cols = linear_sum_assignment(sim, maximize=True)
    return cols, float(sim[rows, cols].sum())


@pytest.mark.parametrize("noise", [0.5, 2.0, None])
def test_pruned_matcher_finds_the_exact_optimum_at_2048(noise):
    a, b, _ = _pair(2048, 2048, noise, seed=1)
    cols, best = _exact(a, b)
    res = match_parts(a, b, exact_below=0)
    assert res.method == "pruned-sparse" and res.certified_optimal
    assert res.objective == pytest.approx(best, rel=1e-12, abs=1e-9)
    assert res.bound == pytest.approx(best, rel=1e-12, abs=1e-9)
    assert (res.cols == cols).mean() > 0.999  # a continuous problem has no ties: the same assignment
    assert res.edges < 2048 * 2048 / 20       # and it was pruned


def test_rectangular_pruned_matches_exact_and_finds_the_planted_neurons():
    a, b, planted = _pair(400, 3000, 0.3, seed=2)
    cols, best = _exact(a, b)
    res = match_parts(a, b, exact_below=0)
    assert res.certified_optimal and res.objective == pytest.approx(best, rel=1e-12)
    assert np.array_equal(res.cols, cols)
    assert (res.cols == planted).mean() > 0.99


def test_overlapping_experts_each_find_their_dense_neurons():
    gen = torch.Generator().manual_seed(7)
    dense_gate, dense_up = _profiles(2500, 64, gen), _profiles(2500, 64, gen)
    unit = kernels.standardize_rows
    dense = ([unit(dense_gate)], [unit(dense_up)])
    takes = [torch.randperm(2500, generator=gen)[:300] for _ in range(4)]  # overlapping subsets, as upcycling makes
    groups = [([unit(dense_gate[t] + 0.5 * torch.randn(300, 64, generator=gen))],
               [unit(-dense_up[t] + 0.5 * torch.randn(300, 64, generator=gen))]) for t in takes]
    done = []
    found = match_groups(groups, dense, exact_below=0, progress=done.append)
    assert done == [1, 2, 3, 4]
    for res, take, parts in zip(found, takes, groups):
        assert res.certified_optimal and np.array_equal(res.cols, take.numpy())
        assert res.objective == pytest.approx(_exact(parts, dense)[1], rel=1e-12)


def test_small_widths_keep_the_exact_dense_path():
    a, b, _ = _pair(256, 256, 1.0, seed=3)
    sim = kernels.neuron_similarity(a[0][0], a[1][0], b[0][0], b[1][0])
    assert torch.allclose(sim, part_similarity(a, b))
    rows, cols, vals = kernels.match(sim)
    res = match_parts(a, b)
    assert res.method == "exact-dense" and res.certified_optimal
    assert np.array_equal(res.cols, cols) and np.allclose(res.similarity, vals)


def test_candidates_without_a_full_matching_are_completed_and_still_proved():
    # every column's best rows are the same few strong rows and every row's best column is the same: with one
    # candidate per row the candidate graph has no full matching
    gen = torch.Generator().manual_seed(4)
    n = 300
    strength = torch.linspace(0, 5, n)
    sim = strength[:, None] + strength[None, :] + 0.05 * torch.rand(n, n, generator=gen)
    res = match_slabs(lambda r0, r1: sim[r0:r1], n, n, k=1, exact_below=0)
    assert res.completed > 0
    rows, cols = linear_sum_assignment(sim.double().numpy(), maximize=True)
    best = float(sim.double().numpy()[rows, cols].sum())
    assert res.certified_optimal and res.objective == pytest.approx(best, rel=1e-12)


def test_an_unproved_assignment_still_carries_a_valid_bound():
    a, b, _ = _pair(2048, 2048, 3.0, seed=5)
    _, best = _exact(a, b)
    res = match_parts(a, b, exact_below=0, k=2, max_rounds=0)
    assert res.objective <= best + 1e-9 <= res.bound + 2e-9  # the exact optimum lies between the two
    if not res.certified_optimal:
        assert res.gap > 0


def test_float64_similarities_stay_float64_on_the_exact_path():
    sim = torch.rand(50, 60, dtype=torch.float64) * 1e-9 + 0.5  # differences below float32 resolution
    res = match_slabs(lambda r0, r1: sim[r0:r1], 50, 60)
    rows, cols = linear_sum_assignment(sim.numpy(), maximize=True)
    assert np.array_equal(res.cols, cols)


# --- checkpoints ---

def _permuted_copy(src, dst, layer, perm):
    """A copy of a zoo model with one layer's MLP neurons permuted: neuron t of the copy is neuron perm[t]."""
    shutil.copytree(src, dst)
    state = load_file(dst / "model.safetensors")
    key = f"model.layers.{layer}.mlp.%s_proj.weight"
    for name in ("gate", "up"):
        state[key % name] = state[key % name][perm].contiguous()
    state[key % "down"] = state[key % "down"][:, perm].contiguous()
    save_file(state, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


@pytest.fixture(scope="module")
def permuted(zoo, tmp_path_factory):
    perm = torch.randperm(128, generator=torch.Generator().manual_seed(6))
    path = _permuted_copy(zoo("base-s0"), tmp_path_factory.mktemp("perm") / "base-s0-neurons", 1, perm)
    return path, perm.numpy()


def test_a_neuron_permuted_copy_gives_back_the_permutation(zoo, permuted):
    path, perm = permuted
    result = api.match_neurons(zoo("base-s0"), path, 1)
    doc = result.document
    assert doc["mode"] == "dense-dense" and result.certified_optimal
    (m,) = doc["matches"]
    assert m["rows_side"] == "a" and m["method"] == "exact-dense"
    assert np.array_equal(np.array(perm)[m["permutation"]], np.arange(128))  # A's neuron i is the copy's t: perm[t] = i
    assert min(m["similarity"]) > 0.999
    assert schema_errors(doc, "match_neurons") == []


def test_the_pruned_path_on_real_weights_gives_the_same_permutation(zoo, permuted):
    path, perm = permuted
    with open_model(zoo("base-s0")) as va, open_model(path) as vb:
        from provenance.backends import get_backend
        found = match_layers(va, vb, 1, 1, get_backend("cpu"), exact_below=0, k=4)
    res = found["matches"][0]["assignment"]
    assert res.method == "pruned-sparse" and res.certified_optimal
    assert np.array_equal(perm[res.cols], np.arange(128))


def test_a_pruned_document_carries_its_certificate_and_fits_the_schema(zoo, permuted, monkeypatch):
    import functools
    import provenance.neurons
    path, perm = permuted
    monkeypatch.setattr(provenance.neurons, "match_parts", functools.partial(match_parts, exact_below=0))
    doc = api.match_neurons(zoo("base-s0"), path, 1, candidates=4).document
    (m,) = doc["matches"]
    assert m["method"] == "pruned-sparse" and m["candidates"] == 4 and m["passes"] >= 1
    assert m["certified_optimal"] and m["gap"] == 0 and doc["summary"]["methods"] == ["pruned-sparse"]
    assert np.array_equal(perm[m["permutation"]], np.arange(128))
    assert schema_errors(doc, "match_neurons") == []


def test_unrelated_models_match_poorly_and_a_fine_tune_well(zoo):
    unrelated = api.match_neurons(zoo("base-s0"), zoo("base-s1"), 2).document["summary"]["mean_similarity"]
    tuned = api.match_neurons(zoo("base-s0"), zoo("base-s0-finetune"), 2).document["summary"]["mean_similarity"]
    assert unrelated < 0.4 < 0.8 < tuned


def test_upcycled_experts_are_matched_into_the_dense_layer(zoo):
    doc = api.match_neurons(zoo("base-s0"), zoo("base-s0-upcycle"), 2).document
    assert doc["mode"] == "experts-dense"
    groups = [m["group"] for m in doc["matches"]]
    assert groups == ["expert 0", "expert 1", "expert 2", "expert 3", "shared"]
    assert all(m["rows_side"] == "b" and m["rows"] == len(m["permutation"]) for m in doc["matches"])
    # upcycled from this dense layer, then trained: every expert matches far above unrelated neurons (about 0.2)
    assert min(m["mean_similarity"] for m in doc["matches"]) > 0.7
    # experts were split from disjoint neuron sets: they land on different dense neurons
    routed = [set(m["permutation"]) for m in doc["matches"][:4]]
    assert len(set().union(*routed)) > 0.9 * 128


def test_cli_writes_the_document_and_refuses_bad_requests(zoo, permuted, tmp_path, capsys):
    base, (path, _) = zoo("base-s0"), permuted
    out = tmp_path / "match.json"
    assert main(["--quiet", "match-neurons", str(base), str(path), "--layer", "1", "-o", str(out)]) == errors.OK
    doc = json.loads(out.read_text())
    assert schema_errors(doc, "match_neurons") == [] and doc["summary"]["certified_optimal"]
    assert main(["--quiet", "match-neurons", str(base), str(path), "--layer", "1", "-o", str(path / "m.json")]) == errors.UNSAFE
    assert not (path / "m.json").exists()
    assert main(["--quiet", "match-neurons", str(base), str(path), "--layer", "9"]) == errors.UNSUPPORTED
    assert main(["--quiet", "match-neurons", str(base), str(tmp_path / "missing"), "--layer", "0"]) == errors.NOT_FOUND
    err = capsys.readouterr().err
    assert all(line.startswith("provenance: ") for line in err.strip().splitlines())
