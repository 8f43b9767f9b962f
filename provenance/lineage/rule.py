"""The decision rule, in one place: thresholds, the verdict, and the margins drift measures against.

A verdict of "derived" needs a small p-value AND a large effect: a consistent small excess
(depth effects between independent models) is not lineage. Signals are combined by Bonferroni.
"""
from __future__ import annotations

import math

DECISION = {
    "alpha_derived": 1e-4,
    "alpha_independent": 0.01,
    "min_effect": {"attention_cka": 0.15, "neuron_match": 0.15},
    "null_scale_floor": 0.02,
    "min_shared_anchors": 32,
    "min_null_pairs": 3,
}


def used_signals(signals) -> list[dict]:
    """The calibrated signals that entered the verdict."""
    return [s for s in signals if s["used"] and s["p_value"] is not None]


def decide(signals, enough_anchors: bool = True) -> tuple[str, float | None, str]:
    """(verdict, combined p-value, reason) from the signal dicts of a comparison.

    Args:
        signals: signal dicts with name, used, p_value, effect, min_effect.
        enough_anchors: whether the anchor-based signals had enough shared anchors (only worded into the reason).
    Returns:
        "derived" | "independent" | "inconclusive", the Bonferroni-combined p (None if no signal), and why.
    """
    used = used_signals(signals)
    if not used:
        return "inconclusive", None, "no calibrated signal could be computed" + ("" if enough_anchors else " (too few shared anchor tokens)")
    p = min(1.0, len(used) * min(s["p_value"] for s in used))
    strong = [s for s in used if s["p_value"] <= DECISION["alpha_derived"] / len(used) and s["effect"] >= s["min_effect"]]
    if strong:
        names = ", ".join(s["name"] for s in strong)
        return "derived", p, f"{names}: p <= {DECISION['alpha_derived']:g} with effect above the margin"
    if all(s["p_value"] >= DECISION["alpha_independent"] for s in used):
        return "independent", p, f"no signal departs from its null (every p >= {DECISION['alpha_independent']:g})"
    weak = ", ".join(f"{s['name']} p={s['p_value']:.2g} effect={s['effect']:.3f}" for s in used)
    return "inconclusive", p, f"evidence between the thresholds: {weak}"


def _log10(p: float) -> float:
    return math.log10(max(p, 1e-300))


def margins(result: dict) -> dict:
    """How far a comparison sits from the thresholds that would change its verdict.

    Args:
        result: a compare result (verdict and signals).
    Returns:
        {"effect_margin": best used signal's effect minus its margin (derived only),
         "log10_p_margin": decades of p-value between the deciding signal and its threshold},
        both None for an inconclusive verdict.
    """
    used = used_signals(result["signals"])
    k = max(1, len(used))
    if result["verdict"] == "derived" and used:
        return {"effect_margin": max(s["effect"] - s["min_effect"] for s in used),
                "log10_p_margin": _log10(DECISION["alpha_derived"] / k) - min(_log10(s["p_value"]) for s in used)}
    if result["verdict"] == "independent" and used:
        return {"effect_margin": None,
                "log10_p_margin": min(_log10(s["p_value"]) for s in used) - _log10(DECISION["alpha_independent"])}
    return {"effect_margin": None, "log10_p_margin": None}
