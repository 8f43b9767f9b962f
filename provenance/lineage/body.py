"""Body-only signals: MLP neurons and attention products matched in weight space, never through embeddings.

The two models' body coordinates differ by an unknown orthogonal map S (a residual-stream rotation,
a hidden permutation, or the models' own principal bases). S is estimated by alternating best-match
neuron pairing and orthogonal Procrustes from several starts (identity; the spectral start, each
model's eigenbasis of its pooled neuron Gram with signs fixed by third moments; Procrustes over the
embedding rows of shared tokens), keeping the best objective.

A fitted map overfits the neurons it was fitted on, so the map is cross-fitted: the map that scores
the rows of layer i of A was fitted on A's layers of the other folds (the other parity in deep models,
every other layer in shallow ones; pooled, against all of B's layers, so no layer map is needed). Under
independence every layer pair of A's row i is scored by a map that saw none of A's layer i, so
corresponding and non-corresponding pairs stay exchangeable.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
import torch

from .. import kernels

FIT_POOL = 384         # least neurons per side in one map fit (the strongest of each layer, spread over layers)
FIT_ITERATIONS = 5
SCOUT_ITERATIONS = 0     # refinement rounds every start gets before the best ones are refined further (0: scored as is)
FINALISTS = 2            # scouted starts refined to convergence
GOOD_ENOUGH = 0.9      # a start whose fitted objective reaches this ends the search over starts
DTYPE = torch.float32
SOFTNESS = 0.02       # temperature of the soft matching in the map fit
PRODUCT_ITERATIONS = 30  # two-sided Procrustes refinements of the attention-product start
PRODUCT_LAYERS = 8       # layer pairs (evenly spaced) the attention-product start is fitted on
NEURON_CAP = 256       # neurons per layer scored
LEAVE_ONE_OUT_BELOW = 9  # models shallower than this fit one map per layer, on all their other layers


def folds(layers: int) -> int:
    """How many cross-fitting folds A's layers are split into (layer i is in fold i % folds): two for deep
    models, whose halves hold plenty of layers to fit a map on; one per layer for shallow ones, whose halves
    would hold too few (each map then sees every layer but the one it scores)."""
    return layers if layers < LEAVE_ONE_OUT_BELOW else 2


def fit_pool(dims: int | None) -> int:
    """Neurons per side in a map fit: enough matched pairs to pin an orthogonal map of this many dimensions."""
    return max(FIT_POOL, 4 * (dims or 0))


class Neurons(NamedTuple):
    """Unit descriptors of a set of neurons: the signed parts and the paired parts (lists of [neurons, dims]), and
    each side's parts joined along the columns ([neurons, parts * dims]; None without paired parts)."""
    signed: list
    paired: list
    signed_joined: torch.Tensor
    paired_joined: torch.Tensor | None


def neurons(signed: list, paired: list) -> Neurons:
    """The descriptor with its joined parts (joined once here, where every product reads them)."""
    def join(parts):
        return None if not parts else parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
    return Neurons(signed, paired, join(signed), join(paired))


class BodyView:
    """One fingerprint's body features as unit vectors, per layer: neurons (signed part, paired parts), products."""

    def __init__(self, fp):
        self.fp = fp
        self.layers = []
        for i in range(fp.num_layers):
            n = fp.body_neurons(i)
            if "up" not in n or "down" not in n:
                self.layers.append(None)
                continue
            # strongest first, by the norm of the row feeding the nonlinearity: the same neurons in related models
            order = n.get("gate", n["up"]).norm(dim=1).argsort(descending=True)[:NEURON_CAP]
            unit = {p: kernels.unit_rows(t.to(DTYPE)[order]) for p, t in n.items()}
            if "gate" in unit:   # SwiGLU: the gate's sign is fixed, up and down flip sign together
                self.layers.append(neurons([unit["gate"]], [unit["up"], unit["down"]]))
            else:                # one nonlinearity on up: no sign freedom
                self.layers.append(neurons([unit["up"], unit["down"]], []))
        self.attn_rows = []  # per layer: None or (unit rows, (heads, kv_heads, per_head))
        for i in range(fp.num_layers):
            r = fp.attention_rows(i)
            lay = fp.layer_info(i).get("attn_rows", {})
            self.attn_rows.append(None if r is None else
                                  (kernels.unit_rows(r.to(DTYPE)), (lay["heads"], lay["kv_heads"], lay["per_head"])))
        self.products = []
        for i in range(fp.num_layers):
            qk, ov = fp.attention_product(i, "qk"), fp.attention_product(i, "ov")
            self.products.append(None if qk is None or ov is None else (qk.to(DTYPE), ov.to(DTYPE)))
        dims = {l.signed[0].shape[1] for l in self.layers if l is not None}
        self.dims = dims.pop() if len(dims) == 1 else None

    def pooled(self, layers) -> Neurons | None:
        """The strongest neurons of the given layers, stacked (about fit_pool(dims) in all)."""
        present = [l for l in layers if self.layers[l] is not None]
        if not present:
            return None
        per = max(8, fit_pool(self.dims) // len(present))
        first = self.layers[present[0]]
        return neurons(*([torch.cat([self.layers[l][side][k][:per] for l in present]) for k in range(len(first[side]))]
                         for side in (0, 1)))

    def kind(self) -> tuple[int, int] | None:
        """(signed parts, paired parts) of the descriptor, None when layers disagree or none has neurons."""
        kinds = {(len(l.signed), len(l.paired)) for l in self.layers if l is not None}
        return kinds.pop() if len(kinds) == 1 else None


def _map_joined(joined: torch.Tensor | None, s: torch.Tensor) -> torch.Tensor | None:
    """Joined parts [n, parts * dims], each part's rows mapped by S: one product over every part's rows."""
    if joined is None:
        return None
    return (joined.reshape(-1, s.shape[1]) @ s.T).reshape(joined.shape)


def _mapped(b: Neurons, s: torch.Tensor):
    """B's parts mapped by S into A's coordinates, each part's rows concatenated along the columns."""
    return _map_joined(b.signed_joined, s), _map_joined(b.paired_joined, s)


def _parts(a: Neurons, b: Neurons, s: torch.Tensor | None, mapped=None):
    """(sum of signed-part cosines, sum of paired-part cosines or None) of A's rows against B's rows mapped by S
    (or against `mapped`, B already mapped by _mapped)."""
    mb_signed, mb_paired = mapped if mapped is not None else _mapped(b, s)
    signed = a.signed_joined @ mb_signed.T
    paired = a.paired_joined @ mb_paired.T if a.paired else None
    return signed, paired


def _combined(signed: torch.Tensor, paired: torch.Tensor | None, parts: int, scratch: bool = False) -> torch.Tensor:
    """Neuron similarity in [-1, 1] from _parts' two sums: cosines of the signed parts plus the absolute summed cosine
    of the paired parts, averaged over parts: (signed + |paired|) / parts. With `scratch`, the sums are not needed
    afterwards and are combined in place (the same values, without new tensors)."""
    if scratch:
        return (signed if paired is None else paired.abs_().add_(signed)).div_(parts)
    return (signed if paired is None else signed + paired.abs()) / parts


def _block_trace(xs, weighted: torch.Tensor) -> torch.Tensor:
    """sum over parts p of x_p^T (W y_p), with W y stacked by part along the columns."""
    k = xs[0].shape[1]
    return sum(x.T @ weighted[:, i * k:(i + 1) * k] for i, x in enumerate(xs))


def _soft_map(a, b, sim: torch.Tensor, paired: torch.Tensor | None) -> torch.Tensor:
    """Orthogonal map from a soft mutual matching of the similarities under the current map (weights smooth in the
    similarities, so a small change of the weights, such as a lower-precision copy, moves the map a little rather
    than flipping discrete pairings)."""
    scaled = sim / SOFTNESS
    w = torch.softmax(scaled, dim=1) * torch.softmax(scaled, dim=0)
    w = torch.where(w > 1e-12, w, 0.0)  # denormal weights contribute nothing and make the products crawl
    m = _block_trace(a.signed, w @ b.signed_joined)
    if a.paired:
        m = m + _block_trace(a.paired, (w * torch.sign(paired)) @ b.paired_joined)
    return kernels.polar(m)


def _spectral(pool: Neurons) -> torch.Tensor:
    signed, paired = pool.signed, pool.paired
    stacked = torch.cat(list(signed) + list(paired))
    gram = stacked.T @ stacked
    return kernels.principal_basis(gram, gram.shape[0], signed[0])


def _score(a_pool: Neurons, b_pool: Neurons, s: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor | None]:
    """(objective, similarity, paired sums) of map s: the objective is the mean best-match similarity of A's rows."""
    signed, paired = _parts(a_pool, b_pool, s)
    sim = _combined(signed, paired, len(a_pool.signed) + len(a_pool.paired))
    return float(sim.max(dim=1).values.mean()), sim, paired


def _refine(a_pool, b_pool, s, steps: int, scored=None) -> tuple[torch.Tensor, float, torch.Tensor, tuple]:
    """Up to `steps` rounds of soft matching and Procrustes from s: (best map seen, its objective, last map, the
    last map's _score). `scored`, s's _score when known, is used rather than recomputed; a map is only computed
    when it will be scored."""
    best, best_obj = s, -np.inf
    for step in range(steps + 1):
        scored = scored if step == 0 and scored is not None else _score(a_pool, b_pool, s)
        obj, sim, paired = scored
        improved = obj > best_obj + 1e-4
        if obj > best_obj:
            best, best_obj = s, obj
        if step == steps or (step > 0 and not improved):
            break
        s_new = _soft_map(a_pool, b_pool, sim, paired)
        if torch.allclose(s_new, s, atol=1e-4):
            break
        s = s_new
    return best, best_obj, s, scored


def fit_map(a_pool, b_pool, starts) -> tuple[torch.Tensor, float]:
    """Best orthogonal map over the starts and every iterate of alternating soft matching and Procrustes (a start
    that already fits is never made worse): (S, objective = mean best-match similarity of A's rows).

    Every start is scored (after SCOUT_ITERATIONS rounds); the FINALISTS best are refined to convergence (a right
    start can trail a wrong one before refinement when the models were trained apart), and a start that fits well
    ends the search (starts may be callables, computed only when reached)."""
    scouted, tried = [], []  # (objective, best map, last map, its score); the starts scouted so far
    for start in starts:
        s = start() if callable(start) else start
        if s is None or any(torch.allclose(s, t, atol=1e-4) for t in tried):  # a start equal to one tried adds nothing
            continue
        tried.append(s)
        found, obj, last, scored = _refine(a_pool, b_pool, s, SCOUT_ITERATIONS)
        scouted.append((obj, found, last, scored))
        if obj >= GOOD_ENOUGH:
            break
    best, best_obj = None, -np.inf
    for obj, found, last, scored in sorted(scouted, key=lambda t: -t[0])[:FINALISTS]:
        if obj > best_obj:
            best, best_obj = found, obj
        refined, refined_obj, _, _ = _refine(a_pool, b_pool, last, FIT_ITERATIONS, scored)
        if refined_obj > best_obj:
            best, best_obj = refined, refined_obj
    return best, best_obj


def _embedding_start(ctx, dims) -> torch.Tensor | None:
    """Procrustes over the embedding rows of shared tokens (in body coordinates): the map when the embeddings
    were carried over with the body."""
    from .embedding import cached_shared_rows
    rows = cached_shared_rows(ctx)
    if rows is None or rows[0].shape[1] != dims or rows[1].shape[1] != dims or rows[0].shape[0] < 2 * dims:
        return None
    return kernels.polar(rows[0].T @ rows[1])


def _head_blocks(rows: torch.Tensor, layout) -> list[torch.Tensor]:
    """[query-head blocks (Q rows with O columns), key/value-head blocks (K rows with V rows)], each a
    [heads, rows, dims] stack of one block per head."""
    heads, kv, m = layout
    blocks = rows[:(2 * heads + 2 * kv) * m].reshape(-1, m, rows.shape[1])  # per head, stored as Q, K, V, O
    q, k, v, o = blocks[:heads], blocks[heads:heads + kv], blocks[heads + kv:heads + 2 * kv], blocks[heads + 2 * kv:]
    return [torch.cat([q, o], dim=1), torch.cat([k, v], dim=1)]


def _match_heads(blocks_a: torch.Tensor, blocks_b: torch.Tensor) -> list[int]:
    """B's head for each of A's heads, by linear assignment on the rotation-invariant Gram of each head's rows."""
    def desc(x):
        g = x @ x.transpose(1, 2)
        return (g / torch.linalg.matrix_norm(g).clamp_min(1e-12)[:, None, None]).flatten(1)
    return [int(c) for c in kernels.match(desc(blocks_a) @ desc(blocks_b).T)[1]]


def _attention_row_start(va, vb, layers_a, layers_b, match_heads: bool) -> torch.Tensor | None:
    """Procrustes over Q/K/V rows and O columns at the same offsets of the same heads in corresponding layers: the
    map itself when one model is a residual rotation of the other. With match_heads, heads are first paired by
    their rotation-invariant row Grams (for head-permuted copies). Only the given layer pairs are used."""
    m = 0
    for la, lb in zip(layers_a, layers_b):
        a, b = va.attn_rows[la], (vb.attn_rows[lb] if lb < len(vb.attn_rows) else None)
        if a is None or b is None or a[1] != b[1] or a[0].shape != b[0].shape:
            continue
        if not match_heads:
            m = m + a[0].T @ b[0]
            continue
        for blocks_a, blocks_b in zip(_head_blocks(*a), _head_blocks(*b)):
            order = _match_heads(blocks_a, blocks_b)
            dims = blocks_a.shape[-1]
            m = m + blocks_a.reshape(-1, dims).T @ blocks_b[order].reshape(-1, dims)
    return None if isinstance(m, int) else kernels.polar(m)


def _depth_matched(la: int, lb: int, layers_a) -> list[int]:
    """B's layer at the same relative depth as each of A's layers (the identity when depths are equal)."""
    return [l if la == lb else round(l * (lb - 1) / max(1, la - 1)) for l in layers_a]


def _product_start(va, vb, layers_a, layers_b) -> torch.Tensor | None:
    """The residual map from the attention products alone (invariant to anything done inside a head: head
    permutation, per-head rotations of Q/K or V/O, rescaling). A residual rotation S turns B's products into
    S M Sᵀ; S is fitted by two-sided orthogonal Procrustes over corresponding layers (each product scaled to unit
    norm), iterating S <- polar(Σ M_A S M_Bᵀ + M_Aᵀ S M_B) while the fit improves, from the identity and from
    the products' spectral alignment (`_product_spectral`); the better fit is kept. Its sign is not determined
    by products (S and -S give the same ones). At most PRODUCT_LAYERS layer pairs are used."""
    pairs = [(i, j) for i, j in zip(layers_a, layers_b) if i < len(va.products) and j < len(vb.products)
             and va.products[i] is not None and vb.products[j] is not None]
    if not pairs:
        return None
    pairs = [pairs[k] for k in sorted({round(x) for x in np.linspace(0, len(pairs) - 1, PRODUCT_LAYERS)})]
    ma = torch.stack([kernels.unit_rows(m.reshape(1, -1)).reshape(m.shape) for i, _ in pairs for m in va.products[i]])
    mb = torch.stack([kernels.unit_rows(m.reshape(1, -1)).reshape(m.shape) for _, j in pairs for m in vb.products[j]])

    def ascent(s):  # the fit's gradient direction; <ascent(S), S> / 2 is the fit Σ <M_A, S M_B Sᵀ> itself
        return (ma @ s @ mb.transpose(1, 2) + ma.transpose(1, 2) @ s @ mb).sum(dim=0)

    def climb(s):
        g = ascent(s)
        best = float((g * s).sum()) / 2
        for _ in range(PRODUCT_ITERATIONS):
            s_new = kernels.polar(g)
            g_new = ascent(s_new)
            value = float((g_new * s_new).sum()) / 2
            if value <= best + 1e-6 * abs(best):
                break
            s, g, best = s_new, g_new, value
        return best, s
    fits = [climb(torch.eye(ma.shape[-1], dtype=ma.dtype)), climb(_product_spectral(ma, mb))]
    return max(fits, key=lambda t: t[0])[1]


def _product_spectral(ma: torch.Tensor, mb: torch.Tensor) -> torch.Tensor:
    """A start for S from the products' spectra: B's products are S M Sᵀ, so the eigenvectors of Σ (M Mᵀ + Mᵀ M)
    turn by S too, up to each one's sign. The signs d maximize the two-sided fit, a quadratic form dᵀ C d over
    d in {±1}ⁿ with C_ij = Σ Ã_ij B̃_ij (products in their eigenbases); they are taken from C's top eigenvector,
    then improved one flip at a time."""
    def eigenbasis(m):
        g = (m @ m.transpose(1, 2) + m.transpose(1, 2) @ m).sum(dim=0).double()
        vals, vecs = torch.linalg.eigh(g)
        return vecs[:, vals.argsort(descending=True)]
    ua, ub = eigenbasis(ma), eigenbasis(mb)
    ta, tb = ua.T @ ma.double() @ ua, ub.T @ mb.double() @ ub
    c = (ta * tb).sum(dim=0)
    c = (c + c.T) / 2
    d = torch.linalg.eigh(c).eigenvectors[:, -1].sign()
    d[d == 0] = 1
    for _ in range(4 * len(d)):  # a flip of d_i changes dᵀCd by -4 d_i (Σ_j≠i C_ij d_j)
        gain = -4 * d * (c @ d - c.diagonal() * d)
        i = int(gain.argmax())
        if gain[i] <= 0:
            break
        d[i] = -d[i]
    return ((ua * d) @ ub.T).to(ma.dtype)


def _signed(a_pool, b_pool, s: torch.Tensor | None) -> torch.Tensor | None:
    """S or -S, whichever matches the neurons better (attention products cannot tell them apart; the neurons' signed
    part can): one similarity product scores both, since -S negates the signed part and leaves the paired part."""
    if s is None:
        return None
    signed, paired = _parts(a_pool, b_pool, s)
    extra = 0 if paired is None else paired.abs()
    flipped = ((-signed + extra).max(dim=1).values.mean() > (signed + extra).max(dim=1).values.mean())
    return -s if bool(flipped) else s


def cross_fitted_maps(ctx) -> dict | None:
    """{fold of A's layer: S} where S was fitted on A's layers of the other folds (see `folds`); None if no body
    features."""
    if "body_maps" in ctx.cache:
        return ctx.cache["body_maps"]
    va, vb = BodyView(ctx.fa), BodyView(ctx.fb)
    ctx.cache["body_views"] = (va, vb)
    maps = None
    if va.dims is not None and va.dims == vb.dims and va.kind() is not None and va.kind() == vb.kind():
        b_pool = vb.pooled(range(ctx.fb.num_layers))
        whole_a = va.pooled(range(ctx.fa.num_layers))
        @functools.cache
        def embedding_start():
            emb = _embedding_start(ctx, va.dims)
            return None if emb is None else emb.to(DTYPE)

        @functools.cache
        def spectral_start():
            if b_pool is None or whole_a is None:
                return None
            return (_spectral(whole_a).double() @ _spectral(b_pool).double().T).to(DTYPE)

        starts = [torch.eye(va.dims, dtype=DTYPE), embedding_start, spectral_start]  # shared by both parities
        maps = {}
        la = ctx.fa.num_layers
        k = folds(la)
        for fold in range(k):
            fit_layers = [i for i in range(la) if i % k != fold] or list(range(la))
            a_pool = va.pooled(fit_layers)
            if a_pool is None or b_pool is None:
                maps = None
                break
            # B's layers at the same relative depth: the layer map is not known yet (a layer removed or inserted
            # leaves most pairs right, enough for a start)
            matched = _depth_matched(la, ctx.fb.num_layers, fit_layers)
            row_starts = [lambda match=match, fit=fit_layers, mapped=matched: _attention_row_start(va, vb, fit, mapped, match)
                          for match in (False, True)]
            product = lambda fit=fit_layers, mapped=matched, pool=a_pool: _signed(pool, b_pool, _product_start(va, vb, fit, mapped))
            maps[fold], _ = fit_map(a_pool, b_pool, starts + row_starts + [product])
    ctx.cache["body_maps"] = maps
    return maps


def neuron_matrix(ctx, pairs=None) -> np.ndarray:
    """[layers_a, layers_b] mean best-match similarity of the smaller side's neurons, under the cross-fitted map."""
    la, lb = ctx.fa.num_layers, ctx.fb.num_layers
    out = np.full((la, lb), np.nan)
    maps = cross_fitted_maps(ctx)
    if maps is None:
        return out
    va, vb = ctx.cache["body_views"]
    todo = pairs if pairs is not None else [(i, j) for i in range(la) for j in range(lb)]
    k = folds(la)
    mapped = {}  # (B's layer, fold) -> B's neurons under that fold's map, mapped once
    for i, j in todo:
        a, b = va.layers[i], vb.layers[j]
        if a is None or b is None:
            continue
        if (j, i % k) not in mapped:
            mapped[j, i % k] = _mapped(b, maps[i % k])
        sim = _combined(*_parts(a, b, None, mapped[j, i % k]), len(a.signed) + len(a.paired), scratch=True)
        best = sim.max(dim=1).values if sim.shape[0] <= sim.shape[1] else sim.max(dim=0).values
        out[i, j] = float(best.mean())
    return out


def attention_matrix(ctx, pairs=None) -> np.ndarray:
    """[layers_a, layers_b] mean Frobenius cosine of the QK and OV products under the cross-fitted map."""
    la, lb = ctx.fa.num_layers, ctx.fb.num_layers
    out = np.full((la, lb), np.nan)
    maps = cross_fitted_maps(ctx)
    if maps is None:
        return out
    va, vb = ctx.cache["body_views"]
    ok_b = [j for j in range(lb) if vb.products[j] is not None]
    if not ok_b:
        return out
    theirs = torch.stack([torch.stack(vb.products[j]) for j in ok_b])  # [layers, 2, dims, dims]
    k = folds(la)
    for fold, s in maps.items():
        rows = [i for i in range(la) if i % k == fold and va.products[i] is not None]
        if not rows:
            continue
        # map and flatten every product of B at once, then all layer pairs of this fold in one product
        mapped = (s @ theirs @ s.T).reshape(len(ok_b), -1)
        mine = torch.stack([torch.cat([p.reshape(-1) for p in va.products[i]]) for i in rows])
        half = mine.shape[1] // 2
        cos = sum(kernels.unit_rows(mine[:, h]) @ kernels.unit_rows(mapped[:, h]).T
                  for h in (slice(0, half), slice(half, None))) / 2
        out[np.ix_(rows, ok_b)] = cos.numpy()
    return out
