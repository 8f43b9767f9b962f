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

FULL_MLP_PAIRS = 576  # beyond this many layer pairs, MLP similarity is computed on the path and a null sample


def shared_anchors(fa, fb) -> tuple[list[int], list[int], str]:
    """Indices of the anchors both fingerprints hold (by canonical string), and a note when they were identified differently."""
    ta, ma = fa.anchors()
    tb, mb = fb.anchors()
    pos_b = {t: i for i, t in enumerate(tb)}
    ia = [i for i, t in enumerate(ta) if t in pos_b]
    ib = [pos_b[ta[i]] for i in ia]
    note = "" if ma == mb else f"anchors identified differently ({ma} vs {mb}): pass --vocab for the model without a tokenizer"
    return ia, ib, note


def _hsic_terms(grams: list[torch.Tensor | None], idx: list[int]):
    """Per layer: flattened diagonal-free Gram, its row sums and total, for batched unbiased HSIC."""
    n = len(idx)
    flat, rows, total, valid = [], [], [], []
    sel = torch.tensor(idx, dtype=torch.long)
    for g in grams:
        if g is None:
            flat.append(torch.zeros(n * n, dtype=torch.float64))
            rows.append(torch.zeros(n, dtype=torch.float64))
            total.append(torch.zeros((), dtype=torch.float64))
            valid.append(False)
            continue
        k = g.double()[sel][:, sel]
        k = k - torch.diag(torch.diagonal(k))
        flat.append(k.reshape(-1))
        rows.append(k.sum(dim=1))
        total.append(k.sum())
        valid.append(True)
    return torch.stack(flat), torch.stack(rows), torch.stack(total), np.array(valid)


def _batched_hsic(a, b, n):
    fa, ra, ta, _ = a
    fb, rb, tb, _ = b
    return (fa @ fb.T + torch.outer(ta, tb) / ((n - 1) * (n - 2)) - 2 * (ra @ rb.T) / (n - 2)) / (n * (n - 3))


def attention_matrix(fa, fb, ia, ib) -> np.ndarray:
    """[layers_a, layers_b] mean unbiased CKA over Q, K, V; NaN where a layer has none."""
    n = len(ia)
    la, lb = fa.num_layers, fb.num_layers
    if n < 8:
        return np.full((la, lb), np.nan)
    total, count = np.zeros((la, lb)), np.zeros((la, lb))
    for short in ("q", "k", "v"):
        a = _hsic_terms([fa.gram(i, short) for i in range(la)], ia)
        b = _hsic_terms([fb.gram(j, short) for j in range(lb)], ib)
        cross = _batched_hsic(a, b, n)
        self_a = torch.diagonal(_batched_hsic(a, a, n)).clamp_min(0).sqrt()
        self_b = torch.diagonal(_batched_hsic(b, b, n)).clamp_min(0).sqrt()
        cka = (cross / torch.outer(self_a, self_b).clamp_min(1e-300)).numpy()
        mask = np.outer(a[3], b[3])
        total += np.where(mask, cka, 0.0)
        count += mask
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


class _Profiles:
    """Each layer's gate and up profiles on the shared anchors, standardized once and reused."""

    def __init__(self, fp, idx: list[int]):
        self.fp, self.sel, self.cache = fp, torch.tensor(idx, dtype=torch.long), {}

    def __getitem__(self, layer: int):
        if layer not in self.cache:
            up = self.fp.profiles(layer, "up")
            gate = self.fp.profiles(layer, "gate")
            prep = (lambda t: None if t is None else kernels.standardize_rows(t.double()[:, self.sel]))
            self.cache[layer] = (prep(gate), prep(up))
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
