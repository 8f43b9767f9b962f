"""Calibration of layer-wise signals against the non-corresponding layer pairs of the same two models.

Those pairs share architecture, training data and everything else except descent of the specific
weights, so they are the exchangeable copies under "B was not derived from A". Scores are robust
z-scores against that null with a floor on its spread; p-values are Gaussian tails, Bonferroni-
corrected when the layer correspondence was searched for, combined over layers as twice the median
p-value, which is valid under any dependence between layers and needs most aligned layers to agree.
"""
from __future__ import annotations

import numpy as np
# the Gaussian upper tail as ndtr(-z): what scipy.stats.norm.sf computes, without importing scipy.stats (0.25 s)
from scipy.special import ndtr

from .alignment import robust_location_scale
from .rule import DECISION


def median_combine(pvalues) -> float:
    """2 x median p: if each p is valid, P(2 x median <= t) <= t whatever the dependence (Meng 1994)."""
    return float(min(1.0, 2.0 * np.median(np.asarray(pvalues, dtype=float))))


def layer_null_test(matrix: np.ndarray, path, searched: bool, floor: float | None = None) -> dict:
    """Test the mapped layer pairs of a [layers_a, layers_b] matrix against its off-map pairs.

    Returns:
        observed, null (values), p_value, effect (median observed minus null median), per_layer_p,
        statistic (mean observed), null_median, null_scale, z; a note when the test was impossible.
    """
    floor = DECISION["null_scale_floor"] if floor is None else floor
    matrix = np.asarray(matrix, dtype=float)
    off_path = np.isfinite(matrix)
    if path:
        off_path[tuple(np.array(path).T)] = False
    null = matrix[off_path]  # row by row, as the pairs are listed
    observed = np.array([matrix[i, j] for i, j in path if np.isfinite(matrix[i, j])])
    out = {"observed": observed.tolist(), "null": null.tolist(), "p_value": None, "effect": None, "per_layer_p": []}
    if observed.size == 0:
        out["note"] = "no layer pair could be compared"
        return out
    out["statistic"] = float(np.mean(observed))
    if null.size < DECISION["min_null_pairs"]:
        out["note"] = f"only {null.size} non-corresponding layer pairs: too few for a null"
        return out
    med, scale = robust_location_scale(null, floor)
    z = (observed - med) / scale
    per_layer = ndtr(-z) * (matrix.shape[1] if searched else 1)
    per_layer = np.minimum(per_layer, 1.0)
    out.update({"null_median": med, "null_scale": scale, "z": z.tolist(), "per_layer_p": per_layer.tolist(),
                "p_value": median_combine(per_layer), "effect": float(np.median(observed) - med)})
    return out
