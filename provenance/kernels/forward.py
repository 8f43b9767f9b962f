"""A small forward pass: one pre-norm attention + MLP block on anchor-token inputs
(SwiGLU when the model has a gate projection, GELU as in BERT and GPT-2 when it has none).

Family-agnostic (it takes the role tensors, not a model), so drift can measure a real
attention/softmax/MLP chain on any checkpoint's first layer.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .stats import rms_rows


def block_forward(x, wq, wk, wv, wo, w_gate, w_up, w_down, heads: int, kv_heads: int) -> torch.Tensor:
    """x: [tokens, hidden] treated as one causal sequence -> [tokens, hidden]."""
    t = x.shape[0]
    a = rms_rows(x)
    q, k, v = a @ wq.T, a @ wk.T, a @ wv.T
    hd = q.shape[-1] // heads
    q = q.view(t, heads, hd).transpose(0, 1)
    k = k.view(t, kv_heads, hd).transpose(0, 1).repeat_interleave(heads // kv_heads, 0)
    v = v.view(t, kv_heads, hd).transpose(0, 1).repeat_interleave(heads // kv_heads, 0)
    scores = (q @ k.transpose(1, 2)) / hd ** 0.5
    mask = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
    attn = torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1) @ v
    x = x + attn.transpose(0, 1).reshape(t, heads * hd) @ wo.T
    m = rms_rows(x)
    hidden = F.gelu(m @ w_up.T) if w_gate is None else F.silu(m @ w_gate.T) * (m @ w_up.T)
    return x + hidden @ w_down.T
