"""One streaming pass over a model -> a Fingerprint.

Per layer: the sigma-curve values (std of Q/K/V/O, as HonestAGI computes them), attention
Gram matrices over anchor tokens (for CKA), MLP neuron profiles over anchor tokens (for
neuron matching; routed and shared experts pooled), and raw norm vectors and biases. Each
tensor is read once, reduced, and dropped. Feature names and storage live in record.py.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from .. import kernels
from ..anchors import choose_anchors
from ..arch import ModelView
from ..degenerate import Screen, usable
from ..errors import MalformedInput, Unsupported
from ..io.safetensors_reader import read_into
from ..progress import Progress
from ..schemas import SCHEMA_VERSIONS, tool_record
from .record import BIAS_ROLES, GRAM_PROJECTIONS, NORM_KINDS, SIGMA_ROLES, STORE_DTYPE, Fingerprint

N_ANCHORS = 256
MAX_NEURONS = 256
N_EMBED_TOKENS = 4096   # shared-token embedding rows kept for the embedding signal (anchors are their first 256)
FULL_HIDDEN = 512       # up to this hidden size body features keep every coordinate
BODY_DIMS = 128         # beyond it, they are projected onto the model's own top principal subspace
ATTN_ROWS = 256         # Q/K/V rows and O columns kept per layer (evenly spaced by index)
EMBED_BLOCK_BYTES = 64 << 20  # embedding rows read, widened to float32 and screened at a time


def _finite(t: torch.Tensor, view: ModelView, role: str, layer) -> torch.Tensor:
    name = view.name_of(role, layer) or role
    if t.numel() == 0:
        raise MalformedInput(f"tensor {name!r} is empty", view.source.root)
    return usable(t, name, role, view.source.root)  # fp8 upcast; constant, huge or non-finite refused


# roles the pass reads (the router, lm_head and final norm are not fingerprinted)
READ_ROLES = ("norm.attn", "norm.mlp", *SIGMA_ROLES, *BIAS_ROLES)
MLP_ROLES = (("mlp.gate", "mlp.up", "mlp.down"), ("moe.shared.gate", "moe.shared.up", "moe.shared.down"))
EXPERT_ROLES = ("moe.expert.gate", "moe.expert.up", "moe.expert.down")
GRAM_ROWS = 1024     # rows per block of the norms and the basis Gram
PROBE_ROWS = 64      # leading rows per neuron group that fix the basis signs


def fingerprint_view(view: ModelView, backend, *, n_anchors: int = N_ANCHORS, max_neurons: int = MAX_NEURONS,
                     dtype: torch.dtype = torch.float32, progress: bool = False, label: str | None = None,
                     vocab_file: str | Path | None = None, record_path: bool = False) -> Fingerprint:
    """Fingerprint an opened model, reading each tensor of the checkpoint once.

    Two passes over the layers, each tensor in one of them: the first reads the MLP weights (neuron
    profiles, the neurons kept, and the Gram that gives the body basis), the second the attention
    weights, norms and biases, and writes every layer's features in body coordinates. What the second
    pass needs from the first (a few hundred rows per layer) waits in a temporary file, so memory holds
    one tensor at a time whatever the number of layers.

    Args:
        view: the model, opened with provenance.model.open_model.
        backend: where the reductions run (backends.get_backend(...)).
        n_anchors, max_neurons: anchor tokens and MLP neurons kept per layer.
        dtype: compute dtype on the backend.
        progress: show progress on stderr (bytes read, rate and ETA).
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
    tracker = Progress(2 * view.num_layers + 2, f"fingerprint {label or src.root.name}", progress,
                       total_bytes=_planned_bytes(view) or None)
    tracker.step("embedding")
    embed_shape = view.shape("embed")
    if embed_shape is None:
        raise Unsupported("model has no token embedding; lineage fingerprints need one", src.root)
    # one hash ranking: the anchors are the first n_anchors of the embedding tokens
    embed_tokens, all_rows, matched_by = choose_anchors(src.vocab_tokens, embed_shape[0], max(n_anchors, N_EMBED_TOKENS))
    embed_rows = _embedding_rows(view, all_rows, tracker)  # on the host until the basis is known
    tokens, rows = embed_tokens[:n_anchors], all_rows[:n_anchors]
    x = kernels.rms_rows(backend.place(embed_rows[:len(rows)], dtype))
    tracker.step("hashing the files")
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

    def weight(role, layer, expert=None):
        # widened as read on the CPU (no stored-dtype copy beside the float32 one); moved as stored to an
        # accelerator and widened and screened there
        on_device = backend.widen_on_device
        t = view.get(role, layer, expert, float32=not on_device)
        if t is None:
            return None
        tracker.advance(view.stored_bytes(role, layer, expert))
        if on_device:
            t = backend.place(t)
        return backend.place(_finite(t, view, role, layer).float(), dtype)

    hidden = x.shape[-1]
    with _Parked(spill=hidden > FULL_HIDDEN) as parked:
        embed_handle = parked.put(embed_rows)
        del embed_rows
        # the basis Gram, summed on the backend in float32 (at least): against a float64 sum, the top-128
        # subspace moves by a principal angle of about 1e-6, and memory holds 100 MB at 5120 wide, not 210
        gram = None
        if hidden > FULL_HIDDEN:
            gram = backend.place(torch.zeros(hidden, hidden), torch.promote_types(dtype, torch.float32))
        probes, mlp = [], []
        for i in range(view.num_layers):
            tracker.step(f"layer {i} MLP")
            mlp.append(_mlp_pass(view, i, x, weight, max_neurons, hidden, gram, probes, parked))
        basis = None if gram is None else backend.place(_body_basis(gram, probes, parked), dtype)
        del gram
        fp.doc["settings"]["body_basis"] = ("hidden" if basis is None else
                                            f"top {basis.shape[1]} principal directions of the norm-folded MLP gate rows and down columns")
        fp.doc["settings"]["body_dims"] = hidden if basis is None else basis.shape[1]
        project = (lambda t: t) if basis is None else (lambda t: t @ basis)  # rows into body coordinates
        fp.doc["embedding"] = {"tokens": embed_tokens, "matched_by": matched_by}
        fp.put("embed.rows", project(backend.place(parked.get(embed_handle), dtype)))
        heads = facts.get("num_attention_heads") or 1
        kv_heads = facts.get("num_key_value_heads") or heads

        for i in range(view.num_layers):
            tracker.step(f"layer {i} attention")
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
            _attention_products(fp, i, attn, norms["norm_attn"], heads, kv_heads, hidden, basis)
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
            record = mlp[i]
            mlp[i] = None
            info.update(record["info"])
            for feature, handle in record["profiles"].items():
                fp.put(feature, backend.place(parked.get(handle), dtype), i)
            for feature, handle in record["body"].items():
                fp.put(feature, project(backend.place(parked.get(handle), dtype)), i)
    tracker.finish()
    return fp


def _embedding_rows(view: ModelView, rows: list[int], tracker: Progress) -> torch.Tensor:
    """[len(rows), hidden] float32: the embedding's `rows` in the order given. The embedding (often the largest
    tensor) is read EMBED_BLOCK_BYTES at a time, each block screened for degenerate values and released, so
    memory never holds it whole."""
    name, shape = view.name_of("embed") or "embed", view.shape("embed")
    wanted = torch.as_tensor(rows, dtype=torch.long)
    out = torch.empty(len(rows), shape[1])
    screen = Screen(name, "embed", view.source.root)
    total = view.stored_bytes("embed")
    for start, block in view.row_blocks("embed", max(1, EMBED_BLOCK_BYTES // (4 * shape[1])), float32=True):
        block = screen.add(block)
        stop = start + block.shape[0]
        inside = (wanted >= start) & (wanted < stop)
        out[inside] = block[wanted[inside] - start].float()
        tracker.advance(total * stop // shape[0] - total * start // shape[0])
    screen.finish()
    return out


def _planned_bytes(view: ModelView) -> int:
    """Checkpoint bytes the pass will read: the embedding and every layer's roles the fingerprint uses."""
    total = view.stored_bytes("embed")
    for i in range(view.num_layers):
        total += sum(view.stored_bytes(role, i) for role in READ_ROLES) + view.stored_bytes("norm.mlp", i)  # read by both passes
        total += sum(view.stored_bytes(role, i) for roles in MLP_ROLES for role in roles)
        total += sum(view.stored_bytes(role, i, e) for e in view.experts(i) for role in EXPERT_ROLES)
    return total


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


def _mlp_pass(view, i, x, weight, max_neurons, hidden, gram, probes, parked) -> dict:
    """Layer i's MLP weights, each read once: gate and up profiles over the anchors (dense FFN, or every expert
    and shared expert pooled) and the kept neurons' folded gate/up rows and down columns (parked until the
    body basis is known); their Gram and sign probes are added to `gram` and `probes` on the way.

    Neurons are kept by strength: for profiles the product of up and gate row norms, for body features the
    norm of the folded row that feeds the nonlinearity (gate, or up without a gate). Both rankings are
    invariant to permutation and rescaling, so two related models keep corresponding neurons; the body one
    also to rotation. Returns the layer's record: info fields, and parked handles of its features."""
    gamma = weight("norm.mlp", i)
    x_mlp = kernels.fold_norm(x, gamma)
    profiles, body = _Kept(max_neurons), _Kept(max_neurons)
    groups = _mlp_groups(view, i)
    for gate_role, up_role, down_role, expert in groups:
        up_shape, down_shape = view.shape(up_role, i, expert), view.shape(down_role, i, expert)
        if up_shape is None or up_shape[-1] != hidden:
            continue
        in_body = down_shape is not None and down_shape[0] == hidden
        gate, gate_profile, gate_norm, picked = weight(gate_role, i, expert), None, None, None
        if gate is not None:
            gate_profile, gate_norm = kernels.neuron_profiles(x_mlp, gate), gate.norm(dim=1)
            if in_body:
                picked = _lead(gate, gamma, body, gram, probes, parked)
                body.attach("body.gate", _fold_rows(gate, picked, gamma))
            del gate
        up = weight(up_role, i, expert)
        score = up.norm(dim=1) if gate_norm is None else up.norm(dim=1) * gate_norm
        chosen = profiles.offer(score)
        profiles.attach("profile.up", kernels.neuron_profiles(x_mlp, up)[chosen])
        profiles.attach("profile.gate", None if gate_profile is None else gate_profile[chosen])
        del gate_profile
        if in_body:
            if picked is None:  # no gate: up feeds the nonlinearity
                picked = _lead(up, gamma, body, gram, probes, parked)
                body.attach("body.gate", None)
            body.attach("body.up", _fold_rows(up, picked, gamma))
        del up
        if in_body:
            down = weight(down_role, i, expert)
            if gram is not None:
                kernels.add_gram(gram, down.T, chunk=GRAM_ROWS)
            body.attach("body.down", down.T[picked])
            del down
    if not profiles.count:
        return {"info": {"neurons": 0, "moe": False, "notes": ["MLP weights do not act on the hidden size" if groups
                                                               else "no MLP found in this layer"]},
                "profiles": {}, "body": {}}
    kept, features = profiles.finish()
    record = {"info": {"neurons": profiles.count, "neurons_kept": kept, "moe": len(groups) > 1},
              "profiles": {name: parked.put(t) for name, t in features.items()}, "body": {}}
    if body.count:
        record["body"] = {name: parked.put(t) for name, t in body.finish()[1].items()}
    return record


def _lead(lead, gamma, body, gram, probes, parked) -> torch.Tensor:
    """A group's row that feeds the nonlinearity (gate, or up without one), norm folded, row block by row
    block: its Gram into `gram`, its first rows as sign probes, its norms as the body ranking. Returns the
    group's rows that may be kept."""
    norms = []
    for block in lead.split(GRAM_ROWS):
        folded = kernels.fold_columns(block, gamma)
        norms.append(folded.norm(dim=1))
        if gram is not None:
            kernels.add_gram(gram, folded, chunk=GRAM_ROWS)
    if gram is not None:
        probes.append(parked.put(kernels.unit_rows(kernels.fold_columns(lead[:PROBE_ROWS], gamma))))
    return body.offer(torch.cat(norms))


def _fold_rows(w, rows, gamma) -> torch.Tensor:
    return kernels.fold_columns(w[rows], gamma)


def _attention_products(fp, i, attn, gamma, heads, kv_heads, hidden, basis) -> None:
    """QK and OV products (norms folded) in body coordinates, when Q/K/V/O act on the hidden size. Takes the
    matrices out of `attn` (the caller's last references), so each unfolded one is released as it is folded."""
    q, k, v, o = (attn.pop(r, None) for r in ("q", "k", "v", "o"))
    if any(t is None for t in (q, k, v, o)) or q.shape[-1] != hidden or o.shape[0] != hidden:
        return
    if q.shape[0] % heads or k.shape[0] * heads != q.shape[0] * kv_heads or o.shape[1] != q.shape[0]:
        return  # head layout not understood (MLA, fused variants): no product rather than a wrong one
    q = kernels.fold_columns(q, gamma)
    k = kernels.fold_columns(k, gamma)
    v = kernels.fold_columns(v, gamma)
    # residual-space rows of Q, K, V and columns of O, the same offsets within every head: a residual rotation
    # leaves head dimensions in place, so these rows correspond one to one between a model and its rotated copy
    # (and head by head when heads were permuted)
    hd = q.shape[0] // heads
    per_head = max(1, min(hd, ATTN_ROWS // (2 * heads + 2 * kv_heads)))
    offsets = torch.linspace(0, hd - 1, per_head).round().long()
    blocks = [mat[h * hd + offsets] for mat, n in ((q, heads), (k, kv_heads), (v, kv_heads), (o.T, heads)) for h in range(n)]
    rows = torch.cat(blocks)
    fp.put("body.attn_rows", rows if basis is None else rows @ basis, i)
    fp.doc["layers"][i]["attn_rows"] = {"heads": heads, "kv_heads": kv_heads, "per_head": per_head}
    del blocks, rows
    fp.put("body.qk", kernels.qk_product(q, k, heads, kv_heads, basis), i)
    del q, k
    fp.put("body.ov", kernels.ov_product(o, v, heads, kv_heads, basis), i)


def _top_eigenvectors(gram: torch.Tensor, k: int) -> torch.Tensor:
    """[hidden, k] eigenvectors of the k largest eigenvalues of a symmetric float64 matrix, largest first; the
    same vectors as a full decomposition (kernels.principal_basis) to float64 rounding, but computed alone
    (LAPACK dsyevr on the wanted index range, in place): a fraction of the time, and no n x n eigenvector and
    workspace copies beside the Gram (about 0.6 GB at hidden 5120). The Gram is overwritten."""
    from scipy.linalg import eigh
    n = gram.shape[0]
    k = min(k, n)
    # the transpose of a C-ordered symmetric matrix is the same matrix in Fortran order: LAPACK takes it uncopied
    _, vecs = eigh(gram.numpy().T, subset_by_index=[n - k, n - 1], driver="evr", overwrite_a=True, check_finite=False)
    return torch.from_numpy(vecs[:, ::-1].copy())


def _body_basis(gram, probes, parked) -> torch.Tensor:
    """The top BODY_DIMS eigenvectors of the summed Gram of norm-folded gate rows and down columns, signs set
    by the third moments of the gate rows' probes. Rotation-equivariant: a rotated copy of the model gets
    the same coordinates."""
    hidden = gram.shape[0]
    if not probes:
        return torch.eye(hidden)[:, :BODY_DIMS]
    # float64 on the host: not every accelerator computes in it; signs not yet fixed
    basis = _top_eigenvectors(kernels.mirror(gram).cpu().double(), BODY_DIMS)
    skew = torch.zeros(basis.shape[1], dtype=torch.float64)
    for handle in probes:
        skew += ((parked.get(handle).double().cpu() @ basis) ** 3).sum(dim=0)
    return (basis * torch.where(skew < 0, -1.0, 1.0)).float()


class _Kept:
    """The rows of the max_neurons strongest neurons of a layer, gathered group by group (dense FFN, experts,
    shared expert) without holding every group's rows at once, and chosen exactly as one top-k over the
    whole layer's scores would choose them.

    `offer(scores)` takes a group's scores and returns the indices of its rows that may still be kept; the
    caller then `attach`es those rows for each part (None when the group lacks that part: the part is then
    not stored, as a part missing from one group cannot be pooled). Rows below the running k-th score are
    dropped: the k-th largest score only grows as groups come, so a dropped row can never be chosen."""

    def __init__(self, k: int):
        self.k, self.count, self._groups = k, 0, 0
        self._scores: list[torch.Tensor] = []
        self._index = torch.zeros(0, dtype=torch.long)  # layer-wide indices of the candidates, increasing
        self._score = torch.zeros(0)
        self._parts: dict[str, torch.Tensor | None] = {}

    def offer(self, scores: torch.Tensor) -> torch.Tensor:
        scores = scores.detach().cpu()
        self._scores.append(scores)
        merged = torch.cat([self._score, scores])
        threshold = merged.topk(min(self.k, merged.numel())).values.min()
        keep_old, new = self._score >= threshold, (scores >= threshold).nonzero().flatten()
        self._index = torch.cat([self._index[keep_old], new + self.count])
        self._score = torch.cat([self._score[keep_old], scores[new]])
        for name, rows in self._parts.items():
            if rows is not None:
                self._parts[name] = rows[keep_old.to(rows.device)]
        self.count += scores.numel()
        self._groups += 1
        return new

    def attach(self, name: str, rows: torch.Tensor | None) -> None:
        if rows is None or (name in self._parts and self._parts[name] is None) or (name not in self._parts and self._groups > 1):
            self._parts[name] = None  # missing from this group, or from an earlier one
        else:
            self._parts[name] = rows if name not in self._parts else torch.cat([self._parts[name], rows])

    def finish(self) -> tuple[int, dict[str, torch.Tensor]]:
        """(number kept, {part: kept rows in layer order}), the rows that score.topk(k) over the layer selects."""
        score = torch.cat(self._scores)
        keep = score.topk(min(self.k, score.numel())).indices.sort().values
        position = torch.searchsorted(self._index, keep)
        if not torch.equal(self._index[position.clamp_max(len(self._index) - 1)], keep):
            raise AssertionError("a kept neuron was dropped before the layer's ranking was complete")
        return int(keep.numel()), {name: rows[position.to(rows.device)] for name, rows in self._parts.items()
                                   if rows is not None}


class _Parked:
    """Tensors set aside between the two passes. With `spill`, in an unnamed temporary file (removed when
    closed, never in the model's folder), so that what waits for the body basis does not grow memory with the
    number of layers; otherwise in memory (small models, whose features are their full width)."""

    def __init__(self, spill: bool):
        self._file = tempfile.TemporaryFile(prefix="provenance-") if spill else None
        self._held: list[torch.Tensor] = []

    def put(self, t: torch.Tensor):
        t = t.detach().to("cpu", torch.float32).contiguous()
        if self._file is None:
            self._held.append(t)
            return len(self._held) - 1
        offset = self._file.seek(0, os.SEEK_END)
        self._file.write(memoryview(t.numpy()).cast("B"))
        return offset, tuple(t.shape)

    def get(self, handle) -> torch.Tensor:
        if self._file is None:
            return self._held[handle]
        offset, shape = handle
        out = torch.empty(shape, dtype=torch.float32)
        self._file.flush()
        read_into(self._file.fileno(), memoryview(out.numpy()).cast("B"), offset, Path("temporary file"))
        return out

    def __enter__(self) -> "_Parked":
        return self

    def __exit__(self, *exc) -> None:
        if self._file is not None:
            self._file.close()
        self._held.clear()


def fingerprint_model(path, backend, **kwargs) -> Fingerprint:
    """Open a model (any supported format) and fingerprint it; keyword arguments as fingerprint_view."""
    from ..model import open_model
    with open_model(path) as view:
        return fingerprint_view(view, backend, **kwargs)
