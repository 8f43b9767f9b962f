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
from ..degenerate import usable
from ..errors import MalformedInput, Unsupported
from ..progress import Progress
from ..schemas import SCHEMA_VERSIONS, tool_record
from .record import BIAS_ROLES, GRAM_PROJECTIONS, NORM_KINDS, SIGMA_ROLES, STORE_DTYPE, Fingerprint

N_ANCHORS = 256
MAX_NEURONS = 256
N_EMBED_TOKENS = 4096   # shared-token embedding rows kept for the embedding signal (anchors are their first 256)
FULL_HIDDEN = 512       # up to this hidden size body features keep every coordinate
BODY_DIMS = 128         # beyond it, they are projected onto the model's own top principal subspace
ATTN_ROWS = 256         # Q/K/V rows and O columns kept per layer (evenly spaced by index)


def _finite(t: torch.Tensor, view: ModelView, role: str, layer) -> torch.Tensor:
    name = view.name_of(role, layer) or role
    if t.numel() == 0:
        raise MalformedInput(f"tensor {name!r} is empty", view.source.root)
    t = usable(t, name, role, view.source.root)  # fp8 upcast; constant, huge or non-finite refused
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
    # one hash ranking: the anchors are the first n_anchors of the embedding tokens
    embed_tokens, all_rows, matched_by = choose_anchors(src.vocab_tokens, embed.shape[0], max(n_anchors, N_EMBED_TOKENS))
    embed_rows = backend.place(embed[all_rows].float(), dtype)
    tokens, rows = embed_tokens[:n_anchors], all_rows[:n_anchors]
    x = kernels.rms_rows(embed_rows[:len(rows)])
    del embed
    model = {"label": label if label is not None else src.root.name, "format": src.format, "family": view.family.name,
             "content_hash": src.content_hash(), "sha256": src.sha256(), "facts": facts}
    if record_path:
        model["path"] = str(src.root)
    fp = Fingerprint({
        "schema_version": SCHEMA_VERSIONS["fingerprint"], "tool": tool_record(),
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

    hidden = x.shape[-1]
    basis = None if hidden <= FULL_HIDDEN else backend.place(_body_basis(view, weight, hidden), dtype)
    fp.doc["settings"]["body_basis"] = ("hidden" if basis is None else
                                        f"top {basis.shape[1]} principal directions of the norm-folded MLP gate rows and down columns")
    fp.doc["settings"]["body_dims"] = hidden if basis is None else basis.shape[1]
    project = (lambda t: t) if basis is None else (lambda t: t @ basis)
    fp.doc["embedding"] = {"tokens": embed_tokens, "matched_by": matched_by}
    fp.put("embed.rows", project(embed_rows))
    heads = facts.get("num_attention_heads") or 1
    kv_heads = facts.get("num_key_value_heads") or heads

    for i in range(view.num_layers):
        info = {"index": i, "sigma": {}, "bias_sigma": {}, "notes": [], "features": []}
        fp.doc["layers"].append(info)
        norms = {"norm_attn": weight("norm.attn", i), "norm_mlp": weight("norm.mlp", i)}
        x_attn = kernels.fold_norm(x, norms["norm_attn"])
        attn = {}
        for role in SIGMA_ROLES:
            w = weight(role, i)
            if w is None:
                continue
            info["sigma"][role] = float(kernels.std(w))
            short = role.split(".")[1]
            if short in GRAM_PROJECTIONS and w.shape[-1] == x.shape[-1]:
                fp.put(f"gram.{short}", kernels.gram(kernels.projection_features(x_attn, w)), i)
            attn[short] = w
        _attention_products(fp, i, attn, norms["norm_attn"], heads, kv_heads, hidden, project)
        del attn
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
        _body_neurons(view, i, weight, norms["norm_mlp"], fp, max_neurons, hidden, project)
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


def _attention_products(fp, i, attn, gamma, heads, kv_heads, hidden, project) -> None:
    """QK and OV products (norms folded) in body coordinates, when Q/K/V/O act on the hidden size."""
    q, k, v, o = (attn.get(r) for r in ("q", "k", "v", "o"))
    if any(t is None for t in (q, k, v, o)) or q.shape[-1] != hidden or o.shape[0] != hidden:
        return
    if q.shape[0] % heads or k.shape[0] * heads != q.shape[0] * kv_heads or o.shape[1] != q.shape[0]:
        return  # head layout not understood (MLA, fused variants): no product rather than a wrong one
    q, k, v = (kernels.fold_columns(t, gamma) for t in (q, k, v))
    # residual-space rows of Q, K, V and columns of O, the same offsets within every head: a residual rotation
    # leaves head dimensions in place, so these rows correspond one to one between a model and its rotated copy
    # (and head by head when heads were permuted)
    hd = q.shape[0] // heads
    per_head = max(1, min(hd, ATTN_ROWS // (2 * heads + 2 * kv_heads)))
    offsets = torch.linspace(0, hd - 1, per_head).round().long()
    blocks = [mat[h * hd + offsets] for mat, n in ((q, heads), (k, kv_heads), (v, kv_heads), (o.T, heads)) for h in range(n)]
    fp.put("body.attn_rows", project(torch.cat(blocks)), i)
    fp.doc["layers"][i]["attn_rows"] = {"heads": heads, "kv_heads": kv_heads, "per_head": per_head}
    for kind, prod in (("qk", kernels.qk_product(q, k, heads, kv_heads)), ("ov", kernels.ov_product(o, v, heads, kv_heads))):
        fp.put(f"body.{kind}", project(project(prod).T).T, i)


def _folded_neurons(view, i, weight, gamma, hidden):
    """Yield (gate rows or None, up rows, down columns) of every neuron group of layer i, norms folded."""
    for gate_role, up_role, down_role, expert in _mlp_groups(view, i):
        up, down = weight(up_role, i, expert), weight(down_role, i, expert)
        if up is None or down is None or up.shape[-1] != hidden or down.shape[0] != hidden:
            continue
        gate = weight(gate_role, i, expert)
        yield (None if gate is None else kernels.fold_columns(gate, gamma)), kernels.fold_columns(up, gamma), down.T


def _body_neurons(view, i, weight, gamma, fp, max_neurons, hidden, project) -> None:
    """Kept neurons' folded gate/up rows and down columns in body coordinates. Neurons are ranked by the norm of
    the row that feeds the nonlinearity (gate, or up without a gate): invariant to permutation, rotation and
    up/down rescaling, so two related models keep corresponding neurons."""
    parts, scores = {"gate": [], "up": [], "down": []}, []
    for gate, up, down in _folded_neurons(view, i, weight, gamma, hidden):
        scores.append((up if gate is None else gate).norm(dim=1))
        for name, t in (("gate", gate), ("up", up), ("down", down)):
            if t is not None:
                parts[name].append(project(t))
    if not scores:
        return
    score = torch.cat(scores)
    keep = score.topk(min(max_neurons, score.numel())).indices.sort().values
    for name, chunks in parts.items():
        if chunks and len(chunks) == len(scores):
            fp.put(f"body.{name}", torch.cat(chunks)[keep], i)


def _body_basis(view, weight, hidden) -> torch.Tensor:
    """A first pass over the MLP weights: the top BODY_DIMS eigenvectors of the summed Gram of norm-folded gate
    rows and down columns (signs by third moments of the gate rows). Rotation-equivariant: a rotated copy of the
    model gets the same coordinates."""
    gram = torch.zeros(hidden, hidden, dtype=torch.float64)
    probes = []
    for i in range(view.num_layers):
        gamma = weight("norm.mlp", i)
        for gate, up, down in _folded_neurons(view, i, weight, gamma, hidden):
            lead = (up if gate is None else gate).double().cpu()
            gram += lead.T @ lead + down.double().cpu().T @ down.double().cpu()
            probes.append(kernels.unit_rows(lead)[:64])
    if not probes:
        return torch.eye(hidden)[:, :BODY_DIMS]
    return kernels.principal_basis(gram, BODY_DIMS, torch.cat(probes).double().cpu()).float()


def fingerprint_model(path, backend, **kwargs) -> Fingerprint:
    """Open a model (any supported format) and fingerprint it; keyword arguments as fingerprint_view."""
    from ..model import open_model
    with open_model(path) as view:
        return fingerprint_view(view, backend, **kwargs)
