"""Family trees: the lineage forest of everything in an index.

1. Pairs: every pair when the index is small (up to EXHAUSTIVE_UP_TO entries), otherwise each entry
   with its pre-filter neighbours.
2. Each pair is compared in full; Holm's correction runs over all compared pairs, and a pair is a
   candidate edge when its verdict is `derived` and its corrected p-value is at most alpha_derived.
3. A forest: each model is attached to at most one relative, never closing a cycle. Weights cannot
   order near-identical relatives (a permuted or int8 copy is the same function as its parent), and
   siblings fine-tuned on the same data resemble each other more than they resemble their parent;
   so attachments are taken in this order (ATTACH_ORDER): to a declared base model first (or to a
   relative far closer than any declared base: a near copy of a derivative hangs below that
   derivative), then to a relative released earlier (when release dates are recorded), then by
   strength of evidence, and between the two orientations of one pair the model indexed first is
   the parent. An attachment never contradicts structural direction (a model is not hung below its
   own child).
4. Edges are listed strongest first; an edge carries a direction only where structure supports it
   (direction.py); otherwise the edge is undirected.
"""
from __future__ import annotations

import functools
import itertools
import time

import numpy as np

from ..lineage import DECISION, compare_fingerprints
from ..progress import Progress
from ..schemas import SCHEMA_VERSIONS, tool_record
from . import direction as D
from .search import holm, prefilter_scores

EXHAUSTIVE_UP_TO = 100
NEIGHBOURS = 10


def _strength(result) -> float:
    """Largest effect above its margin among the signals the verdict used (p-values saturate; effects rank)."""
    used = [s for s in result["signals"] if s.get("used") and s.get("effect") is not None and s.get("min_effect") is not None]
    return max((s["effect"] - s["min_effect"] for s in used), default=0.0)


def candidate_pairs(store, entries, exhaustive_up_to: int = EXHAUSTIVE_UP_TO, neighbours: int = NEIGHBOURS):
    """Pairs of entry indices to compare: all of them for small indexes, else pre-filter neighbours.

    Args:
        store: the open index.
        entries: the Entries in the tree.
        exhaustive_up_to: up to this many entries, every pair is compared.
        neighbours: above it, each entry's this many nearest by summary.
    Returns:
        ([(i, j)], the rule used, in words).
    """
    n = len(entries)
    if n <= exhaustive_up_to:
        return list(itertools.combinations(range(n), 2)), "all pairs"
    _, hashes, _, matrix = store.summaries()
    position = {h: k for k, h in enumerate(hashes)}
    rows = [position[e.content_hash] for e in entries]
    pairs = set()
    for k, row in enumerate(rows):
        scores = prefilter_scores(matrix[row], matrix[rows])
        scores[k] = -np.inf
        for j in np.argsort(-scores)[:neighbours]:
            pairs.add((min(k, int(j)), max(k, int(j))))
    return sorted(pairs), f"each model with its {neighbours} nearest by the pre-filter"


CLOSER_MARGIN = 0.25  # effect units: siblings fine-tuned on the same data exceed their parent by < 0.1 in the zoo


def _attach_key(child, parent, strength, base_strength) -> tuple:
    """Smaller first. Tier 0: a declared base, or a relative closer than the child's closest declared base by more
    than CLOSER_MARGIN (a near copy of a derivative is that derivative's child, not its grandparent's); then an
    earlier release; then stronger evidence; then, between the two orientations of one pair, the model indexed first
    as the parent."""
    declared = parent.role == "base" and child.role != "base"
    closer = base_strength is not None and strength > base_strength + CLOSER_MARGIN
    if parent.released and child.released:
        dated = 0 if parent.released < child.released else 2
    else:
        dated = 1
    return (0 if declared or closer else 1, dated, -strength, 0 if parent.id < child.id else 1)


ATTACH_ORDER = ("the relative is a declared base model and the child is not, or is closer to the child than its "
                f"closest declared base by more than {CLOSER_MARGIN} in effect",
                "the relative was released earlier", "stronger evidence (largest effect above its margin)",
                "the relative was indexed first")


def compare_pairs(store, entries, pairs, progress: bool = False) -> list[dict]:
    """Full comparison of each pair of entry indices, with Holm's correction over all of them.

    Args:
        store: the open index.
        entries: the Entries compared.
        pairs: (i, j) indices into entries.
        progress: show progress on stderr.
    Returns:
        [{i, j, pair_verdict, p_value, p_value_corrected, strength, direction (derived pairs)}].
    """
    load = functools.lru_cache(maxsize=128)(store.fingerprint)
    tracker = Progress(len(pairs), "index tree", progress)
    compared = []
    for i, j in pairs:
        ea, eb = entries[i], entries[j]
        fa, fb = load(ea.content_hash), load(eb.content_hash)
        result = compare_fingerprints(fa, fb)
        row = {"i": i, "j": j, "pair_verdict": result["verdict"], "p_value": result["p_value"],
               "strength": _strength(result)}
        if result["verdict"] == "derived":
            row["direction"] = D.infer(fa, fb, result)
        compared.append(row)
        tracker.step(f"{ea.name} vs {eb.name}")
    for row, adjusted in zip(compared, holm([r["p_value"] for r in compared], len(compared))):
        row["p_value_corrected"] = adjusted
    return compared


def assemble(entries, compared, pairs_rule: str = "") -> dict:
    """The tree document from compared pairs (compare_pairs): candidate edges, then the forest.

    Args:
        entries: the Entries in the tree.
        compared: compare_pairs' rows.
        pairs_rule: how the pairs were chosen, in words.
    Returns:
        The index_tree document (docs/SCHEMAS.md).
    """
    derived = [r for r in compared if r["pair_verdict"] == "derived" and r["p_value_corrected"] is not None
               and r["p_value_corrected"] <= DECISION["alpha_derived"]]
    return {"schema_version": SCHEMA_VERSIONS["index_tree"], "tool": tool_record(),
            "nodes": [{"name": e.name, "content_hash": e.content_hash, "role": e.role, "family": e.family,
                       "layers": e.layers, "released": e.released} for e in entries],
            "edges": _forest(entries, derived), "compared": len(compared), "derived_pairs": len(derived),
            "pairs_rule": pairs_rule, "correction": "holm", "attach_order": list(ATTACH_ORDER)}


def build_tree(store, progress: bool = False, exhaustive_up_to: int = EXHAUSTIVE_UP_TO,
               neighbours: int = NEIGHBOURS) -> dict:
    """The lineage forest of an index.

    Args:
        store: an open index Store.
        progress: progress lines on stderr.
        exhaustive_up_to: compare every pair up to this many entries; beyond, pre-filter neighbours only.
        neighbours: pre-filter neighbours per model for large indexes.
    Returns:
        The tree document (docs/INDEX.md): nodes, edges (strongest first: a, b, parent, strength, p_value,
        p_value_corrected, attached_by, direction_evidence), derived_pairs, compared, pairs_rule, seconds,
        schema_version.
    """
    entries = store.entries()
    pairs, rule = candidate_pairs(store, entries, exhaustive_up_to, neighbours)
    t0 = time.perf_counter()
    doc = assemble(entries, compare_pairs(store, entries, pairs, progress), rule)
    doc["seconds"] = time.perf_counter() - t0
    return doc


def _forest(entries, derived) -> list[dict]:
    """Greedy attachment in ATTACH_ORDER with a union-find: each model gets at most one parent, no cycles."""
    base_strength: dict[int, float] = {}  # each model's strongest derived relation to a declared base
    for r in derived:
        for child, parent in ((r["i"], r["j"]), (r["j"], r["i"])):
            if entries[parent].role == "base" and entries[child].role != "base":
                base_strength[child] = max(base_strength.get(child, 0.0), r["strength"])
    proposals = []
    for r in derived:
        parent_side = r["direction"]["parent"]
        for child, parent in ((r["i"], r["j"]), (r["j"], r["i"])):
            side_of_parent = "a" if parent == r["i"] else "b"
            if parent_side is not None and parent_side != side_of_parent:
                continue  # never hang a model below its structural child
            key = _attach_key(entries[child], entries[parent], r["strength"], base_strength.get(child))
            proposals.append((key, child, parent, r))
    proposals.sort(key=lambda p: p[0])
    root = list(range(len(entries)))

    def find(x):
        while root[x] != x:
            root[x] = root[root[x]]
            x = root[x]
        return x

    has_parent, edges = set(), []
    for key, child, parent, r in proposals:
        if child in has_parent or find(child) == find(parent):
            continue
        root[find(child)] = find(parent)
        has_parent.add(child)
        directed = r["direction"]["parent"] is not None
        edges.append({"a": entries[parent].name, "b": entries[child].name,
                      "a_hash": entries[parent].content_hash, "b_hash": entries[child].content_hash,
                      "parent": entries[parent].name if directed else None,
                      "strength": r["strength"], "p_value": r["p_value"], "p_value_corrected": r["p_value_corrected"],
                      "attached_by": ATTACH_ORDER[0] if key[0] == 0 else ATTACH_ORDER[1] if key[1] == 0 else ATTACH_ORDER[2],
                      "direction_evidence": r["direction"]["evidence"]})
    edges.sort(key=lambda e: -e["strength"])
    return edges
