"""Every reader returns what the format's own loader returns, on every variant of the format we can write.

A reader that maps raw bytes where the format compresses them (a deflated torch zip under mmap) hands
lineage garbage in place of the weights; these tests compare each reader's tensors with the reference
loader's, bit for bit: torch.load(weights_only=True), safetensors.torch.load_file, gguf's reader with
gguf.quants.dequantize, onnx.numpy_helper.
"""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from provenance.io import open_source

from .hostile_corpus import valid_state


def _state(dtype=torch.float32):
    return {k: v.to(dtype) for k, v in valid_state().items()}


def _read_all(path):
    with open_source(path) as src:
        return {name: src.get(name) for name in src.infos()}


def _assert_same(ours: dict, reference: dict):
    assert set(ours) == set(reference)
    for name, ref in reference.items():
        got = ours[name]
        assert got.shape == ref.shape, name
        assert torch.equal(got.to(torch.float64), ref.to(torch.float64)), name


def _rezip(src, dst, compression):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compression=compression) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))


TORCH_VARIANTS = {
    "zip-stored": lambda p, s: torch.save(s, p),
    "zip-deflated": lambda p, s: (torch.save(s, p.with_suffix(".tmp")), _rezip(p.with_suffix(".tmp"), p, zipfile.ZIP_DEFLATED),
                                  p.with_suffix(".tmp").unlink()),
    "zip-bzip2": lambda p, s: (torch.save(s, p.with_suffix(".tmp")), _rezip(p.with_suffix(".tmp"), p, zipfile.ZIP_BZIP2),
                               p.with_suffix(".tmp").unlink()),
    "legacy": lambda p, s: torch.save(s, p, _use_new_zipfile_serialization=False),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("variant", sorted(TORCH_VARIANTS))
def test_torch_reader_matches_torch_load(tmp_path, variant, dtype):
    path = tmp_path / "pytorch_model.bin"
    TORCH_VARIANTS[variant](path, _state(dtype))
    try:
        reference = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # the format's own loader cannot read it: the reader must refuse too, never guess
        with pytest.raises(Exception) as info:
            _read_all(path)
        assert type(info.value).__module__.startswith("provenance")
        return
    _assert_same(_read_all(path), reference)


def test_deflated_bin_is_not_read_as_raw_compressed_bytes(tmp_path):
    """The evasion: a parent's exact weights, deflated, must read as the parent's weights."""
    state = _state()
    path = tmp_path / "pytorch_model.bin"
    TORCH_VARIANTS["zip-deflated"](path, state)
    with zipfile.ZipFile(path) as zf:
        assert any(i.compress_type == zipfile.ZIP_DEFLATED for i in zf.infolist())
    _assert_same(_read_all(path), state)


def test_sharded_torch_reader_matches_torch_load(tmp_path):
    state = _state()
    names = sorted(state)
    weight_map = {}
    for k, shard in enumerate(("pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin")):
        part = {n: state[n] for n in names[k::2]}
        TORCH_VARIANTS["zip-deflated" if k else "zip-stored"](tmp_path / shard, part)
        weight_map.update({n: shard for n in part})
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    reference = {}
    for shard in set(weight_map.values()):
        reference.update(torch.load(tmp_path / shard, weights_only=True))
    _assert_same(_read_all(tmp_path), reference)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64], ids=str)
def test_safetensors_reader_matches_load_file(tmp_path, dtype):
    save_file(_state(dtype), tmp_path / "model.safetensors")
    _assert_same(_read_all(tmp_path / "model.safetensors"), load_file(tmp_path / "model.safetensors"))


def test_sharded_safetensors_reader_matches_load_file(tmp_path):
    state, weight_map = _state(), {}
    names = sorted(state)
    for k in range(3):
        shard = f"model-0000{k + 1}-of-00003.safetensors"
        save_file({n: state[n] for n in names[k::3]}, tmp_path / shard)
        weight_map.update({n: shard for n in names[k::3]})
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    reference = {}
    for shard in set(weight_map.values()):
        reference.update(load_file(tmp_path / shard))
    _assert_same(_read_all(tmp_path), reference)


@pytest.mark.parametrize("qtype", ["F32", "F16", "Q8_0"])
def test_gguf_reader_matches_gguf_dequantize(tmp_path, qtype):
    gguf = pytest.importorskip("gguf")
    rng = np.random.default_rng(3)
    arrays = {"token_embd.weight": rng.normal(size=(40, 32)), "blk.0.ffn_up.weight": rng.normal(size=(64, 32)),
              "blk.0.attn_norm.weight": rng.normal(size=(32,))}
    path = tmp_path / "m.gguf"
    writer = gguf.GGUFWriter(str(path), "gpt2")  # no RoPE row permutation: the raw tensors are compared
    kind = gguf.GGMLQuantizationType[qtype]
    for name, a in arrays.items():
        a = a.astype(np.float32)
        if a.ndim == 1 or qtype == "F32":
            writer.add_tensor(name, a)
        elif qtype == "F16":
            writer.add_tensor(name, a.astype(np.float16))
        else:
            writer.add_tensor(name, gguf.quants.quantize(a, kind), raw_shape=gguf.quant_shape_to_byte_shape(a.shape, kind),
                              raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    reader = gguf.GGUFReader(str(path))
    reference = {t.name: torch.from_numpy(np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32)
                                          .reshape(tuple(reversed([int(d) for d in t.shape]))).copy())
                 for t in reader.tensors}
    _assert_same(_read_all(path), reference)
    if qtype == "Q8_0":  # and the dequantized values are the weights, to quantization precision
        ours = _read_all(path)
        assert np.abs(ours["blk.0.ffn_up.weight"].numpy() - arrays["blk.0.ffn_up.weight"]).max() < 0.05


@pytest.mark.parametrize("int8", [False, True], ids=["fp32", "int8"])
def test_onnx_reader_matches_numpy_helper(tmp_path, int8):
    pytest.importorskip("onnx")
    import onnx
    from onnx import numpy_helper

    from .onnx_export import bert_onnx
    truth = bert_onnx(tmp_path / "model.onnx", int8=int8)
    model = onnx.load(str(tmp_path / "model.onnx"))
    raw = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    ours = _read_all(tmp_path / "model.onnx")
    for name, expected in truth.items():
        np.testing.assert_allclose(ours[name].numpy(), expected, rtol=1e-6, atol=1e-6)
    if not int8:  # each float weight the reader returns is an initializer as numpy_helper reads it, or its transpose
        pool = [a.astype(np.float32) for a in raw.values() if a.dtype.kind == "f"]
        for name, t in ours.items():
            v = t.numpy()
            assert any(a.shape == v.shape and np.array_equal(a, v) or a.T.shape == v.shape and np.array_equal(a.T, v)
                       for a in pool), name


def test_directory_with_both_formats_warns_when_they_differ(tmp_path, capsys):
    state = _state()
    save_file(state, tmp_path / "model.safetensors")
    other = {k: v + 1 for k, v in state.items()}
    torch.save(other, tmp_path / "pytorch_model.bin")
    with open_source(tmp_path) as src:
        assert src.format == "safetensors" and src.metadata["also_present"] == ["torch"]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "warning" in err and "differ" in err and "reading the safetensors" in err


def test_directory_with_both_formats_agreeing_is_silent(tmp_path, capsys):
    state = _state()
    save_file(state, tmp_path / "model.safetensors")
    torch.save(state, tmp_path / "pytorch_model.bin")
    with open_source(tmp_path) as src:
        assert src.metadata["weights_read"] == "safetensors"
    assert capsys.readouterr().err == ""
