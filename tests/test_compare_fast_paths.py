"""The comparison's fast paths compute what the direct formulations compute: the engine against comparisons
captured before they existed (every signal, body and embedding included; recaptured when a statistic changes
on purpose: the attention products' spectral start moved only the independent pair's body statistics, the
cross-fitting wording changed every note), and each shortcut against the computation it replaces."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from provenance import kernels
from provenance.errors import MalformedInput
from provenance.fingerprint import Fingerprint, load_fingerprint
from provenance.fingerprint.integrity import digest
from provenance.lineage import body, compare_fingerprints, null, similarity
from tests.nested import assert_same

FIXTURE = Path(__file__).parent / "data" / "compare_synthetic_v1.json"


@pytest.fixture(scope="module")
def synthetic_pairs():
    from benchmarks.synthetic import synthetic_fingerprint
    saved = torch.get_num_threads()
    torch.set_num_threads(1)  # as captured
    try:
        a = synthetic_fingerprint(26, seed=1)
        yield {"derived-26": (a, synthetic_fingerprint(26, seed=2, parent=a)),
               "independent-26": (a, synthetic_fingerprint(26, seed=3)),
               "derived-26-to-20": (a, synthetic_fingerprint(20, seed=4, parent=a))}
    finally:
        torch.set_num_threads(saved)


def test_engine_reproduces_captured_comparisons_with_every_signal(synthetic_pairs):
    """26 layers: the sampled signals run on the layer map and a null sample; 26 to 20 layers: the map is searched."""
    captured = json.loads(FIXTURE.read_text())
    assert set(captured) == set(synthetic_pairs)
    for name, (a, b) in synthetic_pairs.items():
        fresh = compare_fingerprints(a, b)
        assert {s["name"] for s in fresh["signals"]} >= {"body_neurons", "body_attention", "embedding", "neuron_match"}
        fresh = json.loads(json.dumps({k: v for k, v in fresh.items() if k not in ("tool", "schema_version", "matrices")}))
        assert_same(fresh, captured[name], name)
    assert [captured[k]["verdict"] for k in sorted(captured)] == ["derived", "derived", "independent"]


@pytest.mark.parametrize("shape", [(40, 40), (30, 45)])
def test_match_takes_distinct_row_maxima_as_the_optimum_and_agrees_with_scipy(shape):
    g = torch.Generator().manual_seed(7)
    n, m = shape
    easy = torch.rand(n, m, generator=g, dtype=torch.float64)
    easy[torch.arange(n), torch.randperm(m, generator=g)[:n]] += 2.0   # each row's best column is its own
    hard = torch.rand(n, m, generator=g, dtype=torch.float64)
    hard[:, 0] += 2.0                                                  # every row's best column is the same
    for sim in (easy, hard):
        rows, cols, vals = kernels.match(sim)
        ref_rows, ref_cols = linear_sum_assignment(sim.numpy(), maximize=True)
        assert (rows == ref_rows).all() and (cols == ref_cols).all()
        assert np.array_equal(vals, sim.numpy()[ref_rows, ref_cols])


def test_match_refuses_nan_as_scipy_does():
    sim = torch.eye(5, dtype=torch.float64)
    sim[2, 2] = float("nan")
    with pytest.raises(ValueError):
        kernels.match(sim)


@pytest.mark.parametrize("idx", [list(range(16)), [0, 3, 4, 9, 15]])
def test_profiles_are_standardized_as_standardize_rows_does(idx):
    t = torch.randn(12, 16, generator=torch.Generator().manual_seed(2)) * 3 + 1
    sel = torch.tensor(idx)
    fast = similarity._standardized(t, None if len(idx) == 16 else sel)
    assert torch.equal(fast, kernels.standardize_rows(t.double()[:, sel]).float())


def test_head_blocks_and_joined_mapping_equal_the_per_head_and_per_part_forms():
    g = torch.Generator().manual_seed(4)
    heads, kv, m, d = 6, 2, 3, 8
    rows = torch.randn((2 * heads + 2 * kv) * m, d, generator=g)
    qo, kv_blocks = body._head_blocks(rows, (heads, kv, m))
    cut = list(torch.split(rows, m))
    q, k, v, o = cut[:heads], cut[heads:heads + kv], cut[heads + kv:heads + 2 * kv], cut[heads + 2 * kv:]
    assert torch.equal(qo, torch.stack([torch.cat([a, b]) for a, b in zip(q, o)]))
    assert torch.equal(kv_blocks, torch.stack([torch.cat([a, b]) for a, b in zip(k, v)]))
    parts = [torch.randn(5, d, generator=g) for _ in range(3)]
    s = torch.linalg.qr(torch.randn(d, d, generator=g))[0]
    desc = body.neurons(parts[:1], parts[1:])
    signed, paired = body._mapped(desc, s)
    torch.testing.assert_close(signed, parts[0] @ s.T)
    torch.testing.assert_close(paired, torch.cat([y @ s.T for y in parts[1:]], dim=1))


def test_null_takes_the_finite_off_map_pairs_row_by_row():
    m = np.arange(30, dtype=float).reshape(5, 6)
    m[1, 4] = np.nan
    path = [(0, 0), (1, 1), (2, 3), (4, 5)]
    t = null.layer_null_test(m, path, searched=False)
    expected = [m[i, j] for i in range(5) for j in range(6) if (i, j) not in path and np.isfinite(m[i, j])]
    assert t["null"] == expected and t["observed"] == [m[i, j] for i, j in path]


def test_digest_covers_each_tensors_bytes_as_specified():
    tensors = {"b": torch.arange(6, dtype=torch.float32).reshape(2, 3), "a": torch.tensor([1.5], dtype=torch.bfloat16),
               "e": torch.zeros(0)}
    h = hashlib.sha256(b"provenance-fingerprint\0" + b"{}")
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"\0{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode() + t.view(torch.uint8).numpy().tobytes())
    assert digest("{}", tensors) == f"sha256:v1:{h.hexdigest()}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_stored_tensor_is_refused_in_any_float_dtype(tmp_path, dtype, bad):
    from benchmarks.synthetic import synthetic_fingerprint
    fp = synthetic_fingerprint(2, seed=5)
    tensors = {k: v.clone() for k, v in fp.tensors.items()}
    key = "layer.1.gram.k"
    tensors[key] = tensors[key].to(dtype)
    Fingerprint(fp.doc, dict(tensors)).save(tmp_path / "ok.safetensors")
    assert load_fingerprint(tmp_path / "ok.safetensors").tensors[key].dtype == dtype
    tensors[key][3, 5] = bad
    Fingerprint(fp.doc, tensors).save(tmp_path / "bad.safetensors")
    with pytest.raises(MalformedInput, match="layer.1.gram.k.*not finite"):
        load_fingerprint(tmp_path / "bad.safetensors")
