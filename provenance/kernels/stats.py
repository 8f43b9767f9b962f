"""Moments and correlations: pure torch, any device, any floating dtype.

Kernels take tensors already placed by a Backend and return tensors on that device,
so the same code is what runs (and what drift measures) on cpu, cuda and npu.
"""
from __future__ import annotations

import torch


def std(w: torch.Tensor) -> torch.Tensor:
    """torch.std over all entries (unbiased), as the sigma-curve method uses it."""
    return w.reshape(-1).std()


def rms_rows(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Each row scaled to unit root-mean-square, as RMSNorm does before its weight."""
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)


def fold_norm(x: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Apply a norm's elementwise weight to normalized inputs, when it acts on their width (else leave them)."""
    return x * weight if weight is not None and weight.shape[-1] == x.shape[-1] else x


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Centred correlation of two flat vectors."""
    a, b = a.reshape(-1), b.reshape(-1)
    a, b = a - a.mean(), b - b.mean()
    return (a @ b) / (a.norm() * b.norm()).clamp_min(torch.finfo(a.dtype).tiny)


def standardize_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows centred and scaled to unit norm, so that a @ b.T is the row-by-row Pearson correlation."""
    x = x - x.mean(dim=1, keepdim=True)
    return x / x.norm(dim=1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)


def row_corr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of every row of `a` with every row of `b`: [rows_a, rows_b]."""
    return standardize_rows(a) @ standardize_rows(b).T


def zscore(x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean()) / x.std().clamp_min(torch.finfo(x.dtype).tiny)
