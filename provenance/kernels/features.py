"""Anchor features: the one definition that the fingerprint stores and drift measures."""
from __future__ import annotations

import torch

from .stats import fold_norm, rms_rows


def anchor_inputs(embed_rows: torch.Tensor, norm_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Anchor-token embeddings RMS-normalized, with the layer's norm weight applied (folded in).

    Args:
        embed_rows: [anchors, hidden] token-embedding rows.
        norm_weight: the norm's elementwise weight, or None.
    Returns:
        [anchors, hidden] inputs to that layer's projections.
    """
    return fold_norm(rms_rows(embed_rows), norm_weight)


def projection_features(inputs: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """[anchors, hidden] inputs through a [out, hidden] projection -> [anchors, out] features."""
    return inputs @ weight.T


def neuron_profiles(inputs: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """[neurons, anchors]: each neuron's pre-activation over the anchors."""
    return (inputs @ weight.T).T
