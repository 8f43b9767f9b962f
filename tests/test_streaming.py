"""The streaming fingerprint pass: the same fingerprint as before, each tensor read once, no mapped shards.

tests/data/streaming_reference.json holds summaries of fingerprints that the previous implementation (three
reads of every MLP matrix, whole-tensor checks, a full eigendecomposition) computed from the seeded models of
tests/streaming_models.py; the fingerprints computed now must agree with them to float tolerance.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from provenance.backends import get_backend
from provenance.errors import MalformedInput
from provenance.fingerprint import compute, fingerprint_view
from provenance.model import open_model
from tests import streaming_models as sm

REFERENCE = Path(__file__).parent / "data" / "streaming_reference.json"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("streaming")
    moe = sm.moe_state()
    return {"dense": sm.write_safetensors(sm.dense_state(), root / "dense", config=sm.DENSE_CONFIG),
            "moe": sm.write_safetensors(moe, root / "moe", config=sm.MOE_CONFIG),
            "stacked": sm.write_safetensors(sm.stacked_state(moe), root / "stacked",
                                            config={"num_attention_heads": sm.HEADS, "num_key_value_heads": sm.KV_HEADS}),
            "gguf": sm.write_gguf(sm.dense_state(), root / "dense.gguf")}


def _fingerprint(path):
    with open_model(path) as view:
        return fingerprint_view(view, get_backend("cpu"))


@pytest.mark.parametrize("name", ["dense", "moe", "stacked", "gguf"])
def test_fingerprint_equals_the_previous_implementation(models, name):
    expected = json.loads(REFERENCE.read_text())[name]
    got = sm.summary(_fingerprint(models[name]))
    assert got["settings"]["body_basis"].startswith("top 128 principal directions")  # the basis pass ran
    assert sm.differences(expected, got, rtol=1e-4) == []


def test_stacked_and_unstacked_experts_give_the_same_features(models):
    a, b = _fingerprint(models["moe"]), _fingerprint(models["stacked"])
    assert set(a.tensors) == set(b.tensors)
    for key in a.tensors:
        torch.testing.assert_close(a.tensors[key], b.tensors[key], rtol=1e-4, atol=1e-6, msg=key)


def test_streaming_equals_fingerprinting_a_fully_loaded_model(zoo):
    """A zoo MoE (upcycled: experts copied from one FFN, so neuron scores tie) read tensor by tensor, against
    the same weights held in memory."""
    path = zoo("base-s0-upcycle")
    streamed = _fingerprint(path)
    with open_model(path) as view:
        held = {n: view.source.get(n).clone() for n in view.source.infos()}
        view.source.get = lambda name, float32=False: held[name].float() if float32 else held[name]
        view.source.get_slice = lambda name, k, float32=False: held[name][k]
        view.source.get_rows = lambda name, a, b, float32=False: held[name][a:b].float()
        loaded = fingerprint_view(view, get_backend("cpu"))
    assert set(streamed.tensors) == set(loaded.tensors)
    for key in streamed.tensors:
        assert torch.equal(streamed.tensors[key], loaded.tensors[key]), key


@pytest.mark.parametrize("name", ["dense", "moe", "stacked"])
def test_every_tensor_is_read_once(models, name):
    with open_model(models[name]) as view:
        reads = Counter()
        get, get_rows = view.source.get, view.source.get_rows
        view.source.get = lambda n, float32=False: reads.update([n]) or get(n, float32)
        view.source.get_rows = lambda n, a, b, float32=False: reads.update([f"{n}[{a}:{b}]"]) or get_rows(n, a, b, float32)
        fingerprint_view(view, get_backend("cpu"))
    norms = {n for n in reads if "layernorm" in n or "norm.weight" in n}
    # the MLP norm is read in both passes (a vector); every matrix exactly once
    assert {n: c for n, c in reads.items() if c != 1 and n not in norms} == {}
    assert any("experts" in n or "exps" in n for n in reads) == (name != "dense")
    if name == "stacked":
        assert not any(n.endswith("exps.weight") for n in reads), "a stacked tensor is read one expert at a time"


def test_safetensors_shards_are_not_memory_mapped(models):
    maps = Path("/proc/self/maps")
    if not maps.exists():
        pytest.skip("needs /proc/self/maps (Linux)")
    with open_model(models["dense"]) as view:
        for name in view.source.infos():
            view.source.get(name)
        mapped = maps.read_text()
        assert not any(str(f) in mapped for f in view.source.files)
        assert view.source._handles  # the shards are open for positioned reads
    assert not view.source._handles


def test_gguf_tensor_pages_are_not_touched_through_the_mapping(models):
    """The gguf package maps the whole file; tensor bytes are read with positioned reads instead, so the
    mapping's resident pages stay those of the header."""
    smaps = Path("/proc/self/smaps")
    if not smaps.exists():
        pytest.skip("needs /proc/self/smaps (Linux)")
    path = models["gguf"]
    with open_model(path) as view:
        for name in view.source.infos():
            view.source.get(name)
        resident, inside = 0, False
        for line in smaps.read_text().splitlines():
            if line and line[0] in "0123456789abcdef" and "-" in line.split()[0]:
                inside = line.endswith(str(path))
            elif inside and line.startswith("Rss:"):
                resident += int(line.split()[1]) * 1024
    assert resident < path.stat().st_size / 4


def test_stacked_gguf_experts_read_alone_equal_the_whole_tensor(tmp_path):
    import gguf
    import numpy as np
    stacked = np.random.default_rng(0).standard_normal((4, 32, 64), dtype=np.float32)
    path = tmp_path / "m.gguf"
    writer = gguf.GGUFWriter(str(path), "qwen2moe")
    writer.add_tensor("token_embd.weight", np.random.default_rng(1).standard_normal((16, 64), dtype=np.float32))
    writer.add_tensor("blk.0.attn_q.weight", np.random.default_rng(2).standard_normal((64, 64), dtype=np.float32))
    writer.add_tensor("blk.0.ffn_up_exps.weight", gguf.quants.quantize(stacked, gguf.GGMLQuantizationType.Q8_0),
                      raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with open_model(path) as view:
        whole = view.source.get("blk.0.ffn_up_exps.weight")
        assert whole.shape == (4, 32, 64)
        for e in range(4):
            assert torch.equal(view.source.get_slice("blk.0.ffn_up_exps.weight", e), whole[e])
        assert (whole - torch.from_numpy(stacked)).abs().max() < 0.05  # Q8_0 of N(0, 1) values


def test_widened_reads_equal_the_stored_values_widened(models):
    with open_model(models["dense"]) as view:
        for name in view.source.infos():
            stored = view.source.get(name)
            assert stored.dtype == torch.bfloat16
            assert torch.equal(view.source.get(name, float32=True), stored.float())


def test_widening_crosses_read_blocks(tmp_path, monkeypatch):
    from safetensors.torch import save_file
    from provenance.io import open_source, safetensors_reader
    monkeypatch.setattr(safetensors_reader, "WIDEN_BLOCK", 6)  # 3 bf16 values per read: blocks end mid-row
    t = torch.randn(7, 5).to(torch.bfloat16)
    save_file({"w": t, "s": torch.randn(3, 7, 5).to(torch.float16)}, tmp_path / "m.safetensors")
    with open_source(tmp_path / "m.safetensors") as src:
        assert torch.equal(src.get("w", float32=True), t.float())
        s = src.get("s")
        assert torch.equal(src.get_slice("s", 2, float32=True), s[2].float())


@pytest.mark.parametrize("name", ["dense", "gguf"])
def test_row_ranges_read_alone_equal_the_whole_tensor(models, name):
    with open_model(models[name]) as view:
        embed = view.name_of("embed")
        whole = view.source.get(embed, float32=True)
        assert view.source.random_access
        for start, stop in ((0, 1), (7, 123), (whole.shape[0] - 5, whole.shape[0])):
            assert torch.equal(view.source.get_rows(embed, start, stop, float32=True), whole[start:stop])
        with pytest.raises(IndexError):
            view.source.get_rows(embed, 3, whole.shape[0] + 1)


def test_embedding_read_in_small_blocks_gives_the_same_fingerprint(models, monkeypatch):
    whole = _fingerprint(models["dense"])
    monkeypatch.setattr(compute, "EMBED_BLOCK_BYTES", 7 * 4 * sm.HIDDEN)  # 7 rows a block: 86 blocks of 600 rows
    with open_model(models["dense"]) as view:
        reads = []
        get_rows = view.source.get_rows
        view.source.get_rows = lambda n, a, b, float32=False: reads.append((n, a, b)) or get_rows(n, a, b, float32)
        blocked = fingerprint_view(view, get_backend("cpu"))
    embed_reads = [r for r in reads if r[0] == "model.embed_tokens.weight"]
    assert len(embed_reads) == -(-sm.VOCAB // 7) and all(b - a <= 7 for _, a, b in embed_reads)
    assert set(whole.tensors) == set(blocked.tensors)
    for key in whole.tensors:
        assert torch.equal(whole.tensors[key], blocked.tensors[key]), key


def test_weights_widened_on_the_device_give_the_same_fingerprint(models):
    """Accelerators take each weight as stored (bf16 here) and widen it on the device; a host backend that
    does the same must compute the same fingerprint bit for bit (widening bf16 is exact)."""
    from provenance.backends import CpuBackend

    class WidenOnDevice(CpuBackend):
        widen_on_device = True

    for name in ("dense", "stacked"):
        host = _fingerprint(models[name])
        with open_model(models[name]) as view:
            reads = []
            get = view.source.get
            view.source.get = lambda n, float32=False: reads.append(float32) or get(n, float32)
            device = fingerprint_view(view, WidenOnDevice())
        assert reads and not any(reads)  # every tensor read in its stored dtype
        assert set(host.tensors) == set(device.tensors)
        for key in host.tensors:
            assert torch.equal(host.tensors[key], device.tensors[key]), (name, key)


def test_a_rotated_copy_of_a_wide_model_gets_the_same_body_coordinates(tmp_path):
    """Above FULL_HIDDEN the body features are projected onto the model's own principal basis; a residual
    rotation (norms folded) must leave them in place, signs included, and an independent model must not."""
    from provenance.zoo import transforms as T
    assert sm.HIDDEN > compute.FULL_HIDDEN
    state = sm.dense_state(0)
    state["lm_head.weight"] = state["model.embed_tokens.weight"].clone()
    cfg = {**sm.DENSE_CONFIG, "num_hidden_layers": sm.LAYERS, "hidden_size": sm.HIDDEN}
    rotated = T.rotate({k: v.clone() for k, v in state.items()}, cfg, torch.Generator().manual_seed(3))
    other = sm.dense_state(5)
    fps = [_fingerprint(sm.write_safetensors(s, tmp_path / name, dtype=torch.float32, config=sm.DENSE_CONFIG))
           for name, s in (("a", state), ("rotated", rotated), ("other", other))]
    body = [key for key in fps[0].tensors if ".body." in key or key == "embed.rows"]
    assert len(body) == 1 + 6 * sm.LAYERS
    for key in body:
        a, turned, unrelated = (fp.tensors[key] for fp in fps)
        assert float((a - turned).norm() / a.norm()) < 1e-4, key       # measured about 5e-6
        assert float((a - unrelated).norm() / a.norm()) > 0.5, key


@pytest.mark.parametrize("bad", ["nan-last-row", "constant"])
def test_embedding_screened_across_blocks(tmp_path, monkeypatch, bad):
    state = sm.dense_state()
    embed = state["model.embed_tokens.weight"]
    if bad == "nan-last-row":
        embed[-1, 3] = float("nan")  # in the last block only: every block must be screened
        match = "NaN or Inf"
    else:
        embed.fill_(0.125)           # each block alone looks constant; so does the whole: refused once, at the end
        match = "constant"
    path = sm.write_safetensors(state, tmp_path / "m", config=sm.DENSE_CONFIG)
    monkeypatch.setattr(compute, "EMBED_BLOCK_BYTES", 50 * 4 * sm.HIDDEN)
    with pytest.raises(MalformedInput, match=match):
        _fingerprint(path)


@pytest.mark.parametrize("seed", range(5))
def test_kept_rows_are_the_layer_wide_top_k_even_with_ties(seed):
    g = torch.Generator().manual_seed(seed)
    sizes = [int(n) for n in torch.randint(1, 40, (6,), generator=g)]
    # scores with many exact ties (as in an upcycled MoE, whose experts are copies)
    scores = [torch.randint(0, 6, (n,), generator=g).float() for n in sizes]
    rows = [torch.randn(n, 3, generator=g) for n in sizes]
    kept = compute._Kept(10)
    for s, r in zip(scores, rows):
        kept.attach("x", r[kept.offer(s)])
    n, parts = kept.finish()
    keep = torch.cat(scores).topk(min(10, sum(sizes))).indices.sort().values
    assert n == keep.numel() and torch.equal(parts["x"], torch.cat(rows)[keep])


def test_a_part_missing_from_one_group_is_not_pooled():
    kept = compute._Kept(4)
    for s, gate in ((torch.tensor([3.0, 1.0]), torch.ones(2, 2)), (torch.tensor([2.0]), None)):
        chosen = kept.offer(s)
        kept.attach("gate", None if gate is None else gate[chosen])
        kept.attach("up", torch.zeros(len(chosen), 2))
    _, parts = kept.finish()
    assert set(parts) == {"up"}


def test_weight_checks_see_the_whole_tensor_across_blocks(monkeypatch):
    from provenance import degenerate
    monkeypatch.setattr(degenerate, "CHECK_ELEMENTS", 8)
    varied = torch.zeros(6, 4)
    varied[5, 3] = 0.5  # the first blocks are constant, the tensor is not
    assert degenerate.usable(varied, "w", "mlp.up", None) is varied
    with pytest.raises(MalformedInput, match="constant"):
        degenerate.usable(torch.full((6, 4), 0.25), "w", "mlp.up", None)
    bad = torch.randn(6, 4)
    bad[5, 2] = float("nan")
    with pytest.raises(MalformedInput, match="NaN or Inf"):
        degenerate.usable(bad, "w", "mlp.up", None)
    huge = torch.randn(6, 4)
    huge[4, 0] = -1e7
    with pytest.raises(MalformedInput, match="magnitude 1e\\+07"):
        degenerate.usable(huge.T, "w", "mlp.up", None)  # a transposed view is checked without a copy of it


def test_top_eigenvectors_match_a_full_decomposition():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(300, 40, generator=g, dtype=torch.float64)
    gram = a.T @ a
    full = torch.linalg.eigh(gram)
    want = full.eigenvectors[:, full.eigenvalues.argsort(descending=True)[:8]]
    got = compute._top_eigenvectors(gram.clone(), 8)
    signs = torch.sign((got * want).sum(dim=0))
    torch.testing.assert_close(got, want * signs, rtol=0, atol=1e-10)


def test_upper_block_gram_equals_the_full_product():
    from provenance import kernels
    g = torch.Generator().manual_seed(1)
    rows = torch.randn(2500, 37, generator=g, dtype=torch.float64)
    gram = torch.zeros(37, 37, dtype=torch.float64)
    kernels.add_gram(gram, rows, chunk=1024)
    torch.testing.assert_close(kernels.mirror(gram), rows.T @ rows, rtol=1e-12, atol=1e-9)


def test_attention_products_in_basis_coordinates_equal_projecting_the_full_products():
    from provenance import kernels
    g = torch.Generator().manual_seed(2)
    heads, kv_heads, hd, hidden, d = 6, 2, 8, 48, 5
    q, o = torch.randn(heads * hd, hidden, generator=g, dtype=torch.float64), torch.randn(hidden, heads * hd, generator=g, dtype=torch.float64)
    k, v = (torch.randn(kv_heads * hd, hidden, generator=g, dtype=torch.float64) for _ in range(2))
    basis = torch.linalg.qr(torch.randn(hidden, d, generator=g, dtype=torch.float64)).Q
    for product, a, b in ((kernels.qk_product, q, k), (kernels.ov_product, o, v)):
        full = product(a, b, heads, kv_heads)
        torch.testing.assert_close(product(a, b, heads, kv_heads, basis), basis.T @ full @ basis, rtol=1e-12, atol=1e-12)


def test_progress_counts_every_byte_it_planned(models, monkeypatch):
    seen = []

    class Recorder(compute.Progress):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen.append(self)

    monkeypatch.setattr(compute, "Progress", Recorder)
    for name in ("dense", "stacked", "gguf"):
        with open_model(models[name]) as view:
            fingerprint_view(view, get_backend("cpu"))
    for tracker in seen:
        assert tracker.total_bytes and tracker.bytes == tracker.total_bytes
        assert tracker.done == tracker.total


def test_positioned_reads_fall_back_to_seek_and_read(tmp_path, monkeypatch):
    import os
    from provenance.io.safetensors_reader import read_into
    data = bytes(range(256)) * 9
    path = tmp_path / "f"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        fast = bytearray(300)
        read_into(fd, memoryview(fast), 5, path)
        monkeypatch.delattr(os, "preadv")
        slow = bytearray(300)
        read_into(fd, memoryview(slow), 5, path)
        assert fast == slow == data[5:305]
        with pytest.raises(MalformedInput, match="file ended"):
            read_into(fd, memoryview(bytearray(300)), len(data) - 10, path)
    finally:
        os.close(fd)
