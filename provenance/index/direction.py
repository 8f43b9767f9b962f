"""Structural direction of a derived pair: which side is the parent, only where the weights' structure says so.

Each rule reads two fingerprints (public accessors only) and the pair's comparison, and answers
"a", "b" (the parent) or None. Rules that answer must agree; disagreement gives no direction.
Rules (the table RULES):
- upcycled MoE: the comparison's own direction (the dense model is the parent);
- pruned child: same depth, neither MoE, and every layer of one keeps fewer MLP neurons;
- depth change: the deeper model's layers left out of the layer map either duplicate a mapped layer
  (depth up-scaling: the deeper model is the child) or match nothing (a dropped layer: the shallower
  model is the child);
- vocabulary superset: one model's token strings are a strict superset of the other's (an extended
  vocabulary: the smaller one is the parent).
"""
from __future__ import annotations

import numpy as np

MATRIX_PREFERENCE = ("body_neurons", "mlp", "body_attention", "attention_cka")  # compare result's layer matrices
DUPLICATE_SHARE, DROPPED_SHARE = 0.6, 0.3  # of the way from background to the weakest mapped pair
MIN_SHARED_SAMPLE = 64   # sampled tokens that must agree before a superset is asserted


def _compare_direction(fa, fb, result):
    parent = (result.get("direction") or {}).get("parent")
    return (parent, result["direction"]["evidence"]) if parent in ("a", "b") else (None, "")


def _pruned(fa, fb, result):
    if fa.num_layers != fb.num_layers or fa.is_moe() or fb.is_moe():
        return None, ""
    na = [fa.layer_info(i).get("neurons") or 0 for i in range(fa.num_layers)]
    nb = [fb.layer_info(i).get("neurons") or 0 for i in range(fb.num_layers)]
    pairs = [(x, y) for x, y in zip(na, nb) if x and y]
    if not pairs:
        return None, ""
    if all(y < x for x, y in pairs):
        return "a", "b keeps fewer MLP neurons in every layer: a width-pruned child"
    if all(x < y for x, y in pairs):
        return "b", "a keeps fewer MLP neurons in every layer: a width-pruned child"
    return None, ""


def _layer_matrix(result) -> np.ndarray | None:
    for key in MATRIX_PREFERENCE:
        m = (result.get("matrices") or {}).get(key)
        if m is not None:
            arr = np.array([[np.nan if v is None else v for v in row] for row in m], dtype=float)
            if np.isfinite(arr).any():
                return arr
    return None


def _depth(fa, fb, result):
    la, lb = fa.num_layers, fb.num_layers
    m = _layer_matrix(result)
    if la == lb or m is None or not result.get("layer_map"):
        return None, ""
    deep_is_a = la > lb
    m = m if deep_is_a else m.T  # rows: the deeper model's layers
    mapped = {(i, j) if deep_is_a else (j, i) for i, j in result["layer_map"]}
    mapped_rows = {i for i, _ in mapped}
    mapped_vals = [m[i, j] for i, j in mapped if np.isfinite(m[i, j])]
    unmapped = [i for i in range(m.shape[0]) if i not in mapped_rows]
    mask = np.ones_like(m, dtype=bool)
    for i, j in mapped:
        mask[i, j] = False
    background = np.nanmedian(m[mask]) if mask.any() else np.nan
    if not unmapped or not mapped_vals or not np.isfinite(background):
        return None, ""
    weakest = min(mapped_vals)
    if weakest <= background:
        return None, ""
    share = [(np.nanmax(m[u]) - background) / (weakest - background) for u in unmapped]
    deep, shallow = ("a", "b") if deep_is_a else ("b", "a")
    if all(s >= DUPLICATE_SHARE for s in share):
        return shallow, f"the deeper model's extra layers duplicate mapped layers: depth up-scaling of {shallow}"
    if all(s <= DROPPED_SHARE for s in share):
        return deep, f"the deeper model's extra layers match nothing in the shallower one: layers dropped from {deep}"
    return None, ""


def _superset(small: list[str], large: list[str], small_complete: bool, large_complete: bool) -> bool:
    """Whether the vocabulary behind `small` is inside the one behind `large`, from their stored token samples.
    Both samples are the tokens of smallest anchor hash (anchors.choose_anchors), so under inclusion the small
    sample's tokens found in the large sample form a prefix of the small sample."""
    large_set = set(large)
    if small_complete and large_complete:
        return set(small) < large_set
    found = [t in large_set for t in small]
    n = sum(found)
    return n >= MIN_SHARED_SAMPLE and all(found[:n]) and len(large_set) > 0


def _vocabulary(fa, fb, result):
    ea, eb = fa.embedding_rows(), fb.embedding_rows()
    va, vb = (fp.model().get("facts", {}).get("vocab_size") for fp in (fa, fb))
    if ea is None or eb is None or not va or not vb or va == vb:
        return None, ""
    ta, tb = ea[0], eb[0]
    if va < vb and _superset(ta, tb, len(ta) >= va, len(tb) >= vb):
        return "a", "b's vocabulary is a strict superset of a's: an extended vocabulary"
    if vb < va and _superset(tb, ta, len(tb) >= vb, len(ta) >= va):
        return "b", "a's vocabulary is a strict superset of b's: an extended vocabulary"
    return None, ""


RULES = (("upcycled MoE", _compare_direction), ("pruned child", _pruned), ("depth change", _depth),
         ("vocabulary superset", _vocabulary))


def infer(fa, fb, result) -> dict:
    """Which of a derived pair is the parent, from structure only.

    Args:
        fa, fb: the pair's Fingerprints.
        result: their comparison document.
    Returns:
        {"parent": "a" | "b" | None, "evidence": ["rule: why", ...]}; None when no rule tells or rules disagree.
    """
    calls = [(name, *rule(fa, fb, result)) for name, rule in RULES]
    said = [(name, parent, why) for name, parent, why in calls if parent is not None]
    parents = {parent for _, parent, _ in said}
    if len(parents) == 1:
        return {"parent": parents.pop(), "evidence": [f"{name}: {why}" for name, _, why in said]}
    if len(parents) > 1:
        return {"parent": None, "evidence": ["conflicting structural evidence: " +
                                             "; ".join(f"{name} says {p}" for name, p, _ in said)]}
    return {"parent": None, "evidence": ["no structural evidence of direction"]}
