"""Synthetic fingerprints of a large model's stored size, for timing comparisons without the weights."""
from __future__ import annotations

import torch

from provenance.fingerprint import MAX_NEURONS, N_ANCHORS, SIGMA_ROLES, Fingerprint
from provenance.schemas import SCHEMA_VERSIONS


def synthetic_fingerprint(layers: int = 48, seed: int = 0, parent: Fingerprint | None = None, noise: float = 0.3) -> Fingerprint:
    """A fingerprint of `layers` layers with random features; with a parent, each feature is the parent's plus noise."""
    g = torch.Generator().manual_seed(seed)
    doc = {"schema_version": SCHEMA_VERSIONS["fingerprint"],
           "model": {"label": f"synthetic-{seed}", "format": "synthetic", "family": "synthetic",
                     "content_hash": f"{seed:064x}", "sha256": {}, "facts": {}},
           "backend": {"backend": "cpu"}, "settings": {"n_anchors": N_ANCHORS, "max_neurons": MAX_NEURONS},
           "anchors": {"tokens": [f"t{k}" for k in range(N_ANCHORS)], "matched_by": "token strings"}, "layers": []}
    fp = Fingerprint(doc)
    for i in range(layers):
        doc["layers"].append({"index": i, "sigma": {r: float(torch.rand(1, generator=g)) for r in SIGMA_ROLES},
                              "bias_sigma": {}, "notes": [], "neurons": MAX_NEURONS, "neurons_kept": MAX_NEURONS, "moe": False,
                              "features": []})
        for short in ("q", "k", "v"):
            if parent is not None:
                base = parent.gram(i, short)
                f = torch.randn(N_ANCHORS, 64, generator=g)
                fp.put(f"gram.{short}", base + noise * base.abs().mean() * (f @ f.T) / 64, i)
            else:
                f = torch.randn(N_ANCHORS, 128, generator=g)
                fp.put(f"gram.{short}", f @ f.T, i)
        for kind in ("up", "gate"):
            base = parent.profiles(i, kind) if parent is not None else torch.zeros(MAX_NEURONS, N_ANCHORS)
            fp.put(f"profile.{kind}", base + torch.randn(MAX_NEURONS, N_ANCHORS, generator=g) * (noise if parent is not None else 1.0), i)
    return fp
