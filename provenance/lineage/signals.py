"""The signal table: one row per lineage signal.

A layer-wise row computes a [layers_a, layers_b] matrix from the comparison context; the
verdict maps layers, tests the mapped pairs against the row's null and reports it. A pair
row computes its result dict directly (uncalibrated reference signals, the layer map).
Adding a signal is one row here plus its function (and its fingerprint feature, if new).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .. import kernels
from ..fingerprint.record import BIAS_PROJECTIONS, NORM_KINDS, SIGMA_ROLES
from . import body, similarity
from .embedding import embedding_signal

SIGMA_NULL = ("no calibrated null. Reported backgrounds: unrelated pairs 0.30-0.70 (modelDNA); "
              "0.91 for unrelated deepseek-llm-7b vs llama2-7b; function-preserving rescaling moves every curve")


CROSS_FIT = ("each row of A's layers is scored with a residual map fitted on A's other layers (the other parity in "
             "models of 9 layers or more), so no scored pair helped fit its map")


@dataclass
class Context:
    """What every signal may read: the two fingerprints, their shared anchors, and (once chosen) the layer map."""
    fa: object
    fb: object
    ia: list[int]
    ib: list[int]
    anchor_note: str = ""
    path: list[tuple[int, int]] | None = None
    searched: bool = False
    cache: dict = field(default_factory=dict)  # signals may share intermediate results here

    @property
    def enough_anchors(self) -> bool:
        from .rule import DECISION
        return len(self.ia) >= DECISION["min_shared_anchors"]


@dataclass(frozen=True)
class Signal:
    """One lineage signal.

    name: its name in results; compute: (ctx, pairs) -> matrix for layer-wise rows (pairs: which
    layer pairs to compute, None for all), ctx -> dict of result fields for pair rows;
    layerwise; calibrated (enters the verdict); min_effect (effect margin for 'derived');
    null (description for pair rows); note; align (its matrix helps choose the layer map);
    sampled (expensive: on deep models only the map and a sample of other pairs are computed);
    matrix_key (key in result["matrices"]); display (ctx -> name shown, when it depends on the pair);
    needs_anchors (its evidence is over shared anchor tokens); scale_floor (floor on the null's spread).
    """
    name: str
    compute: Callable
    layerwise: bool
    calibrated: bool
    min_effect: float | None = None
    null: str = ""
    note: str = ""
    align: bool = False
    sampled: bool = False
    matrix_key: str | None = None
    display: Callable | None = None
    needs_anchors: bool = False
    scale_floor: float | None = None  # floor on the null's robust spread (default: the decision rule's)

    def shown_name(self, ctx: Context) -> str:
        return self.display(ctx) if self.display else self.name


# --- signal functions ---

def _attention_cka(ctx: Context, pairs=None) -> np.ndarray:
    return similarity.attention_matrix(ctx.fa, ctx.fb, ctx.ia, ctx.ib)


def _neuron_match(ctx: Context, pairs=None) -> np.ndarray:
    return similarity.mlp_matrix(ctx.fa, ctx.fb, ctx.ia, ctx.ib, pairs)


def sigma_curve_correlations(fa, fb) -> dict[str, float]:
    """HonestAGI's statistic per role: Pearson correlation of the two z-scored per-layer std curves."""
    corrs = {}
    for role in SIGMA_ROLES:
        a, b = fa.sigma_curve(role), fb.sigma_curve(role)
        if np.isnan(a).any() or np.isnan(b).any() or len(a) < 3 or len(b) < 3:
            continue
        if len(a) != len(b):  # the published method needs equal depth; resample the shorter
            grid = np.linspace(0, 1, max(len(a), len(b)))
            a = np.interp(grid, np.linspace(0, 1, len(a)), a)
            b = np.interp(grid, np.linspace(0, 1, len(b)), b)
        a, b = (a - a.mean()) / (a.std() or 1), (b - b.mean()) / (b.std() or 1)
        corrs[role] = float(np.mean(a * b))
    return corrs


def _sigma_curves(ctx: Context) -> dict:
    corrs = sigma_curve_correlations(ctx.fa, ctx.fb)
    curves = {side: {role: [None if not np.isfinite(v) else float(v) for v in fp.sigma_curve(role)] for role in SIGMA_ROLES}
              for side, fp in (("a", ctx.fa), ("b", ctx.fb))}
    return {"statistic": float(np.mean(list(corrs.values()))) if corrs else None, "p_value": None, "used": False,
            "per_role": corrs, "curves": curves}


def _depth_alignment(ctx: Context) -> dict:
    la, lb = ctx.fa.num_layers, ctx.fb.num_layers
    return {"statistic": len(ctx.path) / max(1, min(la, lb)), "p_value": None, "used": True,
            "note": ("identity (equal depth)" if not ctx.searched else
                     f"monotone alignment of {la} to {lb} layers by dynamic programming on the similarity z-scores")}


def _norm_vectors(ctx: Context) -> dict:
    vals = []
    for i, j in ctx.path:
        pairs = [(ctx.fa.norm(i, k), ctx.fb.norm(j, k)) for k in NORM_KINDS]
        pairs += [(ctx.fa.bias(i, p), ctx.fb.bias(j, p)) for p in BIAS_PROJECTIONS]
        for a, b in pairs:
            if a is not None and b is not None and a.shape == b.shape and a.std() > 0 and b.std() > 0:
                vals.append(float(kernels.pearson(a.double(), b.double())))
    return {"statistic": float(np.mean(vals)) if vals else None, "p_value": None, "used": False}


def _mlp_name(ctx: Context) -> str:
    return "dense_moe_match" if ctx.fa.is_moe() != ctx.fb.is_moe() else "neuron_match"


SIGNALS: list[Signal] = [
    Signal("sigma_curves", _sigma_curves, layerwise=False, calibrated=False, null=SIGMA_NULL,
           note="HonestAGI per-layer std of Q/K/V/O, z-scored across layers, Pearson-correlated, averaged over "
                "the four curves. Shown for reference only: weak evidence that unrelated models of one shape also reach."),
    Signal("attention_cka", _attention_cka, layerwise=True, calibrated=True, min_effect=0.15, align=True,
           matrix_key="attention_cka", needs_anchors=True,
           note="unbiased CKA of anchor-token Gram matrices of Q, K, V; invariant to hidden and head "
                "permutations and Q/K, V/O rescaling"),
    Signal("neuron_match", _neuron_match, layerwise=True, calibrated=True, min_effect=0.15, align=True, sampled=True,
           matrix_key="mlp", display=_mlp_name, needs_anchors=True,
           note="MLP neurons (routed and shared experts pooled) matched one-to-one on their gate and up "
                "profiles over anchor tokens; mean matched similarity"),
    Signal("body_neurons", body.neuron_matrix, layerwise=True, calibrated=True, min_effect=0.15, align=True, sampled=True,
           scale_floor=0.03, null=CROSS_FIT,
           note="body-only: MLP neurons (norm-folded gate/up rows and down columns; routed and shared experts pooled) "
                "matched in weight space under a cross-fitted orthogonal map of the residual stream; mean best-match "
                "similarity of the smaller side's neurons. Never uses the embeddings"),
    Signal("body_attention", body.attention_matrix, layerwise=True, calibrated=True, min_effect=0.15, align=True,
           scale_floor=0.03, null=CROSS_FIT,
           note="body-only: cosine of the per-layer attention products sum_h W_q^h^T W_k^h and W_o^h W_v^h (norms folded; "
                "invariant to head permutation and per-head Q/K, V/O rescaling) under the cross-fitted residual map"),
    Signal("embedding", embedding_signal, layerwise=False, calibrated=True, min_effect=0.5,
           note="token embeddings over shared token strings: orthogonal Procrustes fitted on half the shared tokens, "
                "median cosine of the other half (both ways); invariant to rotation and permutation of the hidden basis. "
                "Catches lineage when the bodies have drifted; independent models on similar data align partly, hence "
                "a reference-panel null and a wide margin"),
    Signal("depth_alignment", _depth_alignment, layerwise=False, calibrated=False,
           null="none: it chooses the layer pairs the other signals test"),
    Signal("norm_vectors", _norm_vectors, layerwise=False, calibrated=False, null="none",
           note="centred Pearson of norm weights and Q/K/V biases on aligned layers, in stored order: "
                "breaks under hidden-dimension and head permutations; raw cosine (about 0.99 for unrelated "
                "models) is not used"),
]


def register(signal: Signal, before: str | None = None) -> None:
    """Add a signal to the table (before the named row, or at the end)."""
    names = [s.name for s in SIGNALS]
    if signal.name in names:
        raise ValueError(f"signal {signal.name!r} is already registered")
    SIGNALS.insert(names.index(before) if before in names else len(SIGNALS), signal)


def unregister(name: str) -> None:
    """Remove a signal from the table by name."""
    SIGNALS[:] = [s for s in SIGNALS if s.name != name]


def min_effects(rows=None) -> dict[str, float]:
    """Effect margin of every calibrated signal, by name."""
    return {s.name: s.min_effect for s in (SIGNALS if rows is None else rows) if s.calibrated}
