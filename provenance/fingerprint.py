"""One streaming pass over a model -> a portable Fingerprint file.

A fingerprint holds, per layer: the sigma-curve values (std of Q/K/V/O, as HonestAGI
computes them), attention Gram matrices over anchor tokens (for CKA), MLP neuron
profiles over anchor tokens (for neuron matching; routed and shared experts pooled),
and raw norm vectors. Each tensor is read once, reduced, and dropped.

The file is safetensors (tensors, no pickle) with the JSON document in its metadata.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save

from . import kernels
from .anchors import choose_anchors
from .arch import ModelView
from .atomic import write_bytes
from .errors import MalformedInput, Unsupported
from .progress import Progress
from .schemas import SCHEMA_VERSIONS

METADATA_KEY = "provenance_fingerprint"
N_ANCHORS = 256
MAX_NEURONS = 256
SIGMA_ROLES = ("attn.q", "attn.k", "attn.v", "attn.o")
BIAS_ROLES = ("attn.q.bias", "attn.k.bias", "attn.v.bias")
GRAM_ROLES = ("q", "k", "v")  # projections whose anchor-token Gram matrices are stored
STORE_DTYPE = torch.float32


@dataclass
class Fingerprint:
    doc: dict
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def num_layers(self) -> int:
        return len(self.doc["layers"])

    def tensor(self, name: str) -> torch.Tensor | None:
        return self.tensors.get(name)

    def save(self, path: str | Path) -> None:
        data = save({k: v.contiguous() for k, v in self.tensors.items()} or {"_empty": torch.zeros(0)},
                    metadata={METADATA_KEY: json.dumps(self.doc, allow_nan=False)})
        write_bytes(path, data)


def is_fingerprint_file(path: Path) -> bool:
    if not path.is_file() or not path.name.endswith(".safetensors"):
        return False
    try:
        with safe_open(str(path), framework="pt") as fh:
            return METADATA_KEY in (fh.metadata() or {})
    except Exception:
        return False


def load_fingerprint(path: str | Path) -> Fingerprint:
    path = Path(path)
    from .io.safetensors_reader import read_header
    read_header(path)  # the same validation as any hostile safetensors file
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            if METADATA_KEY not in meta:
                raise MalformedInput("not a provenance fingerprint (no fingerprint metadata)", path)
            doc = json.loads(meta[METADATA_KEY])
            tensors = {k: fh.get_tensor(k) for k in fh.keys() if k != "_empty"}
    except (ValueError, json.JSONDecodeError) as exc:
        raise MalformedInput(f"fingerprint metadata is not valid JSON ({exc})", path) from None
    major = str(doc.get("schema_version", "")).split(".")[0]
    if major != SCHEMA_VERSIONS["fingerprint"].split(".")[0]:
        raise Unsupported(f"fingerprint schema {doc.get('schema_version')!r}; this version reads {SCHEMA_VERSIONS['fingerprint']}", path)
    return Fingerprint(doc, tensors)


def _finite(t: torch.Tensor, view: ModelView, role: str, layer) -> torch.Tensor:
    name = view.name_of(role, layer) or role
    if t.numel() == 0:
        raise MalformedInput(f"tensor {name!r} is empty", view.source.root)
    if not torch.isfinite(t).all():
        raise MalformedInput(f"tensor {name!r} contains NaN or Inf", view.source.root)
    return t


def fingerprint_view(view: ModelView, backend, *, n_anchors: int = N_ANCHORS, max_neurons: int = MAX_NEURONS,
                     dtype: torch.dtype = torch.float32, progress: bool = False, label: str | None = None,
                     vocab_file: str | Path | None = None) -> Fingerprint:
    src = view.source
    vocab_source = "checkpoint" if src.vocab_tokens is not None else "none"
    if src.vocab_tokens is None and vocab_file is not None:
        from .io import read_vocab_file
        from .io.base import sha256_file
        src.vocab_tokens = read_vocab_file(vocab_file)
        vocab_source = f"user-supplied {Path(vocab_file).name} (sha256 {sha256_file(Path(vocab_file))})"
    facts = view.facts
    embed = view.get("embed")
    if embed is None:
        raise Unsupported("model has no token embedding; lineage fingerprints need one", src.root)
    embed = _finite(embed, view, "embed", None)
    tokens, rows, matched_by = choose_anchors(src.vocab_tokens, embed.shape[0], n_anchors)
    x = kernels.rms_rows(backend.place(embed[rows].float(), dtype))
    del embed
    tensors: dict[str, torch.Tensor] = {}
    layers = []
    tracker = Progress(view.num_layers, f"fingerprint {label or src.root.name}", progress)

    def store(name, t):
        tensors[name] = t.detach().to("cpu", STORE_DTYPE).contiguous()

    def weight(role, layer, expert=None):
        t = view.get(role, layer, expert)
        return None if t is None else backend.place(_finite(t, view, role, layer).float(), dtype)

    for i in range(view.num_layers):
        info = {"index": i, "sigma": {}, "bias_sigma": {}, "notes": []}
        norms = {"norm_attn": weight("norm.attn", i), "norm_mlp": weight("norm.mlp", i)}
        x_attn = kernels.fold_norm(x, norms["norm_attn"])
        for role in SIGMA_ROLES:
            w = weight(role, i)
            if w is None:
                continue
            info["sigma"][role] = float(kernels.std(w))
            short = role.split(".")[1]
            if short in GRAM_ROLES and w.shape[-1] == x.shape[-1]:
                store(f"layer.{i}.gram.{short}", kernels.gram(x_attn @ w.T))
            del w
        if not info["sigma"]:
            info["notes"].append("no separate q/k/v/o projections (MLA or unknown attention): attention signals skipped")
        for role in BIAS_ROLES:
            b = weight(role, i)
            if b is not None:
                info["bias_sigma"][role] = float(kernels.std(b))
                store(f"layer.{i}.bias_{role.split('.')[1]}", b)
        for key, g in norms.items():
            if g is not None:
                store(f"layer.{i}.{key}", g)
        x_mlp = kernels.fold_norm(x, norms["norm_mlp"])
        info.update(_neuron_profiles(view, i, x_mlp, weight, store, max_neurons))
        layers.append(info)
        tracker.step(f"layer {i}")
    doc = {
        "schema_version": SCHEMA_VERSIONS["fingerprint"],
        "model": {"label": label, "path": str(src.root), "format": src.format, "family": view.family.name,
                  "content_hash": src.content_hash(), "sha256": src.sha256(), "facts": facts},
        "backend": backend.identity(),
        "settings": {"n_anchors": len(tokens), "max_neurons": max_neurons, "compute_dtype": str(dtype).removeprefix("torch."),
                     "store_dtype": str(STORE_DTYPE).removeprefix("torch.")},
        "anchors": {"tokens": tokens, "matched_by": matched_by, "vocab_source": vocab_source},
        "layers": layers,
    }
    return Fingerprint(doc, tensors)


def _neuron_profiles(view, i, x_mlp, weight, store, max_neurons) -> dict:
    """Gate and up profiles over anchors of the dense FFN, or of all experts plus shared experts pooled."""
    groups = []  # (gate, up) weight pairs whose neurons are pooled
    if view.has("mlp.up", i):
        groups.append(("mlp.gate", "mlp.up", None))
    for e in view.experts(i):
        groups.append(("moe.expert.gate", "moe.expert.up", e))
    if view.has("moe.shared.up", i):
        groups.append(("moe.shared.gate", "moe.shared.up", None))
    if not groups:
        return {"neurons": 0, "moe": False, "notes": ["no MLP found in this layer"]}
    gate_profiles, up_profiles, scores = [], [], []
    for gate_role, up_role, expert in groups:
        up = weight(up_role, i, expert)
        if up is None or up.shape[-1] != x_mlp.shape[-1]:
            continue
        gate = weight(gate_role, i, expert)
        up_profiles.append((x_mlp @ up.T).T)
        score = up.norm(dim=1)
        if gate is not None:
            gate_profiles.append((x_mlp @ gate.T).T)
            score = score * gate.norm(dim=1)
        scores.append(score)
    if not up_profiles:
        return {"neurons": 0, "moe": False, "notes": ["MLP weights do not act on the hidden size"]}
    up_all = torch.cat(up_profiles)
    score = torch.cat(scores)
    # Keep the strongest neurons: a ranking that permutation and rescaling leave unchanged.
    keep = score.topk(min(max_neurons, score.numel())).indices.sort().values
    store(f"layer.{i}.mlp.up", up_all[keep])
    if len(gate_profiles) == len(up_profiles):
        store(f"layer.{i}.mlp.gate", torch.cat(gate_profiles)[keep])
    return {"neurons": int(up_all.shape[0]), "neurons_kept": int(keep.numel()), "moe": len(groups) > 1}


def fingerprint_model(path, backend, **kwargs) -> Fingerprint:
    from .model import open_model
    view = open_model(path)
    try:
        return fingerprint_view(view, backend, **kwargs)
    finally:
        view.source.close()
