"""Synthetic fingerprints of a large model's stored size, for timing comparisons without the weights."""
from __future__ import annotations

import torch

from provenance.fingerprint import MAX_NEURONS, N_ANCHORS, Fingerprint
from provenance.schemas import SCHEMA_VERSIONS


def synthetic_fingerprint(layers: int = 48, seed: int = 0, parent: Fingerprint | None = None, noise: float = 0.3) -> Fingerprint:
    g = torch.Generator().manual_seed(seed)
    tensors, docs = {}, []
    for i in range(layers):
        for short in ("q", "k", "v"):
            key = f"layer.{i}.gram.{short}"
            if parent is not None:
                base = parent.tensors[key]
                f = torch.randn(N_ANCHORS, 64, generator=g)
                tensors[key] = base + noise * base.abs().mean() * (f @ f.T) / 64
            else:
                f = torch.randn(N_ANCHORS, 128, generator=g)
                tensors[key] = f @ f.T
        for kind in ("up", "gate"):
            key = f"layer.{i}.mlp.{kind}"
            base = parent.tensors[key] if parent is not None else torch.zeros(MAX_NEURONS, N_ANCHORS)
            tensors[key] = base + torch.randn(MAX_NEURONS, N_ANCHORS, generator=g) * (noise if parent is not None else 1.0)
        docs.append({"index": i, "sigma": {r: float(torch.rand(1, generator=g)) for r in ("attn.q", "attn.k", "attn.v", "attn.o")},
                     "bias_sigma": {}, "notes": [], "neurons": MAX_NEURONS, "neurons_kept": MAX_NEURONS, "moe": False})
    doc = {"schema_version": SCHEMA_VERSIONS["fingerprint"],
           "model": {"label": f"synthetic-{seed}", "path": "", "format": "synthetic", "family": "synthetic",
                     "content_hash": f"{seed:064x}", "sha256": {}, "facts": {}},
           "backend": {"backend": "cpu"}, "settings": {"n_anchors": N_ANCHORS, "max_neurons": MAX_NEURONS},
           "anchors": {"tokens": [f"t{k}" for k in range(N_ANCHORS)], "matched_by": "token strings"}, "layers": docs}
    return Fingerprint(doc, tensors)
