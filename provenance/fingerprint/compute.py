"""One streaming pass over a model -> a Fingerprint.

Per layer: the sigma-curve values (std of Q/K/V/O, as HonestAGI computes them), attention
Gram matrices over anchor tokens (for CKA), MLP neuron profiles over anchor tokens (for
neuron matching; routed and shared experts pooled), and raw norm vectors and biases. Each
tensor is read once, reduced, and dropped. Feature names and storage live in record.py.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .. import kernels
from ..anchors import choose_anchors
from ..arch import ModelView
from ..errors import MalformedInput, Unsupported
from ..progress import Progress
from ..schemas import SCHEMA_VERSIONS
from .record import BIAS_ROLES, GRAM_PROJECTIONS, NORM_KINDS, SIGMA_ROLES, STORE_DTYPE, Fingerprint

N_ANCHORS = 256
MAX_NEURONS = 256


def _finite(t: torch.Tensor, view: ModelView, role: str, layer) -> torch.Tensor:
    name = view.name_of(role, layer) or role
    if t.numel() == 0:
        raise MalformedInput(f"tensor {name!r} is empty", view.source.root)
    if not torch.isfinite(t).all():
        raise MalformedInput(f"tensor {name!r} contains NaN or Inf", view.source.root)
    return t


def fingerprint_view(view: ModelView, backend, *, n_anchors: int = N_ANCHORS, max_neurons: int = MAX_NEURONS,
                     dtype: torch.dtype = torch.float32, progress: bool = False, label: str | None = None,
                     vocab_file: str | Path | None = None, record_path: bool = False) -> Fingerprint:
    """Fingerprint an opened model.

    Args:
        view: the model, opened with provenance.model.open_model.
        backend: where the reductions run (backends.get_backend(...)).
        n_anchors, max_neurons: anchor tokens and MLP neurons kept per layer.
        dtype: compute dtype on the backend.
        progress: show progress on stderr.
        label: a name for the model in reports (default: its folder's name).
        vocab_file: token list for checkpoints that ship no tokenizer.
        record_path: also record the model's absolute local path (off by default: fingerprints
            are meant to be shared, and the document otherwise names the model only by label and hashes).
    Returns:
        The Fingerprint (save it with .save(path)).
    """
    src = view.source
    vocab_source = "checkpoint" if src.vocab_tokens is not None else "none"
    if src.vocab_tokens is None and vocab_file is not None:
        from ..io import read_vocab_file
        from ..io.base import sha256_file
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
    model = {"label": label if label is not None else src.root.name, "format": src.format, "family": view.family.name,
             "content_hash": src.content_hash(), "sha256": src.sha256(), "facts": facts}
    if record_path:
        model["path"] = str(src.root)
    fp = Fingerprint({
        "schema_version": SCHEMA_VERSIONS["fingerprint"],
        "model": model,
        "backend": backend.identity(),
        "settings": {"n_anchors": len(tokens), "max_neurons": max_neurons, "compute_dtype": str(dtype).removeprefix("torch."),
                     "store_dtype": str(STORE_DTYPE).removeprefix("torch.")},
        "anchors": {"tokens": tokens, "matched_by": matched_by, "vocab_source": vocab_source},
        "layers": [],
    })
    tracker = Progress(view.num_layers, f"fingerprint {label or src.root.name}", progress)

    def weight(role, layer, expert=None):
        t = view.get(role, layer, expert)
        return None if t is None else backend.place(_finite(t, view, role, layer).float(), dtype)

    for i in range(view.num_layers):
        info = {"index": i, "sigma": {}, "bias_sigma": {}, "notes": [], "features": []}
        fp.doc["layers"].append(info)
        norms = {"norm_attn": weight("norm.attn", i), "norm_mlp": weight("norm.mlp", i)}
        x_attn = kernels.fold_norm(x, norms["norm_attn"])
        for role in SIGMA_ROLES:
            w = weight(role, i)
            if w is None:
                continue
            info["sigma"][role] = float(kernels.std(w))
            short = role.split(".")[1]
            if short in GRAM_PROJECTIONS and w.shape[-1] == x.shape[-1]:
                fp.put(f"gram.{short}", kernels.gram(kernels.projection_features(x_attn, w)), i)
            del w
        if not info["sigma"]:
            info["notes"].append("no separate q/k/v/o projections (MLA or unknown attention): attention signals skipped")
        for role in BIAS_ROLES:
            b = weight(role, i)
            if b is not None:
                info["bias_sigma"][role] = float(kernels.std(b))
                fp.put(f"bias.{role.split('.')[1]}", b, i)
        for key in NORM_KINDS:
            if norms[key] is not None:
                fp.put(key, norms[key], i)
        x_mlp = kernels.fold_norm(x, norms["norm_mlp"])
        info.update(_neuron_profiles(view, i, x_mlp, weight, fp, max_neurons))
        tracker.step(f"layer {i}")
    return fp


def _mlp_groups(view, i) -> list[tuple[str, str, str, int | None]]:
    """(gate, up, down) roles and expert index of every neuron group pooled in layer i: the dense FFN,
    every routed expert, the shared expert."""
    groups = []
    if view.has("mlp.up", i):
        groups.append(("mlp.gate", "mlp.up", "mlp.down", None))
    for e in view.experts(i):
        groups.append(("moe.expert.gate", "moe.expert.up", "moe.expert.down", e))
    if view.has("moe.shared.up", i):
        groups.append(("moe.shared.gate", "moe.shared.up", "moe.shared.down", None))
    return groups


def _neuron_profiles(view, i, x_mlp, weight, fp, max_neurons) -> dict:
    """Gate and up profiles over anchors of the dense FFN, or of all experts plus shared experts pooled."""
    groups = _mlp_groups(view, i)
    if not groups:
        return {"neurons": 0, "moe": False, "notes": ["no MLP found in this layer"]}
    gate_profiles, up_profiles, scores = [], [], []
    for gate_role, up_role, _, expert in groups:
        up = weight(up_role, i, expert)
        if up is None or up.shape[-1] != x_mlp.shape[-1]:
            continue
        gate = weight(gate_role, i, expert)
        up_profiles.append(kernels.neuron_profiles(x_mlp, up))
        score = up.norm(dim=1)
        if gate is not None:
            gate_profiles.append(kernels.neuron_profiles(x_mlp, gate))
            score = score * gate.norm(dim=1)
        scores.append(score)
    if not up_profiles:
        return {"neurons": 0, "moe": False, "notes": ["MLP weights do not act on the hidden size"]}
    up_all = torch.cat(up_profiles)
    score = torch.cat(scores)
    # Keep the strongest neurons: a ranking that permutation and rescaling leave unchanged.
    keep = score.topk(min(max_neurons, score.numel())).indices.sort().values
    fp.put("profile.up", up_all[keep], i)
    if len(gate_profiles) == len(up_profiles):
        fp.put("profile.gate", torch.cat(gate_profiles)[keep], i)
    return {"neurons": int(up_all.shape[0]), "neurons_kept": int(keep.numel()), "moe": len(groups) > 1}


def fingerprint_model(path, backend, **kwargs) -> Fingerprint:
    """Open a model (any supported format) and fingerprint it; keyword arguments as fingerprint_view."""
    from ..model import open_model
    view = open_model(path)
    try:
        return fingerprint_view(view, backend, **kwargs)
    finally:
        view.source.close()
