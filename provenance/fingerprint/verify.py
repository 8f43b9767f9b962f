"""`fingerprint verify FP MODEL`: does a fingerprint file come from these weights?

Three checks, cheapest first: the files' sha256 the document records against the model's files; the
model's facts (layers, widths); then the fingerprint recomputed from the weights with the file's own
settings, and a sample of its layers' stored features compared with the recomputed ones. A fingerprint
computed from other weights, or one that claims another model's hashes, fails at least one.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import MalformedInput
from ..precision import MissingPrecisionRow, dtype_row
from .record import FEATURES, Fingerprint, load_fingerprint, tensor_key

SAMPLED_LAYERS = 4
# relative Frobenius distance within which a recomputed feature matches the stored one: far above the
# drift between CPU and GPU kernels (about 1e-6 in float32), far below any change of weights that matters
MATCH_TOLERANCE = 1e-3


def sample_layers(n: int, k: int = SAMPLED_LAYERS) -> list[int]:
    """k layers evenly spread over n (first and last included)."""
    if n <= k:
        return list(range(n))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def verify(fp_path: str | Path, model: str | Path, backend, *, layers: int = SAMPLED_LAYERS,
           progress: bool = False) -> dict:
    """Check a fingerprint file against the weights it claims to come from.

    Args:
        fp_path: the fingerprint file (its digest is checked on load).
        model: the checkpoint.
        backend: where the recomputation runs.
        layers: how many layers to compare (spread evenly).
        progress: show progress on stderr.
    Returns:
        {"match": bool, "checks": [{"check", "ok", "detail"}], "layers": [...], "max_distance": float}.
    """
    from ..model import open_model
    from .compute import fingerprint_view
    stored = load_fingerprint(fp_path)
    doc = stored.doc
    view = open_model(model)
    checks = []
    try:
        hashes = view.source.sha256()
        claimed = doc["model"].get("sha256") or {}
        same_files = bool(claimed) and claimed == hashes
        checks.append({"check": "file hashes", "ok": same_files or doc["model"]["content_hash"] == view.source.content_hash(),
                       "detail": "the model's files hash as the fingerprint records" if same_files else
                       "the model's files do not hash as the fingerprint records"})
        facts = {k: v for k, v in view.facts.items() if k in ("num_layers", "hidden_size", "intermediate_size", "vocab_size")}
        claimed_facts = {k: doc["model"].get("facts", {}).get(k) for k in facts}
        checks.append({"check": "shape facts", "ok": claimed_facts == facts,
                       "detail": f"model {facts}, fingerprint {claimed_facts}"})
        settings = doc["settings"]
        fresh = fingerprint_view(view, backend, n_anchors=int(settings["n_anchors"]),
                                 max_neurons=int(settings.get("max_neurons", 256)),
                                 dtype=_compute_dtype(settings.get("compute_dtype")),
                                 progress=progress, label=doc["model"].get("label"))
    finally:
        view.source.close()
    compared, worst = _compare_layers(stored, fresh, layers)
    checks.append({"check": "recomputed layers", "ok": worst <= MATCH_TOLERANCE and bool(compared),
                   "detail": f"{len(compared)} layers, largest relative distance {worst:.3g} (tolerance {MATCH_TOLERANCE})"})
    return {"match": all(c["ok"] for c in checks), "checks": checks, "layers": compared, "max_distance": worst}


def _compute_dtype(name: object) -> torch.dtype:
    """The dtype a fingerprint says it was computed in; float32 (the default) when it names none the table knows."""
    try:
        return dtype_row(str(name)).torch_dtype
    except MissingPrecisionRow:
        return torch.float32


def _compare_layers(stored: Fingerprint, fresh: Fingerprint, k: int) -> tuple[list[int], float]:
    if stored.num_layers != fresh.num_layers:
        return [], float("inf")
    worst, compared = 0.0, []
    for i in sample_layers(stored.num_layers, k):
        feats = set(stored.layer_info(i).get("features", []))
        if feats != set(fresh.layer_info(i).get("features", [])):
            return compared, float("inf")
        for f in sorted(feats):
            a, b = stored.tensors[tensor_key(f, i)], fresh.tensors[tensor_key(f, i)]
            if a.shape != b.shape:
                return compared, float("inf")
            scale = max(float(b.double().norm()), 1e-30)
            worst = max(worst, float((a.double() - b.double()).norm()) / scale)
        compared.append(i)
    for f in stored.doc.get("features", []):
        if f in FEATURES and f in fresh.doc.get("features", []):
            a, b = stored.tensors[tensor_key(f)], fresh.tensors[tensor_key(f)]
            if a.shape != b.shape:
                return compared, float("inf")
            worst = max(worst, float((a.double() - b.double()).norm()) / max(float(b.double().norm()), 1e-30))
    if not compared:
        raise MalformedInput("fingerprint has no layer to compare")
    return compared, worst


def signer_of(fp_path: str | Path) -> str | None:
    """The raw public key (hex) that signed the file, None when unsigned (the signature is checked on load)."""
    from safetensors import safe_open

    from .integrity import SIGNER_KEY
    load_fingerprint(fp_path)
    with safe_open(str(fp_path), framework="pt") as fh:
        return (fh.metadata() or {}).get(SIGNER_KEY)


def require_trusted(fp_path: str | Path, trust: str | Path) -> str:
    """Refuse a fingerprint file unless a key in `trust` (a PEM public key or a folder of them) signed it.

    Returns:
        The signer's raw public key (hex).
    """
    from ..errors import UnsafeInput
    from .signing import trusted_keys
    signer = signer_of(fp_path)
    if signer is None:
        raise UnsafeInput("fingerprint is not signed, and --trust asks for a signature", fp_path)
    keys = trusted_keys(trust)
    if signer not in keys:
        raise UnsafeInput(f"fingerprint is signed by key {signer[:16]}..., which is not among the trusted keys", fp_path)
    return signer
