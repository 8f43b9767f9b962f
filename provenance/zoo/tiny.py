"""A tiny decoder in the Qwen2 layout, written functionally over a state dict.

Working on the state dict directly keeps every transform (permutation, rescaling,
upcycling, layer surgery, new vocabulary) a plain dict operation, and the saved
checkpoint is exactly what was trained.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

BASE_CONFIG = {
    "model_type": "qwen2", "vocab_size": 256, "hidden_size": 64, "num_hidden_layers": 4,
    "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128,
    "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
}


def layer_key(i: int, suffix: str) -> str:
    return f"model.layers.{i}.{suffix}"


def num_layers(state: dict) -> int:
    return 1 + max(int(k.split(".")[2]) for k in state if k.startswith("model.layers."))


def init_state(cfg: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
    h, f, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd = h // cfg["num_attention_heads"]
    kv = cfg["num_key_value_heads"] * hd

    def normal(*shape, std=0.02):
        return torch.randn(*shape, generator=generator) * std

    state = {"model.embed_tokens.weight": normal(v, h), "model.norm.weight": torch.ones(h), "lm_head.weight": normal(v, h)}
    for i in range(cfg["num_hidden_layers"]):
        state.update({
            layer_key(i, "input_layernorm.weight"): torch.ones(h),
            layer_key(i, "self_attn.q_proj.weight"): normal(h, h), layer_key(i, "self_attn.q_proj.bias"): torch.zeros(h),
            layer_key(i, "self_attn.k_proj.weight"): normal(kv, h), layer_key(i, "self_attn.k_proj.bias"): torch.zeros(kv),
            layer_key(i, "self_attn.v_proj.weight"): normal(kv, h), layer_key(i, "self_attn.v_proj.bias"): torch.zeros(kv),
            layer_key(i, "self_attn.o_proj.weight"): normal(h, h, std=0.02 / math.sqrt(2 * cfg["num_hidden_layers"])),
            layer_key(i, "post_attention_layernorm.weight"): torch.ones(h),
            layer_key(i, "mlp.gate_proj.weight"): normal(f, h), layer_key(i, "mlp.up_proj.weight"): normal(f, h),
            layer_key(i, "mlp.down_proj.weight"): normal(h, f, std=0.02 / math.sqrt(2 * cfg["num_hidden_layers"])),
        })
    return state


def _rms(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def _rope(x, theta):
    # x: [B, heads, T, hd]; rotate-half convention as in HF Llama/Qwen2
    t, hd = x.shape[-2], x.shape[-1]
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    ang = torch.outer(torch.arange(t, dtype=torch.float32), inv)
    cos, sin = torch.cat([ang.cos()] * 2, -1).to(x.dtype), torch.cat([ang.sin()] * 2, -1).to(x.dtype)
    x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def _swiglu(h, gate, up, down):
    return (F.silu(h @ gate.T) * (h @ up.T)) @ down.T


def _mlp(p, i, h, cfg):
    if layer_key(i, "mlp.gate.weight") not in p:
        return _swiglu(h, p[layer_key(i, "mlp.gate_proj.weight")], p[layer_key(i, "mlp.up_proj.weight")],
                       p[layer_key(i, "mlp.down_proj.weight")])
    logits = h @ p[layer_key(i, "mlp.gate.weight")].T
    top = cfg.get("num_experts_per_tok", 2)
    weights = torch.softmax(logits, -1)
    keep = torch.zeros_like(weights).scatter(-1, weights.topk(top, -1).indices, 1.0)
    weights = weights * keep
    out = 0
    for e in range(logits.shape[-1]):
        ex = f"mlp.experts.{e}."
        out = out + weights[..., e: e + 1] * _swiglu(h, p[layer_key(i, ex + "gate_proj.weight")],
                                                     p[layer_key(i, ex + "up_proj.weight")], p[layer_key(i, ex + "down_proj.weight")])
    if layer_key(i, "mlp.shared_expert.up_proj.weight") in p:
        out = out + _swiglu(h, p[layer_key(i, "mlp.shared_expert.gate_proj.weight")],
                            p[layer_key(i, "mlp.shared_expert.up_proj.weight")], p[layer_key(i, "mlp.shared_expert.down_proj.weight")])
    return out


def forward(p: dict, cfg: dict, ids: torch.Tensor) -> torch.Tensor:
    """Logits [B, T, vocab] for token ids [B, T]."""
    heads, kvh = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    eps, theta = cfg.get("rms_norm_eps", 1e-5), cfg.get("rope_theta", 10000.0)
    x = p["model.embed_tokens.weight"][ids]
    b, t, h = x.shape
    hd = p[layer_key(0, "self_attn.q_proj.weight")].shape[0] // heads
    for i in range(num_layers(p)):
        a = _rms(x, p[layer_key(i, "input_layernorm.weight")], eps)
        q = a @ p[layer_key(i, "self_attn.q_proj.weight")].T + p[layer_key(i, "self_attn.q_proj.bias")]
        k = a @ p[layer_key(i, "self_attn.k_proj.weight")].T + p[layer_key(i, "self_attn.k_proj.bias")]
        v = a @ p[layer_key(i, "self_attn.v_proj.weight")].T + p[layer_key(i, "self_attn.v_proj.bias")]
        q = _rope(q.view(b, t, heads, hd).transpose(1, 2), theta)
        k = _rope(k.view(b, t, kvh, hd).transpose(1, 2), theta).repeat_interleave(heads // kvh, 1)
        v = v.view(b, t, kvh, hd).transpose(1, 2).repeat_interleave(heads // kvh, 1)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, heads * hd)
        x = x + o @ p[layer_key(i, "self_attn.o_proj.weight")].T
        x = x + _mlp(p, i, _rms(x, p[layer_key(i, "post_attention_layernorm.weight")], eps), cfg)
    return _rms(x, p["model.norm.weight"], eps) @ p["lm_head.weight"].T


def train(state: dict, cfg: dict, data: torch.Tensor, *, steps: int, lr: float, seed: int,
          batch: int = 16, seq: int = 64, trainable=None) -> dict[str, torch.Tensor]:
    """AdamW on next-token loss; deterministic for a given seed, data and thread count."""
    gen = torch.Generator().manual_seed(seed)
    params = {k: v.detach().clone().float().requires_grad_(trainable is None or trainable(k)) for k, v in state.items()}
    opt = torch.optim.AdamW([v for v in params.values() if v.requires_grad], lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20))
    for _ in range(steps):
        starts = torch.randint(0, len(data) - seq - 1, (batch,), generator=gen)
        chunk = torch.stack([data[s: s + seq + 1] for s in starts.tolist()])
        logits = forward(params, cfg, chunk[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), chunk[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([v for v in params.values() if v.requires_grad], 1.0)
        opt.step()
        sched.step()
    return {k: v.detach().contiguous() for k, v in params.items()}


@torch.no_grad()
def loss_on(state: dict, cfg: dict, data: torch.Tensor, seq: int = 64, n: int = 8) -> float:
    starts = torch.linspace(0, len(data) - seq - 2, n).long()
    chunk = torch.stack([data[s: s + seq + 1] for s in starts.tolist()])
    logits = forward(state, cfg, chunk[:, :-1])
    return float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), chunk[:, 1:].reshape(-1)))
