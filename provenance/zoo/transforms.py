"""What people do to a model to hide (or simply in the course of) derivation.

Each transform takes a trained state and returns a derived one; the function-preserving
ones (permute, rescale) are checked to preserve the outputs in the tests.
"""
from __future__ import annotations

import torch

from .corpus import Vocab
from .tiny import layer_key, num_layers

ATTN = ("q_proj", "k_proj", "v_proj")


def _layer_items(state: dict, i: int) -> dict:
    prefix = f"model.layers.{i}."
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _with_layers(state: dict, layers: list[dict]) -> dict:
    out = {k: v for k, v in state.items() if not k.startswith("model.layers.")}
    for i, items in enumerate(layers):
        out.update({layer_key(i, k): v for k, v in items.items()})
    return out


HIDDEN_INPUT = ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
                "mlp.gate_proj.weight", "mlp.up_proj.weight")
HIDDEN_OUTPUT = ("self_attn.o_proj.weight", "mlp.down_proj.weight")
HIDDEN_VECTORS = ("input_layernorm.weight", "post_attention_layernorm.weight")


def permute_hidden(state: dict, gen: torch.Generator) -> dict:
    """Permute the residual-stream dimensions everywhere: RMSNorm is permutation-equivariant,
    so the function is unchanged while every hidden-indexed vector is reordered."""
    h = state["model.embed_tokens.weight"].shape[1]
    perm = torch.randperm(h, generator=gen)
    out = dict(state)
    for key in ("model.embed_tokens.weight", "lm_head.weight"):
        out[key] = state[key][:, perm]
    out["model.norm.weight"] = state["model.norm.weight"][perm]
    for i in range(num_layers(state)):
        for name in HIDDEN_INPUT:
            if layer_key(i, name) in state:
                out[layer_key(i, name)] = state[layer_key(i, name)][:, perm]
        for name in HIDDEN_OUTPUT:
            if layer_key(i, name) in state:
                out[layer_key(i, name)] = state[layer_key(i, name)][perm]
        for name in HIDDEN_VECTORS:
            out[layer_key(i, name)] = state[layer_key(i, name)][perm]
    return out


def permute(state: dict, cfg: dict, gen: torch.Generator) -> dict:
    """Permute hidden dimensions, MLP neurons and attention heads (by KV group): the function is unchanged."""
    state = permute_hidden(state, gen)
    out = dict(state)
    heads, kvh = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = state[layer_key(0, "self_attn.q_proj.weight")].shape[0] // heads
    group = heads // kvh
    for i in range(num_layers(state)):
        f = state[layer_key(i, "mlp.up_proj.weight")].shape[0]
        perm = torch.randperm(f, generator=gen)
        for name in ("mlp.gate_proj.weight", "mlp.up_proj.weight"):
            out[layer_key(i, name)] = state[layer_key(i, name)][perm]
        out[layer_key(i, "mlp.down_proj.weight")] = state[layer_key(i, "mlp.down_proj.weight")][:, perm]
        kv_perm = torch.randperm(kvh, generator=gen)
        q_heads = torch.cat([torch.arange(g * group, (g + 1) * group)[torch.randperm(group, generator=gen)] for g in kv_perm.tolist()])
        q_rows = torch.cat([torch.arange(h * hd, (h + 1) * hd) for h in q_heads.tolist()])
        kv_rows = torch.cat([torch.arange(h * hd, (h + 1) * hd) for h in kv_perm.tolist()])
        for proj, rows in (("q_proj", q_rows), ("k_proj", kv_rows), ("v_proj", kv_rows)):
            for kind in ("weight", "bias"):
                out[layer_key(i, f"self_attn.{proj}.{kind}")] = state[layer_key(i, f"self_attn.{proj}.{kind}")][rows]
        out[layer_key(i, "self_attn.o_proj.weight")] = state[layer_key(i, "self_attn.o_proj.weight")][:, q_rows]
    return out


def rescale(state: dict, cfg: dict, gen: torch.Generator) -> dict:
    """Q*a, K/a, V*b, O/b, up*c, down/c per layer: function-preserving, moves every sigma-curve."""
    out = dict(state)
    for i in range(num_layers(state)):
        a, b, c = (float(torch.empty(1).uniform_(0.25, 4.0, generator=gen)) for _ in range(3))
        for name, factor in (("self_attn.q_proj", a), ("self_attn.k_proj", 1 / a), ("self_attn.v_proj", b)):
            out[layer_key(i, name + ".weight")] = state[layer_key(i, name + ".weight")] * factor
            out[layer_key(i, name + ".bias")] = state[layer_key(i, name + ".bias")] * factor
        out[layer_key(i, "self_attn.o_proj.weight")] = state[layer_key(i, "self_attn.o_proj.weight")] / b
        out[layer_key(i, "mlp.up_proj.weight")] = state[layer_key(i, "mlp.up_proj.weight")] * c
        out[layer_key(i, "mlp.down_proj.weight")] = state[layer_key(i, "mlp.down_proj.weight")] / c
    return out


def upcycle(state: dict, cfg: dict, gen: torch.Generator, experts: int = 4) -> tuple[dict, dict]:
    """Dense FFN -> fine-grained MoE: neurons shuffled and split into routed experts, half re-used as a shared expert."""
    out = {k: v for k, v in state.items() if ".mlp." not in k}
    h = cfg["hidden_size"]
    for i in range(num_layers(state)):
        gate, up, down = (state[layer_key(i, f"mlp.{n}_proj.weight")] for n in ("gate", "up", "down"))
        f = up.shape[0]
        perm = torch.randperm(f, generator=gen)
        width = f // experts
        for e in range(experts):
            rows = perm[e * width: (e + 1) * width]
            out[layer_key(i, f"mlp.experts.{e}.gate_proj.weight")] = gate[rows].clone()
            out[layer_key(i, f"mlp.experts.{e}.up_proj.weight")] = up[rows].clone()
            out[layer_key(i, f"mlp.experts.{e}.down_proj.weight")] = down[:, rows].clone() * experts / 2
        shared = torch.randperm(f, generator=gen)[: f // 2]
        out[layer_key(i, "mlp.shared_expert.gate_proj.weight")] = gate[shared].clone()
        out[layer_key(i, "mlp.shared_expert.up_proj.weight")] = up[shared].clone()
        out[layer_key(i, "mlp.shared_expert.down_proj.weight")] = down[:, shared].clone() * 0.5
        out[layer_key(i, "mlp.gate.weight")] = torch.randn(experts, h, generator=gen) * 0.02
    moe_cfg = {**cfg, "model_type": "qwen2_moe", "num_experts": experts, "num_experts_per_tok": 2,
               "moe_intermediate_size": f // experts, "shared_expert_intermediate_size": f // 2}
    return out, moe_cfg


def remove_layer(state: dict, cfg: dict, index: int) -> tuple[dict, dict]:
    layers = [_layer_items(state, i) for i in range(num_layers(state)) if i != index]
    return _with_layers(state, layers), {**cfg, "num_hidden_layers": len(layers)}


def insert_layer(state: dict, cfg: dict, copy_of: int) -> tuple[dict, dict]:
    """Depth up-scaling: duplicate a layer in place (as SOLAR did at scale)."""
    layers = [_layer_items(state, i) for i in range(num_layers(state))]
    layers.insert(copy_of + 1, {k: v.clone() for k, v in layers[copy_of].items()})
    return _with_layers(state, layers), {**cfg, "num_hidden_layers": len(layers)}


def prune_mlp(state: dict, cfg: dict, keep: float = 0.75) -> tuple[dict, dict]:
    """Width pruning: keep the FFN neurons with the largest weight norms."""
    out = dict(state)
    for i in range(num_layers(state)):
        up, gate, down = (state[layer_key(i, f"mlp.{n}_proj.weight")] for n in ("up", "gate", "down"))
        score = up.norm(dim=1) * gate.norm(dim=1) * down.norm(dim=0)
        rows = score.topk(int(up.shape[0] * keep)).indices.sort().values
        out[layer_key(i, "mlp.up_proj.weight")] = up[rows]
        out[layer_key(i, "mlp.gate_proj.weight")] = gate[rows]
        out[layer_key(i, "mlp.down_proj.weight")] = down[:, rows]
    return out, {**cfg, "intermediate_size": len(rows)}


def quantize_int8(state: dict) -> dict:
    """Per-row symmetric int8 round trip of every matrix (what an int8 export stores)."""
    out = {}
    for k, v in state.items():
        if v.dim() == 2:
            scale = v.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127.0
            out[k] = (torch.round(v / scale).clamp(-127, 127) * scale).to(v.dtype)
        else:
            out[k] = v
    return out


def add_noise(state: dict, gen: torch.Generator, relative: float = 0.5) -> dict:
    return {k: v + torch.randn(v.shape, generator=gen) * v.std() * relative if v.dim() == 2 else v
            for k, v in state.items()}


def change_vocab(state: dict, cfg: dict, old: Vocab, new: Vocab) -> tuple[dict, dict]:
    """New tokenizer: rows move by token string, merged tokens start as the mean of their parts."""
    out = dict(state)
    for key in ("model.embed_tokens.weight", "lm_head.weight"):
        table = state[key]
        rows = [table[[old.ids[c] for c in new.components(t)]].mean(0) for t in new.tokens]
        out[key] = torch.stack(rows)
    return out, {**cfg, "vocab_size": len(new.tokens)}


def reinit_vocab(state: dict, cfg: dict, new: Vocab, gen: torch.Generator, std: float = 0.02) -> tuple[dict, dict]:
    """New tokenizer with embeddings and LM head drawn afresh: nothing of the old rows survives."""
    h = state["model.embed_tokens.weight"].shape[1]
    out = dict(state)
    for key in ("model.embed_tokens.weight", "lm_head.weight"):
        out[key] = torch.randn(len(new.tokens), h, generator=gen) * std
    return out, {**cfg, "vocab_size": len(new.tokens)}


# Which matrices read the residual stream (after which norm) and which write to it. Routers, routed
# experts and the shared expert read after the post-attention norm like a dense FFN does.
def _reads_after(name: str) -> str | None:
    if name.startswith("self_attn.") and name.endswith(tuple(f"{p}.weight" for p in ATTN)):
        return "input_layernorm.weight"
    if name.startswith("mlp.") and name.endswith(("gate_proj.weight", "up_proj.weight", "mlp.gate.weight",
                                                  "shared_expert_gate.weight")):
        return "post_attention_layernorm.weight"
    return None


def _writes(name: str) -> bool:
    return name.endswith(("self_attn.o_proj.weight", "down_proj.weight"))


def fold_norms(state: dict) -> dict:
    """Fold every RMSNorm weight into the matrices that read its output; the norms become ones.

    rms(x) * g @ W.T == rms(x) @ (W * g).T, so the function is unchanged.
    """
    out = dict(state)
    for i in range(num_layers(state)):
        items = _layer_items(state, i)
        for name, w in items.items():
            norm = _reads_after(name)
            if norm is not None:
                out[layer_key(i, name)] = w * items[norm][None, :]
        for norm in HIDDEN_VECTORS:
            out[layer_key(i, norm)] = torch.ones_like(items[norm])
    out["lm_head.weight"] = state["lm_head.weight"] * state["model.norm.weight"][None, :]
    out["model.norm.weight"] = torch.ones_like(state["model.norm.weight"])
    return out


def random_orthogonal(n: int, gen: torch.Generator) -> torch.Tensor:
    """Haar-distributed orthogonal matrix (QR of a Gaussian with the signs of R's diagonal fixed)."""
    q, r = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))[None, :]


def rotate(state: dict, cfg: dict, gen: torch.Generator) -> dict:
    """Fold the norms, then turn the residual stream by a random orthogonal Q: x -> x Q.

    Unit-weight RMSNorm commutes with Q (it keeps the norm of x), so readers become W Q,
    writers Q.T W, and the embedding and LM head rows turn with the stream.
    """
    state = fold_norms(state)
    q = random_orthogonal(state["model.embed_tokens.weight"].shape[1], gen)
    out = dict(state)
    for key in ("model.embed_tokens.weight", "lm_head.weight"):
        out[key] = (state[key].double() @ q).to(state[key].dtype)
    for i in range(num_layers(state)):
        for name, w in _layer_items(state, i).items():
            if _reads_after(name) is not None:
                out[layer_key(i, name)] = (w.double() @ q).to(w.dtype)
            elif _writes(name):
                out[layer_key(i, name)] = (q.T @ w.double()).to(w.dtype)
    return out


def rotate_heads(state: dict, cfg: dict, gen: torch.Generator) -> dict:
    """Turn every head's internal basis (function-preserving): V rows of a key/value group and the O columns of
    its query heads by one random orthogonal matrix; Q rows of a group's heads and its K rows by one rotation in
    each RoPE frequency plane (dimensions j and j + head_dim/2 in the rotate-half convention), which commutes
    with the position rotation, so every attention score is unchanged."""
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    out = dict(state)
    for i in range(num_layers(state)):
        key = lambda name: layer_key(i, f"self_attn.{name}")
        hd = state[key("q_proj.weight")].shape[0] // heads
        half = hd // 2
        q, k, v, o = (state[key(f"{n}_proj.weight")].double().clone() for n in "qkvo")
        qb, kb, vb = (state[key(f"{n}_proj.bias")].double().clone() if key(f"{n}_proj.bias") in state else None
                      for n in "qkv")
        for g in range(kv):
            group = range(g * heads // kv, (g + 1) * heads // kv)
            r = random_orthogonal(hd, gen).double()
            angle = torch.rand(half, generator=gen, dtype=torch.float64) * 2 * torch.pi
            plane = torch.zeros(hd, hd, dtype=torch.float64)
            idx = torch.arange(half)
            plane[idx, idx] = plane[idx + half, idx + half] = angle.cos()
            plane[idx, idx + half], plane[idx + half, idx] = -angle.sin(), angle.sin()
            rows = slice(g * hd, (g + 1) * hd)
            v[rows] = r @ v[rows]
            k[rows] = plane @ k[rows]
            for t in (vb, kb):
                if t is not None:
                    t[rows] = (r if t is vb else plane) @ t[rows]
            for h in group:
                hr = slice(h * hd, (h + 1) * hd)
                o[:, hr] = o[:, hr] @ r.T
                q[hr] = plane @ q[hr]
                if qb is not None:
                    qb[hr] = plane @ qb[hr]
        for name, t in (("q_proj.weight", q), ("k_proj.weight", k), ("v_proj.weight", v), ("o_proj.weight", o),
                        ("q_proj.bias", qb), ("k_proj.bias", kb), ("v_proj.bias", vb)):
            if t is not None:
                out[key(name)] = t.to(state[key(name)].dtype)
    return out


def finegrained_moe(state: dict, cfg: dict, gen: torch.Generator, experts: int = 8, shared: int = 32,
                    copies: int = 2, top_k: int = 2) -> tuple[dict, dict]:
    """Dense FFN -> fine-grained MoE: the `shared` most important neurons become a shared expert, the
    rest are dealt `copies` times over `experts` small routed experts (each neuron in about `copies`).

    Each copy's down column is scaled by experts / copies, so that with every expert routed at the
    uniform weight 1 / experts the layer is exactly the dense FFN; top-k routing keeps only part of it.
    """
    out = {k: v for k, v in state.items() if ".mlp." not in k}
    h = cfg["hidden_size"]
    for i in range(num_layers(state)):
        gate, up, down = (state[layer_key(i, f"mlp.{n}_proj.weight")] for n in ("gate", "up", "down"))
        score = up.norm(dim=1) * gate.norm(dim=1) * down.norm(dim=0)
        order = score.argsort(descending=True)
        kept, routed = order[:shared], order[shared:]
        width = len(routed) * copies // experts
        deals = [routed[torch.randperm(len(routed), generator=gen)] for _ in range(copies)]
        for e in range(experts):
            rows = torch.cat([d[e * width // copies: (e + 1) * width // copies] for d in deals])
            out[layer_key(i, f"mlp.experts.{e}.gate_proj.weight")] = gate[rows].clone()
            out[layer_key(i, f"mlp.experts.{e}.up_proj.weight")] = up[rows].clone()
            out[layer_key(i, f"mlp.experts.{e}.down_proj.weight")] = down[:, rows] * (experts / copies)
        out[layer_key(i, "mlp.shared_expert.gate_proj.weight")] = gate[kept].clone()
        out[layer_key(i, "mlp.shared_expert.up_proj.weight")] = up[kept].clone()
        out[layer_key(i, "mlp.shared_expert.down_proj.weight")] = down[:, kept].clone()
        out[layer_key(i, "mlp.gate.weight")] = torch.randn(experts, h, generator=gen) * 0.02
    moe_cfg = {**cfg, "model_type": "qwen2_moe", "num_experts": experts, "num_experts_per_tok": top_k,
               "moe_intermediate_size": width, "shared_expert_intermediate_size": shared}
    return out, moe_cfg
