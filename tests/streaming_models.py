"""Small checkpoints for the streaming-read tests, every one wider than the body-basis threshold (so the basis
pass runs): a dense Qwen2-style model, a Qwen2-MoE with per-expert tensors and a shared expert, the same MoE
with experts stacked in one [experts, out, in] tensor per role (GGUF names), and a GGUF file of the dense one.
Seeded: every machine writes the same bytes."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

HIDDEN, FFN, HEADS, KV_HEADS, VOCAB, LAYERS = 640, 384, 10, 2, 600, 2
EXPERTS, EXPERT_FFN = 4, 96


def _rand(g, *shape, scale=0.02):
    return torch.randn(*shape, generator=g) * scale


def _attention(g, prefix, names, bias):
    kv = HIDDEN // HEADS * KV_HEADS
    out = {names["q"]: _rand(g, HIDDEN, HIDDEN), names["k"]: _rand(g, kv, HIDDEN), names["v"]: _rand(g, kv, HIDDEN),
           names["o"]: _rand(g, HIDDEN, HIDDEN)}
    if bias:
        out.update({names["q"].replace("weight", "bias"): _rand(g, HIDDEN),
                    names["k"].replace("weight", "bias"): _rand(g, kv), names["v"].replace("weight", "bias"): _rand(g, kv)})
    return {f"{prefix}{k}": v for k, v in out.items()}


def _layers(seed: int, mlp) -> dict[str, torch.Tensor]:
    """Embedding and final norm, then per layer attention and both norms, then `mlp(g, prefix)` (the draw order
    fixes the bytes the stored references were made from)."""
    g = torch.Generator().manual_seed(seed)
    state = {"model.embed_tokens.weight": _rand(g, VOCAB, HIDDEN), "model.norm.weight": 1 + _rand(g, HIDDEN, scale=0.1)}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        state.update(_attention(g, p, {r: f"self_attn.{r}_proj.weight" for r in "qkvo"}, bias=True))
        state.update({p + "input_layernorm.weight": 1 + _rand(g, HIDDEN, scale=0.1),
                      p + "post_attention_layernorm.weight": 1 + _rand(g, HIDDEN, scale=0.1)})
        state.update(mlp(g, p))
    return state


def dense_state(seed: int = 0) -> dict[str, torch.Tensor]:
    return _layers(seed, lambda g, p: {p + "mlp.gate_proj.weight": _rand(g, FFN, HIDDEN),
                                       p + "mlp.up_proj.weight": _rand(g, FFN, HIDDEN),
                                       p + "mlp.down_proj.weight": _rand(g, HIDDEN, FFN)})


def moe_state(seed: int = 1) -> dict[str, torch.Tensor]:
    """Qwen2-MoE names: experts one tensor each, a shared expert, a router."""
    def mlp(g, p):
        out = {p + "mlp.gate.weight": _rand(g, EXPERTS, HIDDEN)}
        for e in range(EXPERTS):
            q = f"{p}mlp.experts.{e}."
            out.update({q + "gate_proj.weight": _rand(g, EXPERT_FFN, HIDDEN), q + "up_proj.weight": _rand(g, EXPERT_FFN, HIDDEN),
                        q + "down_proj.weight": _rand(g, HIDDEN, EXPERT_FFN)})
        q = f"{p}mlp.shared_expert."
        out.update({q + "gate_proj.weight": _rand(g, FFN, HIDDEN), q + "up_proj.weight": _rand(g, FFN, HIDDEN),
                    q + "down_proj.weight": _rand(g, HIDDEN, FFN)})
        return out
    return _layers(seed, mlp)


# Hugging Face names -> GGUF names: the whole-model tensors and every layer's attention and norms
GGUF_NAMES = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}
GGUF_LAYER_NAMES = {"self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
                    "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
                    "self_attn.q_proj.bias": "attn_q.bias", "self_attn.k_proj.bias": "attn_k.bias",
                    "self_attn.v_proj.bias": "attn_v.bias", "input_layernorm.weight": "attn_norm.weight",
                    "post_attention_layernorm.weight": "ffn_norm.weight"}


def stacked_state(unstacked: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The MoE with GGUF names and every layer's experts stacked [experts, out, in] per role."""
    names = GGUF_NAMES
    per_layer = {**GGUF_LAYER_NAMES, "mlp.gate.weight": "ffn_gate_inp.weight",
                 "mlp.shared_expert.gate_proj.weight": "ffn_gate_shexp.weight",
                 "mlp.shared_expert.up_proj.weight": "ffn_up_shexp.weight",
                 "mlp.shared_expert.down_proj.weight": "ffn_down_shexp.weight"}
    out = {new: unstacked[old] for old, new in names.items()}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        out.update({f"blk.{i}.{new}": unstacked[p + old] for old, new in per_layer.items()})
        for role, gguf_role in (("gate_proj", "ffn_gate_exps"), ("up_proj", "ffn_up_exps"), ("down_proj", "ffn_down_exps")):
            out[f"blk.{i}.{gguf_role}.weight"] = torch.stack([unstacked[f"{p}mlp.experts.{e}.{role}.weight"] for e in range(EXPERTS)])
    return out


def write_safetensors(state: dict[str, torch.Tensor], directory: Path, shards: int = 2, dtype=torch.bfloat16,
                      config: dict | None = None) -> Path:
    """A sharded checkpoint with its index; weights stored in `dtype`."""
    directory.mkdir(parents=True, exist_ok=True)
    names = sorted(state)
    weight_map = {}
    for s in range(shards):
        fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        save_file({n: state[n].to(dtype).contiguous() for n in names[s::shards]}, directory / fname)
        weight_map.update({n: fname for n in names[s::shards]})
    (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    if config:
        (directory / "config.json").write_text(json.dumps(config))
    return directory


DENSE_CONFIG = {"model_type": "qwen2", "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS}
MOE_CONFIG = {"model_type": "qwen2_moe", "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS}


def write_gguf(state: dict[str, torch.Tensor], path: Path, quantize: bool = True) -> Path:
    """The dense model as a GGUF file (qwen2 names), matrices in Q8_0 when `quantize`, vectors in F32."""
    import gguf
    names = GGUF_NAMES
    per_layer = {**GGUF_LAYER_NAMES, "mlp.gate_proj.weight": "ffn_gate.weight",
                 "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight"}
    for i in range(LAYERS):
        names.update({f"model.layers.{i}.{old}": f"blk.{i}.{new}" for old, new in per_layer.items()})
    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_block_count(LAYERS)
    writer.add_embedding_length(HIDDEN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_token_list([f"tok{i}" for i in range(VOCAB)])
    for old, new in names.items():
        array = state[old].numpy().astype(np.float32)
        if quantize and array.ndim == 2:
            writer.add_tensor(new, gguf.quants.quantize(array, gguf.GGMLQuantizationType.Q8_0),
                              raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(new, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def summary(fp) -> dict:
    """A fingerprint reduced to what a reference file can hold: the document's per-layer records and settings,
    and per stored tensor its shape, norm and four seeded random projections (equal summaries up to float
    tolerance mean equal fingerprints up to float tolerance, short of a change orthogonal to all four)."""
    tensors = {}
    for key, t in sorted(fp.tensors.items()):
        flat = t.double().reshape(-1)
        g = torch.Generator().manual_seed(0)
        probes = torch.randn(4, flat.numel(), generator=g, dtype=torch.float64)
        tensors[key] = {"shape": list(t.shape), "norm": float(flat.norm()), "projections": (probes @ flat).tolist()}
    layers = [{k: v for k, v in layer.items()} for layer in fp.doc["layers"]]
    tokens = hashlib.sha256(json.dumps(fp.doc.get("embedding"), sort_keys=True).encode()).hexdigest()
    return {"content_hash": fp.doc["model"]["content_hash"], "facts": fp.doc["model"]["facts"],
            "settings": fp.doc["settings"], "embedding_sha256": tokens, "layers": layers, "tensors": tensors}


def differences(expected, got, rtol: float = 1e-4, path: str = "") -> list[str]:
    """Where two summaries (or any JSON-like values) differ beyond float tolerance: each float within
    rtol of its own size, each tensor projection within rtol of the tensor's norm."""
    if isinstance(expected, dict) and "projections" in expected and isinstance(got, dict):
        scale = rtol * max(expected["norm"], 1e-12)
        out = [] if expected["shape"] == got.get("shape") else [f"{path}: shape {got.get('shape')} != {expected['shape']}"]
        if abs(expected["norm"] - got["norm"]) > scale:
            out.append(f"{path}: norm {got['norm']} != {expected['norm']}")
        if any(abs(a - b) > scale for a, b in zip(expected["projections"], got["projections"])):
            out.append(f"{path}: projections differ")
        return out
    if isinstance(expected, dict) and isinstance(got, dict):
        if set(expected) != set(got):
            return [f"{path}: keys {sorted(set(expected) ^ set(got))} in one only"]
        return [d for k in expected for d in differences(expected[k], got[k], rtol, f"{path}.{k}")]
    if isinstance(expected, list) and isinstance(got, list):
        if len(expected) != len(got):
            return [f"{path}: {len(got)} items != {len(expected)}"]
        return [d for i, (a, b) in enumerate(zip(expected, got)) for d in differences(a, b, rtol, f"{path}[{i}]")]
    if isinstance(expected, float) and isinstance(got, (int, float)):
        return [] if abs(expected - got) <= rtol * max(abs(expected), 1e-12) else [f"{path}: {got} != {expected}"]
    return [] if expected == got else [f"{path}: {got!r} != {expected!r}"]
