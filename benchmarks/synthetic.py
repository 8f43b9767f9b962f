"""Synthetic fingerprints of a large model's stored size, for timing comparisons without the weights."""
from __future__ import annotations

import torch

from provenance.fingerprint import MAX_NEURONS, N_ANCHORS, SIGMA_ROLES, Fingerprint
from provenance.fingerprint.compute import ATTN_ROWS, BODY_DIMS, N_EMBED_TOKENS

HEADS, KV_HEADS = 40, 8  # a 5120-wide model's attention layout (Qwen2.5-14B, Pangu Pro MoE)
from provenance.backends import CpuBackend
from provenance.schemas import SCHEMA_VERSIONS


def synthetic_fingerprint(layers: int = 48, seed: int = 0, parent: Fingerprint | None = None, noise: float = 0.3) -> Fingerprint:
    """A fingerprint of `layers` layers with random features; with a parent, each feature is the parent's plus noise."""
    g = torch.Generator().manual_seed(seed)
    doc = {"schema_version": SCHEMA_VERSIONS["fingerprint"],
           "model": {"label": f"synthetic-{seed}", "format": "synthetic", "family": "synthetic",
                     "content_hash": f"{seed:064x}", "sha256": {}, "facts": {}},
           "backend": CpuBackend().identity(), "settings": {"n_anchors": N_ANCHORS, "max_neurons": MAX_NEURONS},
           "anchors": {"tokens": [f"t{k}" for k in range(N_ANCHORS)], "matched_by": "token strings"}, "layers": []}
    doc["settings"].update({"body_dims": BODY_DIMS, "body_basis": "synthetic"})
    doc["embedding"] = {"tokens": [f"t{k}" for k in range(N_EMBED_TOKENS)], "matched_by": "token strings"}
    fp = Fingerprint(doc)

    def near(base, shape, scale=1.0):
        """The parent's feature plus noise, or a fresh random one."""
        fresh = torch.randn(*shape, generator=g)
        return fresh * scale if parent is None else base + noise * fresh * base.std()

    fp.put("embed.rows", near(parent.embedding_rows()[1] if parent else None, (N_EMBED_TOKENS, BODY_DIMS)))
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
        # body features at a 5120-wide model's stored size (projected onto BODY_DIMS principal directions)
        for part in ("gate", "up", "down"):
            fp.put(f"body.{part}", near(parent.body_neurons(i)[part] if parent else None, (MAX_NEURONS, BODY_DIMS)), i)
        for kind in ("qk", "ov"):
            fp.put(f"body.{kind}", near(parent.attention_product(i, kind) if parent else None, (BODY_DIMS, BODY_DIMS)), i)
        per_head = max(1, ATTN_ROWS // (2 * HEADS + 2 * KV_HEADS))
        doc["layers"][i]["attn_rows"] = {"heads": HEADS, "kv_heads": KV_HEADS, "per_head": per_head}
        fp.put("body.attn_rows", near(parent.attention_rows(i) if parent else None,
                                      ((2 * HEADS + 2 * KV_HEADS) * per_head, BODY_DIMS)), i)
    return fp
