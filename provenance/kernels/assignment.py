"""Neuron assignment: a similarity matrix on the backend, the assignment itself on the CPU.

scipy's linear_sum_assignment is exact (Hungarian/JV) and CPU-only; the cost matrix is
the part that scales, and it is computed with torch wherever the backend is. This dense
path is what fingerprints (at most 256 neurons a layer) use; real widths (thousands of
neurons, experts against a dense FFN) go through kernels/matching.py, which prunes to
candidates, solves exactly on them and certifies the result against the full matrix.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


def neuron_similarity(gate_a, up_a, gate_b, up_b) -> torch.Tensor:
    """Similarity of every neuron pair from gate and up profiles already passed through
    `standardize_rows` (so each product is a Pearson correlation): 0.5 * (gate + |up|), or |up| where a side
    has no gate (`part_similarity` with the gate profile signed and the up profile paired).

    Up-profile correlation enters by magnitude: flipping the sign of an up row and its
    down column preserves the function. A gate row's sign is not free (SiLU is not odd).
    """
    gates = gate_a is not None and gate_b is not None
    return part_similarity(([gate_a] if gates else [], [up_a]), ([gate_b] if gates else [], [up_b]))


Parts = tuple[Sequence[torch.Tensor], Sequence[torch.Tensor]]


def part_similarity(a: Parts, b: Parts) -> torch.Tensor:
    """Neuron similarity from unit-row descriptor parts, in [-1, 1]: (signed parts, paired parts).

    Signed parts enter by their cosine (a gate row's sign is not free: SiLU is not odd); paired parts enter by
    the absolute value of their summed cosines (an up row and its down column may flip sign together). The sum
    is divided by the number of parts. With signed = [gate profile] and paired = [up profile] this is
    `neuron_similarity`; with signed = [gate row], paired = [up row, down column] it is the body
    neuron similarity of the lineage signals.

    Args:
        a, b: (signed, paired) lists of [neurons, dims] tensors with unit (or standardized) rows, same device.
    Returns:
        [neurons_a, neurons_b] similarities.
    """
    (sa, pa), (sb, pb) = a, b
    sim = _summed_products(sa, sb)  # in place from here: the slabs are large and the work is memory-bound
    if pa:
        sim = sim.add_(_summed_products(pa, pb).abs_()) if sim is not None else _summed_products(pa, pb).abs_()
    return sim.div_(len(sa) + len(pa))


def _summed_products(xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor]) -> torch.Tensor | None:
    """Σ x @ yᵀ, accumulated into the first product."""
    out = None
    for x, y in zip(xs, ys):
        out = x @ y.T if out is None else out.addmm_(x, y.T)
    return out


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
