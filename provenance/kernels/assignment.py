"""Neuron assignment: a similarity matrix on the backend, the assignment itself on the CPU.

scipy's linear_sum_assignment is exact (Hungarian/JV) and CPU-only; the cost matrix is
the part that scales, and it is computed with torch wherever the backend is. This dense
path is what fingerprints (at most 256 neurons a layer) use; real widths (thousands of
neurons, experts against a dense FFN) go through kernels/matching.py, which prunes to
candidates, solves exactly on them and certifies the result against the full matrix.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


def neuron_similarity(gate_a, up_a, gate_b, up_b) -> torch.Tensor:
    """Similarity of every neuron pair from gate and up profiles already passed through
    `standardize_rows` (so each product is a Pearson correlation).

    Up-profile correlation enters by magnitude: flipping the sign of an up row and its
    down column preserves the function. A gate row's sign is not free (SiLU is not odd).
    """
    sim = (up_a @ up_b.T).abs_()
    if gate_a is not None and gate_b is not None:
        sim = sim.add_(gate_a @ gate_b.T).mul_(0.5)  # in place on the fresh product: 0.5 * (|up| + gate)
    return sim


def match(similarity: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maximum-similarity one-to-one matching: (rows, cols, matched similarities), rows in order.

    When every row's most similar column is a different column, that pairing is the optimum (no matching can
    beat the sum of the row maxima, and it attains it) and the LSAP is skipped: between related layers it
    usually is, and scipy would return the same pairing (any other optimum would need an exact tie)."""
    sim = similarity.detach().to("cpu", torch.float64).numpy()
    if 0 < sim.shape[0] <= sim.shape[1]:
        rows, best = np.arange(sim.shape[0]), sim.argmax(axis=1)
        values = sim[rows, best]
        if np.isfinite(values).all() and np.unique(best).size == best.size:
            return rows, best, values
    rows, cols = linear_sum_assignment(sim, maximize=True)
    return rows, cols, sim[rows, cols]
