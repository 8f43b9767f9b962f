"""Signals -> evidence -> a calibrated verdict: derived | independent | inconclusive.

Orchestration only: the signals are rows of signals.SIGNALS, their calibration is null.py,
the layer map alignment.py, the decision rule rule.py.
"""
from __future__ import annotations

import math

import numpy as np

from ..schemas import SCHEMA_VERSIONS, tool_record
from . import alignment, direction, null, rule
from .panel import EFFECT_PANEL
from .signals import SIGNALS, Context, Signal, min_effects

FULL_PAIRS = 576  # beyond this many layer pairs, sampled signals are computed on the map and a null sample


def _rows(names) -> list[Signal]:
    if names is None:
        return list(SIGNALS)
    known = {s.name for s in SIGNALS}
    unknown = set(names) - known
    if unknown:
        raise ValueError(f"unknown signals {sorted(unknown)}; known: {sorted(known)}")
    return [s for s in SIGNALS if s.name in set(names)]


def decision_rule(rows=None) -> dict:
    """The thresholds the verdict applies, with the effect margin of each calibrated signal."""
    return {**rule.DECISION, "min_effect": min_effects(rows)}


def _layer_map(ctx: Context, matrices: dict) -> list[tuple[int, int]]:
    la = ctx.fa.num_layers
    if not ctx.searched:
        return [(i, i) for i in range(la)]
    scores = [alignment.standardize(m) for m in matrices.values() if m is not None and np.isfinite(m).any()]
    return alignment.monotone_alignment(np.mean(scores, axis=0)) if scores else []


def _sample_pairs(path, la: int, lb: int) -> list[tuple[int, int]]:
    """The mapped pairs and a deterministic sample of two other pairs per layer of A, for the null."""
    rng = np.random.default_rng(0)
    pairs = set(path)
    for i in range(la):
        pairs.update((i, int(j)) for j in rng.choice(lb, size=min(2, lb), replace=False))
    return sorted(pairs)


def _null_text(t: dict, searched: bool, s: Signal) -> str:
    extra = ""
    if s.name in EFFECT_PANEL and EFFECT_PANEL[s.name]:
        vals = EFFECT_PANEL[s.name]
        extra = (f"; effect margin {s.min_effect:g} against a largest effect of {max(vals):.3f} on {len(vals)} "
                 "independent reference-panel pairs")
    return (f"same statistic on {len(t['null'])} non-corresponding layer pairs of these two models "
            f"(median {t.get('null_median', float('nan')):.3f}, robust scale {t.get('null_scale', float('nan')):.3f}); "
            "Gaussian tail" + (", Bonferroni over the searched layer correspondence" if searched else "")
            + "; layers combined as 2 x median p" + (f"; {s.null}" if s.null else "") + extra)


def compare_fingerprints(fa, fb, signals=None) -> dict:
    """Compare two fingerprints and reach a verdict.

    Args:
        fa, fb: Fingerprints (A is reported as the first model).
        signals: names of the signals to run (default: every row of signals.SIGNALS).
    Returns:
        The compare document (docs/SCHEMAS.md): verdict, p_value, reason, signals (each with name,
        statistic, p_value, used, and for calibrated layer-wise signals effect, min_effect, null,
        null_values, observed, per_layer_p, note), layer_map, matrices, direction, a, b.
    """
    rows = _rows(signals)
    la, lb = fa.num_layers, fb.num_layers
    from .similarity import shared_anchors
    ia, ib, anchor_note = shared_anchors(fa, fb)
    ctx = Context(fa, fb, ia, ib, anchor_note, searched=la != lb)
    layerwise = [s for s in rows if s.layerwise]
    small = la * lb <= FULL_PAIRS
    matrices: dict[str, np.ndarray | None] = {}
    for s in layerwise:
        if not s.sampled:
            matrices[s.name] = s.compute(ctx, None)
    full_found = any(np.isfinite(m).any() for m in matrices.values())
    for s in layerwise:
        if s.sampled and (small or not full_found):
            matrices[s.name] = s.compute(ctx, None)
    ctx.path = _layer_map(ctx, {s.name: matrices[s.name] for s in layerwise if s.align and s.name in matrices})
    missing = [s for s in layerwise if s.name not in matrices]
    if missing:
        pairs = _sample_pairs(ctx.path, la, lb)
        for s in missing:
            matrices[s.name] = s.compute(ctx, pairs)

    out_signals = []
    for s in rows:
        if s.layerwise:
            out_signals.append(_layerwise_result(s, ctx, matrices[s.name]))
        else:
            res = {"name": s.shown_name(ctx), "null": s.null, "note": s.note}
            if s.calibrated:
                res["min_effect"] = s.min_effect
            res.update(s.compute(ctx))
            res["used"] = bool(res.get("used")) and (s.calibrated or s.name == "depth_alignment")
            out_signals.append(res)

    verdict, p_value, reason = rule.decide(out_signals, ctx.enough_anchors)
    return {
        "schema_version": SCHEMA_VERSIONS["compare"], "tool": tool_record(),
        "verdict": verdict,
        "p_value": p_value,
        "reason": reason,
        "signals": out_signals,
        "layer_map": [[int(i), int(j)] for i, j in ctx.path],
        "shared_anchors": len(ia),
        "anchor_note": anchor_note,
        "decision_rule": decision_rule(rows),
        "direction": direction.infer(ctx, verdict),
        "a": _side(fa), "b": _side(fb),
        "matrices": {s.matrix_key or s.name: _jsonable(matrices[s.name]) for s in layerwise},
    }


def _layerwise_result(s: Signal, ctx: Context, matrix: np.ndarray) -> dict:
    t = null.layer_null_test(matrix, ctx.path, ctx.searched, s.scale_floor)
    note = t.get("note", "")
    usable = t["p_value"] is not None
    if s.needs_anchors and not ctx.enough_anchors:
        note = f"only {len(ctx.ia)} shared anchor tokens; " + note
        usable = False
    return {"name": s.shown_name(ctx), "statistic": t.get("statistic"), "p_value": t["p_value"],
            "used": usable and s.calibrated, "effect": t["effect"], "min_effect": s.min_effect,
            "null": _null_text(t, ctx.searched, s), "per_layer_p": t["per_layer_p"], "observed": t["observed"],
            "null_values": t["null"], "note": note or s.note}


def _side(fp) -> dict:
    m = fp.model()
    return {"label": m.get("label"), "content_hash": m["content_hash"], "family": m["family"],
            "layers": fp.num_layers, "format": m["format"], "fingerprint_backend": fp.doc["backend"].get("backend")}


def _jsonable(matrix):
    if matrix is None:
        return None
    return [[round(v, 6) if math.isfinite(v) else None for v in row] for row in np.asarray(matrix, dtype=float).tolist()]
