"""The fingerprint record: its key scheme, typed accessors, schema check, save and load.

This is the only module that knows how a fingerprint's tensors are named. Every stored
feature has one row in FEATURES (its key pattern and what it holds); lineage, reports and
benchmarks read features through the accessors below. Each layer's document lists the
features stored for it, so a listed feature that is missing from the file is a malformed
fingerprint (MalformedInput), never a silently switched-off signal; a feature a layer does
not list is simply absent (an attention variant without separate Q/K/V, a layer without MLP).

The file is safetensors (tensors, no pickle) with the JSON document in its metadata.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save

from ..atomic import write_bytes
from ..errors import MalformedInput, Unsupported
from ..schemas import SCHEMA_VERSIONS
from .integrity import check_loaded, seal

METADATA_KEY = "provenance_fingerprint"
STORE_DTYPE = torch.float32

# Roles whose per-layer std makes the sigma curves (HonestAGI), and the biases whose std is recorded.
SIGMA_ROLES = ("attn.q", "attn.k", "attn.v", "attn.o")
BIAS_ROLES = ("attn.q.bias", "attn.k.bias", "attn.v.bias")
GRAM_PROJECTIONS = ("q", "k", "v")   # projections whose anchor-token Gram matrices are stored
PROFILE_KINDS = ("gate", "up")       # MLP neuron profiles over anchors
NORM_KINDS = ("norm_attn", "norm_mlp")
BIAS_PROJECTIONS = ("q", "k", "v")

# feature name -> (key pattern, what it holds). Per-layer features take {i}; the rest are global.
FEATURES: dict[str, tuple[str, str]] = {
    **{f"gram.{p}": (f"layer.{{i}}.gram.{p}", f"[anchors, anchors] Gram of the anchors' {p.upper()} projections (norm folded)")
       for p in GRAM_PROJECTIONS},
    **{f"profile.{k}": (f"layer.{{i}}.mlp.{k}", f"[neurons, anchors] {k} activations of the kept neurons over the anchors")
       for k in PROFILE_KINDS},
    **{k: (f"layer.{{i}}.{k}", "raw norm weight vector") for k in NORM_KINDS},
    **{f"bias.{p}": (f"layer.{{i}}.bias_{p}", f"raw {p.upper()} bias vector") for p in BIAS_PROJECTIONS},
    # body-only features, in the model's body coordinates (see compute.py): never through the embeddings
    **{f"body.{part}": (f"layer.{{i}}.body.{part}", f"[neurons, dims] norm-folded {part} {'column' if part == 'down' else 'row'} "
                        "of each kept MLP neuron (routed and shared experts pooled)") for part in ("gate", "up", "down")},
    "body.qk": ("layer.{i}.body.qk", "[dims, dims] sum over heads of W_q^h^T W_k^h, norms folded"),
    "body.ov": ("layer.{i}.body.ov", "[dims, dims] sum over heads of W_o^h W_v^h, norms folded"),
    "body.attn_rows": ("layer.{i}.body.attn_rows", "[rows, dims] norm-folded rows of Q, K, V and columns of O at the "
                       "same offsets in every head, ordered Q heads, K heads, V heads, O heads (layout in the layer's attn_rows)"),
    "embed.rows": ("embed.rows", "[tokens, dims] token-embedding rows of the embedding tokens, in body coordinates"),
}
NEURON_PARTS = ("gate", "up", "down")


def tensor_key(feature: str, layer: int | None = None) -> str:
    """The name a feature's tensor is stored under in the file.

    Args:
        feature: a FEATURES row's name ("gram.q", "embed.rows", ...).
        layer: the layer, for per-layer features.
    Returns:
        The tensor's key ("layer.3.gram.q").
    Raises:
        KeyError: no FEATURES row has that name.
    """
    if feature not in FEATURES:
        raise KeyError(f"unknown fingerprint feature {feature!r}")
    pattern = FEATURES[feature][0]
    return pattern.format(i=layer) if "{i}" in pattern else pattern


@dataclass
class Fingerprint:
    """A model's fingerprint: the JSON document and its tensors, read through accessors."""
    doc: dict
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    # --- writing (used by the streaming pass) ---
    def put(self, feature: str, tensor: torch.Tensor, layer: int | None = None) -> None:
        """Store a feature and list it in the layer's (or the document's) stored features."""
        self.tensors[tensor_key(feature, layer)] = tensor.detach().to("cpu", STORE_DTYPE).contiguous()
        listing = self.doc.setdefault("features", []) if layer is None else self.doc["layers"][layer].setdefault("features", [])
        if feature not in listing:
            listing.append(feature)

    # --- reading ---
    @property
    def num_layers(self) -> int:
        return len(self.doc["layers"])

    def has(self, feature: str, layer: int | None = None) -> bool:
        listing = self.doc.get("features", []) if layer is None else self.doc["layers"][layer].get("features", [])
        return feature in listing

    def feature(self, feature: str, layer: int | None = None) -> torch.Tensor | None:
        """The stored tensor, None when the layer does not list it, MalformedInput when listed but missing."""
        if not self.has(feature, layer):
            return None
        key = tensor_key(feature, layer)
        if key not in self.tensors:
            raise MalformedInput(f"fingerprint lists feature {feature!r} for layer {layer} but has no tensor {key!r}")
        return self.tensors[key]

    def gram(self, layer: int, projection: str) -> torch.Tensor | None:
        """[anchors, anchors] Gram matrix of layer `layer`'s projection 'q', 'k' or 'v'."""
        return self.feature(f"gram.{projection}", layer)

    def profiles(self, layer: int, kind: str) -> torch.Tensor | None:
        """[neurons, anchors] MLP neuron profiles ('gate' or 'up') over the anchors."""
        return self.feature(f"profile.{kind}", layer)

    def norm(self, layer: int, kind: str) -> torch.Tensor | None:
        """Raw norm weights: kind 'norm_attn' or 'norm_mlp'."""
        return self.feature(kind, layer)

    def bias(self, layer: int, projection: str) -> torch.Tensor | None:
        return self.feature(f"bias.{projection}", layer)

    def body_neurons(self, layer: int) -> dict[str, torch.Tensor]:
        """Body descriptors of layer's kept MLP neurons: {'gate'?, 'up', 'down'} -> [neurons, dims] (gate absent
        for MLPs without one); {} when the layer has none."""
        return {p: t for p in NEURON_PARTS if (t := self.feature(f"body.{p}", layer)) is not None}

    def attention_product(self, layer: int, kind: str) -> torch.Tensor | None:
        """[dims, dims] attention product 'qk' or 'ov' in body coordinates."""
        return self.feature(f"body.{kind}", layer)

    def attention_rows(self, layer: int) -> torch.Tensor | None:
        """[rows, dims] norm-folded per-head rows of Q, K, V and columns of O (layout in layer_info's attn_rows)."""
        return self.feature("body.attn_rows", layer)

    def embedding_tokens(self) -> tuple[list[str], str] | None:
        """(canonical embedding-token strings, how tokens were identified), or None when not recorded."""
        e = self.doc.get("embedding")
        if not isinstance(e, dict) or not e.get("tokens"):
            return None
        return e["tokens"], e.get("matched_by", "")

    def embedding_rows(self) -> tuple[list[str], torch.Tensor] | None:
        """(canonical token strings, [tokens, dims] embedding rows), or None when not stored."""
        rows = self.feature("embed.rows")
        return None if rows is None else (self.doc["embedding"]["tokens"], rows)

    def settings(self) -> dict:
        """How the fingerprint was computed: n_anchors, max_neurons, compute_dtype, body_dims, body_basis."""
        return self.doc["settings"]

    def body_basis(self) -> str:
        """How the body coordinates were chosen ('hidden' or a principal subspace)."""
        return self.doc.get("settings", {}).get("body_basis", "")

    def sigma(self, layer: int) -> dict[str, float]:
        """Std of each of Q/K/V/O in this layer (the sigma-curve values)."""
        return self.doc["layers"][layer]["sigma"]

    def sigma_curve(self, role: str) -> np.ndarray:
        """One value per layer for role (NaN where a layer has no such projection)."""
        return np.array([l["sigma"].get(role, np.nan) for l in self.doc["layers"]], dtype=float)

    def anchors(self) -> tuple[list[str], str]:
        """(canonical anchor strings, how tokens were identified)."""
        a = self.doc["anchors"]
        return a["tokens"], a["matched_by"]

    def layer_info(self, layer: int) -> dict:
        return self.doc["layers"][layer]

    def is_moe(self) -> bool:
        return any(l.get("moe") for l in self.doc["layers"])

    def model(self) -> dict:
        return self.doc["model"]

    def save(self, path: str | Path, sign_key: str | Path | None = None) -> None:
        """Write atomically as safetensors with the document, its digest (and signature) in the metadata."""
        text, tensors = json.dumps(self.doc, allow_nan=False), {k: v.contiguous() for k, v in self.tensors.items()}
        data = save(tensors or {"_empty": torch.zeros(0)}, metadata={METADATA_KEY: text, **seal(text, tensors, sign_key)})
        write_bytes(path, _canonical_header(data))


def _canonical_header(data: bytes) -> bytes:
    """The same safetensors bytes with the header's keys sorted.

    safetensors serializes its metadata map in no fixed order, so one fingerprint could be written as
    different bytes; sorted keys make equal content equal files (the tensor data is untouched).
    """
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)  # the header is padded to an 8-byte boundary, as safetensors writes it
    return len(text).to_bytes(8, "little") + text + data[8 + n:]


def is_fingerprint_file(path: Path) -> bool:
    """True for a safetensors file carrying a fingerprint document."""
    if not path.is_file() or not path.name.endswith(".safetensors"):
        return False
    try:
        with safe_open(str(path), framework="pt") as fh:
            return METADATA_KEY in (fh.metadata() or {})
    except Exception:
        return False


# where in the document -> the types accepted there (the parts the comparison reads)
_STR_LIST = "list of strings"
STRUCTURE = {
    ("model",): dict, ("model", "content_hash"): str, ("model", "family"): str, ("model", "format"): str,
    ("backend",): dict, ("settings",): dict, ("anchors",): dict, ("anchors", "tokens"): _STR_LIST,
    ("anchors", "matched_by"): str, ("layers",): list,
}
OPTIONAL = {("model", "label"): (str, type(None)), ("settings", "body_dims"): int, ("embedding",): dict,
            ("embedding", "tokens"): _STR_LIST, ("embedding", "matched_by"): str, ("features",): _STR_LIST}
LAYER_STRUCTURE = {"sigma": dict, "features": _STR_LIST}
LAYER_OPTIONAL = {"neurons": int, "moe": bool, "bias_sigma": dict, "notes": list, "attn_rows": dict}


def _type_ok(value, expected) -> bool:
    if expected == _STR_LIST:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return isinstance(value, expected) and not (expected is int and isinstance(value, bool))


def _check_structure(doc: dict, path) -> None:
    def lookup(node, where):
        for key in where:
            if not isinstance(node, dict) or key not in node:
                return KeyError
            node = node[key]
        return node

    for table, required in ((STRUCTURE, True), (OPTIONAL, False)):
        for where, expected in table.items():
            value = lookup(doc, where)
            if value is KeyError and not required:
                continue
            if value is KeyError or not _type_ok(value, expected):
                raise MalformedInput(f"fingerprint document field {'.'.join(where)} is missing or not a {expected}", path)
    for i, layer in enumerate(doc["layers"]):
        if not isinstance(layer, dict):
            raise MalformedInput(f"fingerprint layer {i} is not an object", path)
        for table, required in ((LAYER_STRUCTURE, True), (LAYER_OPTIONAL, False)):
            for key, expected in table.items():
                if key not in layer and not required:
                    continue
                if key not in layer or not _type_ok(layer[key], expected):
                    raise MalformedInput(f"fingerprint layer {i} field {key} is missing or not a {expected}", path)
        if not all(isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
                   for k, v in layer["sigma"].items()):
            raise MalformedInput(f"fingerprint layer {i} sigma values are not numbers", path)


def check_schema(doc: dict, tensors: dict, path) -> None:
    """Refuse another major schema version, and documents whose listed features are missing."""
    version = str(doc.get("schema_version", ""))
    ours = SCHEMA_VERSIONS["fingerprint"]
    if version.split(".")[0] != ours.split(".")[0]:
        raise Unsupported(f"fingerprint schema {version or 'unknown'!r}; this version reads {ours}: "
                          "fingerprint the model again with this version", path)
    _check_structure(doc, path)
    for i, layer in enumerate(doc["layers"]):
        for feature in layer.get("features", []):
            if feature not in FEATURES or tensor_key(feature, i) not in tensors:
                raise MalformedInput(f"fingerprint layer {i} lists feature {feature!r} but the file has no such tensor", path)
    for feature in doc.get("features", []):
        if feature not in FEATURES or tensor_key(feature) not in tensors:
            raise MalformedInput(f"fingerprint lists feature {feature!r} but the file has no such tensor", path)
    _check_shapes(doc, tensors, path)


def _all_finite(t: torch.Tensor) -> bool:
    """No NaN or infinity in a floating-point tensor. numpy's test reads float32 at memory speed, several times
    faster than torch's (which builds a boolean tensor, then reduces it); dtypes numpy lacks go through torch."""
    if t.dtype in (torch.float32, torch.float64, torch.float16):
        return bool(np.isfinite(t.numpy()).all())
    return bool(torch.isfinite(t).all())


def _check_shapes(doc: dict, tensors: dict, path) -> None:
    """Shapes that the comparison relies on agree with each other and with the document."""
    def bad(what):
        raise MalformedInput(f"fingerprint {what}", path)

    n_anchors = len(doc["anchors"].get("tokens", []))
    dims = doc.get("settings", {}).get("body_dims")
    for key, t in tensors.items():
        if not torch.is_floating_point(t) or not _all_finite(t):
            bad(f"tensor {key!r} is not finite floating point")
    for i, layer in enumerate(doc["layers"]):
        feats = set(layer.get("features", []))
        for f in feats:
            t = tensors[tensor_key(f, i)]
            if f.startswith("gram.") and tuple(t.shape) != (n_anchors, n_anchors):
                bad(f"layer {i} {f} has shape {tuple(t.shape)}, expected ({n_anchors}, {n_anchors})")
            if f.startswith("profile.") and (t.dim() != 2 or t.shape[1] != n_anchors):
                bad(f"layer {i} {f} has shape {tuple(t.shape)}, expected (neurons, {n_anchors})")
            if f == "body.attn_rows":
                lay = layer.get("attn_rows", {})
                if not all(isinstance(lay.get(k), int) and not isinstance(lay.get(k), bool) and lay.get(k) > 0
                           for k in ("heads", "kv_heads", "per_head")):
                    bad(f"layer {i} lacks the layout of its attention rows")
                expected = (2 * lay["heads"] + 2 * lay["kv_heads"]) * lay["per_head"]
                if tuple(t.shape) != (expected, dims):
                    bad(f"layer {i} {f} has shape {tuple(t.shape)}, expected ({expected}, {dims})")
            if f in ("body.qk", "body.ov") and tuple(t.shape) != (dims, dims):
                bad(f"layer {i} {f} has shape {tuple(t.shape)}, expected ({dims}, {dims})")
        body = [tensors[tensor_key(f"body.{p}", i)] for p in NEURON_PARTS if f"body.{p}" in feats]
        if body and (any(t.dim() != 2 or t.shape[1] != dims for t in body) or len({t.shape[0] for t in body}) != 1):
            bad(f"layer {i} body neuron features disagree in shape")
        if ("profile.gate" in feats and "profile.up" in feats
                and tensors[tensor_key("profile.gate", i)].shape != tensors[tensor_key("profile.up", i)].shape):
            bad(f"layer {i} gate and up profiles disagree in shape")
    if "embed.rows" in doc.get("features", []):
        rows, tokens = tensors[tensor_key("embed.rows")], doc.get("embedding", {}).get("tokens")
        if not isinstance(tokens, list) or rows.dim() != 2 or rows.shape[0] != len(tokens) or rows.shape[1] != dims:
            bad("embedding rows disagree with the embedding token list or the body dimension")


def load_fingerprint(path: str | Path) -> Fingerprint:
    """Read and validate a fingerprint file.

    Args:
        path: a .safetensors file written by Fingerprint.save.
    Returns:
        The Fingerprint. Raises MalformedInput or Unsupported (older schema) with the path.
    """
    path = Path(path)
    from ..io.safetensors_reader import read_header
    read_header(path)  # the same validation as any hostile safetensors file
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            if METADATA_KEY not in meta:
                raise MalformedInput("not a provenance fingerprint (no fingerprint metadata)", path)
            tensors = {k: fh.get_tensor(k) for k in fh.keys() if k != "_empty"}
    except (ValueError, json.JSONDecodeError) as exc:
        raise MalformedInput(f"fingerprint metadata is not valid JSON ({exc})", path) from None
    doc = check_loaded(meta, tensors, path)  # digest, signature, finite JSON object within the limits
    check_schema(doc, tensors, path)
    return Fingerprint(doc, tensors)
