"""Layer-by-layer similarity matrices between two fingerprints.

Attention: unbiased CKA of the anchor-token Gram matrices of Q, K and V, for every
layer pair at once (one matrix product over flattened, diagonal-free Grams).
MLP: neuron profiles matched one-to-one by linear assignment; the mean matched
similarity is the statistic.
"""
from __future__ import annotations

import numpy as np
import torch

from .. import kernels


def shared_anchors(fa, fb) -> tuple[list[int], list[int], str]:
    """Indices of the anchors both fingerprints hold (by canonical string), and a note when they were identified differently."""
    ta, ma = fa.anchors()
    tb, mb = fb.anchors()
    pos_b = {t: i for i, t in enumerate(tb)}
    ia = [i for i, t in enumerate(ta) if t in pos_b]
    ib = [pos_b[ta[i]] for i in ia]
    note = "" if ma == mb else f"anchors identified differently ({ma} vs {mb}): pass --vocab for the model without a tokenizer"
    return ia, ib, note


def _gram_stack(fp, short: str, idx: list[int], stack: torch.Tensor | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """Every layer's Gram of one projection on the shared anchors, stacked [layers, n, n] in float64 (zeros where a
    layer has none), and which layers have one. `stack`: a [layers, n, n] float64 buffer to fill (a fresh one
    costs a page fault per 4 KB, which is most of the conversion's time on a 48-layer model)."""
    grams = [fp.gram(i, short) for i in range(fp.num_layers)]
    valid = np.array([g is not None for g in grams])
    n = len(idx)
    sel = None if all(g is None or g.shape[0] == n for g in grams) and list(idx) == list(range(n)) else \
        torch.tensor(idx, dtype=torch.long)  # index only when some anchors are not shared
    if stack is None:
        stack = torch.empty(len(grams), n, n, dtype=torch.float64)
    for i, g in enumerate(grams):
        if g is None:
            stack[i].zero_()
        else:
            stack[i].copy_(g if sel is None else g[sel][:, sel])  # one pass: converted while copied
    return stack, valid


def attention_matrix(fa, fb, ia, ib) -> np.ndarray:
    """[layers_a, layers_b] mean unbiased CKA over Q, K, V; NaN where a layer has none."""
    n = len(ia)
    la, lb = fa.num_layers, fb.num_layers
    if n < 8:
        return np.full((la, lb), np.nan)
    total, count = np.zeros((la, lb)), np.zeros((la, lb))
    ka, kb = (torch.empty(layers, n, n, dtype=torch.float64) for layers in (la, lb))  # refilled per projection
    for short in ("q", "k", "v"):
        ka, valid_a = _gram_stack(fa, short, ia, ka)
        kb, valid_b = _gram_stack(fb, short, ib, kb)
        cka = kernels.cka_matrix(ka, kb).numpy()
        mask = np.outer(valid_a, valid_b)
        total += np.where(mask, cka, 0.0)
        count += mask
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _standardized(t: torch.Tensor, sel: torch.Tensor | None) -> torch.Tensor:
    """kernels.standardize_rows of the profiles' shared-anchor columns in float64, returned in float32: the same
    operations, done in place on the one float64 copy (the columns are picked in float32 first, and only when some
    anchors are not shared)."""
    x = (t if sel is None else t[:, sel]).double()
    x -= x.mean(dim=1, keepdim=True)
    x /= x.norm(dim=1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
    return x.float()


class _Profiles:
    """Each layer's gate and up profiles on the shared anchors, standardized once (in float64) and reused.

    The similarity products run in float32: correlations of unit rows carry about 1e-7 rounding, far below any
    difference the assignment or the effect margin resolves, at half the cost of float64."""

    def __init__(self, fp, idx: list[int]):
        self.fp, self.cache, self.n = fp, {}, len(idx)
        self.sel, self.prefix = torch.tensor(idx, dtype=torch.long), list(idx) == list(range(len(idx)))

    def __getitem__(self, layer: int):
        if layer not in self.cache:
            prep = (lambda t: None if t is None else
                    _standardized(t, None if self.prefix and t.shape[1] == self.n else self.sel))
            self.cache[layer] = (prep(self.fp.profiles(layer, "gate")), prep(self.fp.profiles(layer, "up")))
        return self.cache[layer]


def mlp_pair(pa: _Profiles, pb: _Profiles, i: int, j: int) -> float:
    (ga, ua), (gb, ub) = pa[i], pb[j]
    if ua is None or ub is None:
        return float("nan")
    _, _, matched = kernels.match(kernels.neuron_similarity(ga, ua, gb, ub))
    return float(np.mean(matched))


def mlp_matrix(fa, fb, ia, ib, pairs=None) -> np.ndarray:
    """[layers_a, layers_b] mean matched neuron similarity; only `pairs` (default all) are computed, NaN elsewhere."""
    la, lb = fa.num_layers, fb.num_layers
    out = np.full((la, lb), np.nan)
    if len(ia) < 8:
        return out
    pa, pb = _Profiles(fa, ia), _Profiles(fb, ib)
    todo = pairs if pairs is not None else [(i, j) for i in range(la) for j in range(lb)]
    for i, j in todo:
        out[i, j] = mlp_pair(pa, pb, i, j)
    return out
