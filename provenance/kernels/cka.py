"""Gram matrices and unbiased CKA (Song et al. 2012 HSIC estimator, as in AWM).

CKA between two feature maps over the same samples is invariant to orthogonal
transforms and isotropic scaling of either feature space: head permutations and
Q/K or V/O rescaling leave it unchanged.
"""
from __future__ import annotations

import torch


def gram(features: torch.Tensor) -> torch.Tensor:
    """[samples, features] -> [samples, samples] linear kernel."""
    return features @ features.T


def unbiased_hsic(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    n = k.shape[0]
    k = k - torch.diag(torch.diagonal(k))
    l = l - torch.diag(torch.diagonal(l))
    ones = torch.ones(n, 1, dtype=k.dtype, device=k.device)
    term1 = (k * l).sum()
    term2 = (ones.T @ k @ ones) * (ones.T @ l @ ones) / ((n - 1) * (n - 2))
    term3 = 2 * (ones.T @ k @ l @ ones) / (n - 2)
    return ((term1 + term2 - term3) / (n * (n - 3))).reshape(())


def unbiased_cka(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """Unbiased CKA of two Gram matrices over the same n >= 4 samples."""
    hkl = unbiased_hsic(k, l)
    denom = torch.sqrt((unbiased_hsic(k, k) * unbiased_hsic(l, l)).clamp_min(0))
    return hkl / denom.clamp_min(torch.finfo(k.dtype).tiny)
