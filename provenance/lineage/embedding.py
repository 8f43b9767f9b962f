"""Embedding signal: token embeddings compared over shared token strings, for when bodies have drifted apart.

Statistic: cross-validated orthogonal Procrustes. The embedding rows of the tokens both models
hold (by canonical string) are centred and scaled to unit length; a map fitted on one half of
the shared tokens scores the other half (median token cosine), both ways. Invariant to rotation
and permutation of either hidden basis, and the map never scores a token it was fitted on.

Null: embeddings of independent models trained on similar data can be aligned by a linear map
quite well, so a within-pair null (shuffled token pairing) is anti-conservative. The null is a
reference panel of independent pairs (panel.EMBEDDING_PANEL); the effect is the statistic minus
the panel's median and must clear a wide margin.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.special import ndtr  # Gaussian upper tail as ndtr(-z), as scipy.stats.norm.sf computes it

from .. import kernels
from .panel import EMBEDDING_PANEL, PANEL_SOURCE

MIN_SHARED = 64
SCALE_FLOOR = 0.1  # the panel is small, tiny models: do not let its spread make tails extreme


def shared_rows(fa, fb):
    """Centred unit embedding rows of the tokens both hold: ([n, da], [n, db]) or None."""
    ea, eb = fa.embedding_rows(), fb.embedding_rows()
    if ea is None or eb is None:
        return None
    pos = {t: k for k, t in enumerate(eb[0])}
    pairs = [(k, pos[t]) for k, t in enumerate(ea[0]) if t in pos]
    if not pairs:
        return None
    ia, ib = map(list, zip(*pairs))
    def picked(rows, idx):  # the shared tokens' rows in float64 (picked before widening; all of them, in order: kept)
        return (rows if idx == list(range(rows.shape[0])) else rows[idx]).double()
    xa, xb = picked(ea[1], ia), picked(eb[1], ib)
    return kernels.unit_rows(xa - xa.mean(0)), kernels.unit_rows(xb - xb.mean(0))


def cached_shared_rows(ctx):
    """shared_rows of the comparison's two fingerprints, computed once per comparison."""
    if "shared_rows" not in ctx.cache:
        ctx.cache["shared_rows"] = shared_rows(ctx.fa, ctx.fb)
    return ctx.cache["shared_rows"]


def cross_validated_procrustes(xa: torch.Tensor, xb: torch.Tensor) -> float:
    """Median held-out token cosine after an orthogonal map fitted on the other half of the tokens."""
    half = torch.arange(xa.shape[0]) % 2 == 0
    scores = []
    for fit in (half, ~half):
        u, _, vh = torch.linalg.svd(xa[fit].T @ xb[fit], full_matrices=False)
        scores.append((xa[~fit] * (xb[~fit] @ (u @ vh).T)).sum(1))
    return float(torch.cat(scores).median())


def embedding_signal(ctx) -> dict:
    """The embedding signal's result fields for the compare document."""
    rows = cached_shared_rows(ctx)
    panel = np.asarray(EMBEDDING_PANEL, dtype=float)
    med, scale = float(np.median(panel)), max(float(np.std(panel, ddof=1)), SCALE_FLOOR)
    out = {"statistic": None, "p_value": None, "used": False, "effect": None, "observed": [], "per_layer_p": [],
           "null_values": panel.tolist(),
           "null": f"reference panel of {panel.size} independent pairs ({PANEL_SOURCE}); median {med:.3f}, "
                   f"scale {scale:.3f} (sample std, floor {SCALE_FLOOR}); Gaussian tail"}
    n = 0 if rows is None else rows[0].shape[0]
    need = max(MIN_SHARED, 2 * min(rows[0].shape[1], rows[1].shape[1])) if rows is not None else MIN_SHARED
    if n < need:
        out["note"] = f"only {n} shared embedding tokens (needs {need})"
        return out
    stat = cross_validated_procrustes(*rows)
    out.update({"statistic": stat, "observed": [stat], "effect": stat - med, "used": True,
                "p_value": float(ndtr(-(stat - med) / scale)), "shared_tokens": n})
    return out
