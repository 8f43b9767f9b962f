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


def _estimate(dot, rowdot, tot, n: int) -> torch.Tensor:
    """The unbiased HSIC estimator from its three sums (diagonal-free Gram products, row-sum products, totals)."""
    return (dot + tot / ((n - 1) * (n - 2)) - 2 * rowdot / (n - 2)) / (n * (n - 3))


def _cross_hsic(a, b, n: int) -> torch.Tensor:
    """[ma, mb] unbiased HSIC of every pair of Grams, from hsic_terms of two stacks."""
    (fa, da, ra, ta), (fb, db, rb, tb) = a, b
    return _estimate(fa @ fb.T - da @ db.T, ra @ rb.T, torch.outer(ta, tb), n)


def _self_hsic(a, n: int) -> torch.Tensor:
    """[m] unbiased HSIC of each Gram with itself, from hsic_terms (no [m, m] product)."""
    f, d, r, t = a
    return _estimate(torch.linalg.vector_norm(f, dim=-1) ** 2 - (d * d).sum(-1), (r * r).sum(-1), t * t, n)


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
    denom = torch.outer(_self_hsic(ta, n).clamp_min(0).sqrt(), _self_hsic(tb, n).clamp_min(0).sqrt())
    return _cross_hsic(ta, tb, n) / denom.clamp_min(torch.finfo(denom.dtype).tiny)


def unbiased_cka(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """Unbiased CKA of two [n, n] Gram matrices over the same n >= 4 samples (a scalar tensor)."""
    return cka_matrix(k[None], l[None])[0, 0]
