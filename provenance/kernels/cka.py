"""Gram matrices and unbiased CKA (Song et al. 2012 HSIC estimator, as in AWM).

CKA between two feature maps over the same samples is invariant to orthogonal
transforms and isotropic scaling of either feature space: head permutations and
Q/K or V/O rescaling leave it unchanged.

One implementation, batched: `cka_matrix` scores every pair of two stacks of Grams in
one matrix product (what the verdict runs over all layer pairs); `unbiased_cka` is the
one-pair case of the same code (what drift measures), so both are the same arithmetic.
"""
from __future__ import annotations

import torch


def gram(features: torch.Tensor) -> torch.Tensor:
    """[samples, features] -> [samples, samples] linear kernel."""
    return features @ features.T


def hsic_terms(grams: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per Gram of a [m, n, n] stack: the flattened Gram [m, n*n] (a view), its diagonal [m, n], and the row sums
    [m, n] and total [m] of the diagonal-free Gram. The estimator zeroes the diagonal; the diagonal is subtracted
    from the dot products instead, so no copy of the stack is made."""
    diag = grams.diagonal(dim1=-2, dim2=-1)
    rows = grams.sum(dim=-1) - diag
    return grams.reshape(grams.shape[0], -1), diag, rows, rows.sum(dim=-1)


def _hsic(a, b, n: int, pairwise: bool) -> torch.Tensor:
    """Unbiased HSIC from hsic_terms: every pair ([ma, mb]) or row by row ([m], a and b of equal length)."""
    (fa, da, ra, ta), (fb, db, rb, tb) = a, b
    if pairwise:
        dot, rowdot, tot = fa @ fb.T - da @ db.T, ra @ rb.T, torch.outer(ta, tb)
    elif fa is fb:
        dot, rowdot, tot = torch.linalg.vector_norm(fa, dim=-1) ** 2 - (da * da).sum(-1), (ra * ra).sum(-1), ta * ta
    else:
        dot, rowdot, tot = (fa * fb).sum(-1) - (da * db).sum(-1), (ra * rb).sum(-1), ta * tb
    return (dot + tot / ((n - 1) * (n - 2)) - 2 * rowdot / (n - 2)) / (n * (n - 3))


def cka_matrix(grams_a: torch.Tensor, grams_b: torch.Tensor) -> torch.Tensor:
    """Unbiased CKA of every pair of Grams of two stacks over the same n >= 4 samples.

    Args:
        grams_a: [ma, n, n] Gram matrices.
        grams_b: [mb, n, n] Gram matrices over the same samples, in the same order.
    Returns:
        [ma, mb] CKA values; 0 where either Gram has no (positive) self-HSIC.
    """
    n = grams_a.shape[-1]
    ta, tb = hsic_terms(grams_a), hsic_terms(grams_b)
    scale_a = _hsic(ta, ta, n, pairwise=False).clamp_min(0).sqrt()
    scale_b = _hsic(tb, tb, n, pairwise=False).clamp_min(0).sqrt()
    denom = torch.outer(scale_a, scale_b)
    return _hsic(ta, tb, n, pairwise=True) / denom.clamp_min(torch.finfo(denom.dtype).tiny)


def unbiased_hsic(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """Unbiased HSIC of two [n, n] Grams over the same samples (a scalar tensor)."""
    return _hsic(hsic_terms(k[None]), hsic_terms(l[None]), k.shape[0], pairwise=False)[0]


def unbiased_cka(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """Unbiased CKA of two [n, n] Gram matrices over the same n >= 4 samples (a scalar tensor)."""
    return cka_matrix(k[None], l[None])[0, 0]
