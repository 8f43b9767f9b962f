import json
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from provenance.errors import MalformedInput, UnsafeInput, Unsupported
from provenance.io import open_source
from provenance.io.gguf_reader import unpermute_rope_rows
from provenance.model import inspect_model

from .onnx_export import bert_onnx


def test_single_safetensors_file_reads_every_tensor_exactly(base_dir, base_state):
    with open_source(base_dir / "model.safetensors") as src:
        assert src.format == "safetensors"
        assert set(src.infos()) == set(base_state)
        for name, tensor in base_state.items():
            assert torch.equal(src.get(name), tensor)


def test_sharded_qwen2_checkpoint_inspects_with_right_facts(tmp_path, base_dir, base_state, write_sharded_fn):
    config = json.loads((base_dir / "config.json").read_text())
    shard_dir = write_sharded_fn(base_state, tmp_path / "sharded", shards=3, config=config)
    info = inspect_model(shard_dir)
    assert info["format"] == "safetensors" and info["family"] == "qwen2"
    assert (info["num_layers"], info["hidden_size"], info["num_attention_heads"], info["num_key_value_heads"]) == (4, 64, 4, 2)
    assert info["vocab_size"] == 256 and info["num_experts"] == 0 and info["intermediate_size"] == 128
    assert info["num_parameters"] == sum(t.numel() for t in base_state.values())
    assert len(info["sha256"]) == 5  # three shards, the index and config.json
    assert info["unmapped"] == []
    with open_source(shard_dir) as src:
        name = "model.layers.3.mlp.down_proj.weight"
        assert torch.equal(src.get(name), base_state[name])


def test_qwen2_moe_checkpoint_inspects_with_experts(zoo, tmp_path, write_sharded_fn):
    from safetensors.torch import load_file
    moe = zoo("base-s0-upcycle")
    info = inspect_model(moe)
    assert info["family"] == "qwen2_moe" and info["num_experts"] == 4 and info["num_layers"] == 4
    state = load_file(moe / "model.safetensors")
    sharded = inspect_model(write_sharded_fn(state, tmp_path / "moe", shards=2))
    assert sharded["family"] == "qwen2_moe" and sharded["num_experts"] == 4
    assert sharded["roles"]["model.layers.1.mlp.experts.3.up_proj.weight"] == "layers.1.moe.expert.up[3]"
    assert sharded["roles"]["model.layers.1.mlp.shared_expert.down_proj.weight"] == "layers.1.moe.shared.down"


@pytest.mark.parametrize("zipfile_format", [True, False])
def test_torch_bin_loads_through_weights_only(tmp_path, base_state, zipfile_format):
    path = tmp_path / "pytorch_model.bin"
    torch.save(base_state, path, _use_new_zipfile_serialization=zipfile_format)
    info = inspect_model(path)
    assert info["format"] == "torch" and info["family"] == "qwen2" and info["num_layers"] == 4
    with open_source(path) as src:
        assert torch.equal(src.get("lm_head.weight"), base_state["lm_head.weight"])


def test_torch_checkpoint_wrapped_in_state_dict_key(tmp_path, base_state):
    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": base_state, "epoch": 3}, path)
    assert inspect_model(path)["family"] == "qwen2"


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_carrying_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.bin"
    with open(path, "wb") as fh:
        pickle.dump({"w": _Payload(str(marker))}, fh)
    with pytest.raises(UnsafeInput, match="refused: the pickle imports io.open"):
        open_source(path)
    assert not marker.exists()


@pytest.mark.parametrize("int8", [False, True])
def test_onnx_bert_export_named_and_transposed_back(tmp_path, int8):
    truth = bert_onnx(tmp_path / "model.onnx", int8=int8)
    info = inspect_model(tmp_path / "model.onnx")
    assert info["format"] == "onnx" and info["family"] == "bert"
    assert info["num_layers"] == 2 and info["hidden_size"] == 16 and info["intermediate_size"] == 32
    with open_source(tmp_path / "model.onnx") as src:
        for name, expected in truth.items():
            np.testing.assert_allclose(src.get(name).numpy(), expected, rtol=1e-6, atol=1e-6)
        if int8:
            assert "int8" in info["dtypes"]


def _llama_cpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    # llama.cpp's convert script, for q (n_head) and k (n_head_kv)
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def test_rope_unpermute_inverts_llama_cpp_permutation():
    w = np.random.default_rng(0).normal(size=(48, 10)).astype(np.float32)
    back = unpermute_rope_rows(torch.from_numpy(_llama_cpp_permute(w, 3)), 3)
    assert np.array_equal(back.numpy(), w)


def test_gguf_llama_file_dequantized_and_unpermuted(tmp_path):
    gguf = pytest.importorskip("gguf")
    rng = np.random.default_rng(1)
    hidden, heads, kv, ffn, vocab = 32, 4, 2, 48, 40
    tensors = {"token_embd.weight": rng.normal(size=(vocab, hidden)), "output_norm.weight": rng.normal(size=(hidden,))}
    for i in range(2):
        tensors.update({f"blk.{i}.attn_q.weight": rng.normal(size=(hidden, hidden)),
                        f"blk.{i}.attn_k.weight": rng.normal(size=(kv * hidden // heads, hidden)),
                        f"blk.{i}.attn_v.weight": rng.normal(size=(kv * hidden // heads, hidden)),
                        f"blk.{i}.attn_output.weight": rng.normal(size=(hidden, hidden)),
                        f"blk.{i}.attn_norm.weight": rng.normal(size=(hidden,)),
                        f"blk.{i}.ffn_norm.weight": rng.normal(size=(hidden,)),
                        f"blk.{i}.ffn_gate.weight": rng.normal(size=(ffn, hidden)),
                        f"blk.{i}.ffn_up.weight": rng.normal(size=(ffn, hidden)),
                        f"blk.{i}.ffn_down.weight": rng.normal(size=(hidden, ffn))})
    writer = gguf.GGUFWriter(str(tmp_path / "m.gguf"), "llama")
    writer.add_block_count(2)
    writer.add_embedding_length(hidden)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv)
    writer.add_feed_forward_length(ffn)
    for name, w in tensors.items():
        w = w.astype(np.float32)
        if name.endswith("attn_q.weight"):
            w = _llama_cpp_permute(w, heads)
        elif name.endswith("attn_k.weight"):
            w = _llama_cpp_permute(w, kv)
        writer.add_tensor(name, w)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    info = inspect_model(tmp_path / "m.gguf")
    assert info["family"] == "gguf_llama" and info["num_layers"] == 2
    assert (info["num_attention_heads"], info["num_key_value_heads"], info["hidden_size"]) == (heads, kv, hidden)
    with open_source(tmp_path / "m.gguf") as src:
        for name, w in tensors.items():
            np.testing.assert_array_equal(src.get(name).numpy(), w.astype(np.float32))


@pytest.mark.parametrize("count", [float("nan"), float("inf"), 2.5])
def test_gguf_count_that_is_not_a_whole_number_is_refused(tmp_path, count):
    """A layer count stored as a float NaN (a fuzzer's find) once crashed int(); it is a malformed file."""
    gguf = pytest.importorskip("gguf")
    writer = gguf.GGUFWriter(str(tmp_path / "m.gguf"), "llama")
    writer.add_float32("llama.block_count", count)
    writer.add_tensor("token_embd.weight", np.ones((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(MalformedInput, match="block_count .* not a whole number"):
        open_source(tmp_path / "m.gguf")


def test_unknown_format_is_unsupported(tmp_path):
    path = tmp_path / "weights.xyz"
    path.write_bytes(b"hello")
    with pytest.raises(Unsupported):
        open_source(path)


def test_config_that_lies_about_shapes_is_rejected(tmp_path, base_dir, base_state):
    save_file(base_state, tmp_path / "model.safetensors")
    config = json.loads((base_dir / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "hidden_size": 4096}))
    with pytest.raises(MalformedInput, match="hidden_size=4096"):
        inspect_model(tmp_path)


@pytest.mark.parametrize("dtype,name", [(torch.bfloat16, "BF16"), (torch.float16, "F16"), (torch.float64, "F64"),
                                        (torch.float8_e4m3fn, "F8_E4M3"), (torch.float8_e5m2, "F8_E5M2")])
def test_safetensors_dtypes_read_exactly(tmp_path, base_state, dtype, name):
    state = {k: v.to(dtype) for k, v in base_state.items()}
    save_file(state, tmp_path / "model.safetensors")
    info = inspect_model(tmp_path)
    assert info["dtypes"] == [name] and info["family"] == "qwen2"
    with open_source(tmp_path) as src:
        got = src.get("model.layers.0.mlp.up_proj.weight")
        assert got.dtype == dtype and torch.equal(got.view(torch.uint8), state["model.layers.0.mlp.up_proj.weight"].view(torch.uint8))


def test_model_view_is_a_context_manager_that_releases_its_files(base_dir):
    from provenance.model import open_model
    with open_model(base_dir) as view:
        name = next(iter(view.source.infos()))
        view.source.get(name)
        assert view.source._handles, "reading a tensor opens its shard"
    assert not view.source._handles, "leaving the block releases every open shard"
