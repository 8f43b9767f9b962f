"""The pre-filter's compact summary: a fixed-length vector per fingerprint, cheap to compare.

A derived model may have another depth, pooled MoE experts, a new vocabulary, permuted neurons,
rescaled projections or a rotated residual stream, so the summary is built only from quantities
those changes leave alone:

- per layer, the singular values of the attention products W_q^T W_k and W_o W_v (invariant to
  permutation, residual rotation and the Q/K, V/O rescaling that preserves function) and of the
  MLP's folded gate rows (or up rows without a gate), whose spectrum shape does not change when
  neurons are permuted or duplicated into experts;
- each spectrum as its leading singular values over its Frobenius norm (shape) plus the log of the
  root-mean-square row norm (scale, independent of how many neurons or rows there are);
- per-layer values resampled onto a fixed grid of relative depth, so a model with a layer dropped
  or duplicated lands near its parent.

Nothing comes from the embeddings or anchor tokens: a new tokenizer does not move the summary.
The fingerprint is read only through its public accessors.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SUMMARY_VERSION = 1
DEPTH_POINTS = 8     # relative-depth grid
TOP_SINGULAR = 8     # leading singular values kept per spectrum


@dataclass(frozen=True)
class Block:
    """One per-layer matrix the summary reads: its name and how to get it from a fingerprint layer."""
    name: str
    read: object  # (fingerprint, layer) -> tensor [rows, dims] or None


def _mlp_lead(fp, layer):
    parts = fp.body_neurons(layer)
    return parts.get("gate", parts.get("up"))


BLOCKS = (
    Block("attention_qk", lambda fp, i: fp.attention_product(i, "qk")),
    Block("attention_ov", lambda fp, i: fp.attention_product(i, "ov")),
    Block("mlp_lead", _mlp_lead),
)
PER_LAYER = TOP_SINGULAR + 1  # spectrum shape + log scale
DIMENSION = len(BLOCKS) * DEPTH_POINTS * PER_LAYER


def _spectrum_stats(m: torch.Tensor | None) -> np.ndarray:
    """[TOP_SINGULAR shape values, log RMS row norm], NaN when the layer has no such matrix."""
    out = np.full(PER_LAYER, np.nan)
    if m is None or m.numel() == 0:
        return out
    s = torch.linalg.svdvals(m.double()).numpy()
    total = float(np.sqrt((s ** 2).sum()))
    if not np.isfinite(total) or total <= 0:
        return out
    k = min(TOP_SINGULAR, len(s))
    out[:TOP_SINGULAR] = 0.0
    out[:k] = s[:k] / total
    out[TOP_SINGULAR] = np.log(total / np.sqrt(m.shape[0]))
    return out


def _resample(curve: np.ndarray) -> np.ndarray:
    """[layers, k] -> [DEPTH_POINTS, k] by linear interpolation over relative depth; layers without
    the matrix are skipped; all-NaN columns stay NaN."""
    out = np.full((DEPTH_POINTS, curve.shape[1]), np.nan)
    grid = np.linspace(0.0, 1.0, DEPTH_POINTS)
    depth = np.linspace(0.0, 1.0, len(curve)) if len(curve) > 1 else np.zeros(1)
    for j in range(curve.shape[1]):
        ok = np.isfinite(curve[:, j])
        if ok.sum() == 1:
            out[:, j] = curve[ok, j][0]
        elif ok.any():
            out[:, j] = np.interp(grid, depth[ok], curve[ok, j])
    return out


def summarize(fp) -> np.ndarray:
    """The summary vector of a fingerprint.

    Args:
        fp: a provenance.fingerprint.Fingerprint.
    Returns:
        float32 array of length DIMENSION; NaN where the model has no such matrix anywhere
        (e.g. attention without separate Q/K/V/O): scoring ignores those coordinates.
    """
    blocks = []
    for block in BLOCKS:
        curve = np.stack([_spectrum_stats(block.read(fp, i)) for i in range(fp.num_layers)]) if fp.num_layers else \
            np.full((1, PER_LAYER), np.nan)
        blocks.append(_resample(curve).ravel())
    return np.concatenate(blocks).astype(np.float32)
