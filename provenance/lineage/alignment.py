"""Depth alignment: the monotone one-to-one layer correspondence that best explains the similarities."""
from __future__ import annotations

import numpy as np


def robust_location_scale(values: np.ndarray, floor: float) -> tuple[float, float]:
    """Median and MAD scaled to a Gaussian's standard deviation, never below `floor`."""
    med = float(np.median(values))
    return med, max(float(np.median(np.abs(values - med))) * 1.4826, floor)


def standardize(matrix: np.ndarray) -> np.ndarray:
    """Robust z-scores against the matrix's own median and MAD (most pairs are not matches)."""
    values = matrix[np.isfinite(matrix)]
    if values.size == 0:
        return np.zeros_like(matrix)
    med, scale = robust_location_scale(values, 1e-6)
    return np.nan_to_num((matrix - med) / scale, nan=0.0)


def monotone_alignment(score: np.ndarray) -> list[tuple[int, int]]:
    """Maximum-total-score increasing matching; only pairs with positive score are taken."""
    la, lb = score.shape
    dp = np.zeros((la + 1, lb + 1))
    for i in range(1, la + 1):
        for j in range(1, lb + 1):
            dp[i, j] = max(dp[i - 1, j], dp[i, j - 1], dp[i - 1, j - 1] + max(score[i - 1, j - 1], 0.0))
    path, i, j = [], la, lb
    while i > 0 and j > 0:
        if dp[i, j] == dp[i - 1, j]:
            i -= 1
        elif dp[i, j] == dp[i, j - 1]:
            j -= 1
        else:
            if score[i - 1, j - 1] > 0:
                path.append((i - 1, j - 1))
            i, j = i - 1, j - 1
    return path[::-1]
