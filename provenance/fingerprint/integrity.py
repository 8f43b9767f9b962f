"""A fingerprint file's integrity: a digest over its document and tensors, an optional ed25519 signature,
and the document checks that run before any tensor is trusted.

What each layer proves:
- the digest (sha256 over the exact document text and every tensor's name, dtype, shape and bytes) proves
  the file is as it was written: an edited document or tensor no longer matches and is refused. It is not
  a secret: whoever edits a file can recompute it, so on its own it catches accidents and careless edits.
- a signature (ed25519, `fingerprint --sign KEY`) over the digest proves who wrote the file: the holder of
  the private key. It does not prove that the weights the document names are the weights the fingerprint
  was computed from: a signer can fingerprint any weights and name any model. `fingerprint verify FP MODEL`
  is the check of that, by recomputing layers from the weights.

Metadata keys beside the document: provenance_digest (hex), provenance_signature (hex, optional),
provenance_signer (hex raw public key, optional).
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch

from .. import limits
from ..errors import MalformedInput, Unsupported

DIGEST_KEY = "provenance_digest"
SIGNATURE_KEY = "provenance_signature"
SIGNER_KEY = "provenance_signer"
DIGEST_SCHEME = "sha256:v1"


def digest(document_text: str, tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over the document's exact text and every tensor (sorted by name: name, dtype, shape, bytes).

    Args:
        document_text: the JSON text stored in the metadata.
        tensors: the stored tensors by key.
    Returns:
        "sha256:v1:<hex>".
    """
    h = hashlib.sha256()
    h.update(b"provenance-fingerprint\0")
    h.update(document_text.encode("utf-8"))
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(f"\0{name}\0{str(t.dtype)}\0{tuple(t.shape)}\0".encode())
        if t.numel():
            h.update(t.view(torch.uint8).numpy())  # hashed in place: the bytes are never copied
    return f"{DIGEST_SCHEME}:{h.hexdigest()}"


def seal(document_text: str, tensors: dict[str, torch.Tensor], key_path: str | Path | None = None) -> dict[str, str]:
    """The metadata entries that make a fingerprint tamper-evident (and signed, with a key).

    Args:
        document_text: the JSON text stored in the metadata.
        tensors: the tensors as they are written.
        key_path: a PEM ed25519 private key, or None for a digest only.
    Returns:
        Metadata entries to store beside the document.
    """
    entries = {DIGEST_KEY: digest(document_text, tensors)}
    if key_path is not None:
        from . import signing
        entries.update(signing.sign(entries[DIGEST_KEY], key_path))
    return entries


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:30]} is out of range")
    return value


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def parse_document(text: str, path) -> dict:
    """The document, refused unless it is a JSON object of finite numbers within the layer limit, matching
    the fingerprint JSON Schema."""
    try:
        doc = json.loads(text, parse_float=_finite_float, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise MalformedInput(f"fingerprint document is not valid JSON ({exc})", path) from None
    if not isinstance(doc, dict):
        raise MalformedInput("fingerprint document is not a JSON object", path)
    layers = doc.get("layers")
    if isinstance(layers, list):
        limits.check("layers", len(layers), path, "layers in the fingerprint")
        if not layers:
            raise MalformedInput("fingerprint has no layers: there is nothing to compare", path)
    return doc


def check_loaded(meta: dict, tensors: dict[str, torch.Tensor], path) -> dict:
    """Verify a loaded fingerprint's digest (and signature, when one is stored) and parse its document.

    Args:
        meta: the safetensors metadata (the document under `document_key`).
        tensors: every stored tensor.
        path: the file, for messages.
    Returns:
        The parsed document.
    Raises:
        MalformedInput: no digest, a digest that does not match, a signature that does not verify, a
            malformed document.
    """
    from .record import METADATA_KEY
    text = meta[METADATA_KEY]
    doc = parse_document(text, path)
    from ..schemas import SCHEMA_VERSIONS
    if str(doc.get("schema_version", "")).split(".")[0] != SCHEMA_VERSIONS["fingerprint"].split(".")[0]:
        return doc  # another version's file: the schema check refuses it, naming the version
    stored = meta.get(DIGEST_KEY)
    if stored is None:
        raise MalformedInput("fingerprint carries no integrity digest (stripped, or not written by provenance); "
                             "refused: fingerprint the model again", path)
    if not stored.startswith(DIGEST_SCHEME + ":"):
        raise Unsupported(f"fingerprint digest scheme {stored.split(':')[0][:20]!r} is not {DIGEST_SCHEME}", path)
    if digest(text, tensors) != stored:
        raise MalformedInput("fingerprint was modified after it was written: its document or tensors do not "
                             "match its digest; refused", path)
    if SIGNATURE_KEY in meta or SIGNER_KEY in meta:
        from . import signing
        signing.verify_signature(stored, meta, path)
    from ..report.schemas import errors as schema_errors
    # the documented schema, before any field is read (files saved by the library directly name no tool)
    problems = [p for p in schema_errors(doc, "fingerprint") if p != "(root): 'tool' is a required property"]
    if problems:
        raise MalformedInput(f"not a valid fingerprint document: {problems[0]}", path)
    return doc
