"""Neuron matching at real widths: candidate pruning, an exact sparse assignment, and a dual certificate.

Small problems (fewer rows than `exact_below`) get scipy's dense LSAP, exactly as `assignment.match` does.
Larger ones are pruned and then proved:

1. Candidates: each row's top-k and each column's top-4 similarities. The similarity is computed with torch
   on its inputs' device, one [block, m] slab of rows at a time; the slabs are kept (on that device) when the
   whole matrix fits in `keep_bytes`, else recomputed on each pass. A 13824-wide float32 matrix is 764 MB: kept
   under the default budget, because on a CPU the descriptor product costs far more than holding its result.
2. Feasibility: when the candidate graph has no full matching, a maximum matching on it is completed
   greedily (each unmatched row, in order, takes its most similar free column) and those pairs become
   candidates. They only make the sparse problem solvable; step 4 decides optimality.
3. The exact sparse LSAP on the candidate graph (scipy's LAPJVsp, min_weight_full_bipartite_matching).
4. A certificate. Column potentials v come from shortest paths in the candidate graph's residual network
   (vectorised Bellman-Ford); u_i = max_j (s_ij - v_j) over every column makes (u, v) dual feasible for the
   dense problem, so sum(u) + sum(v) (with the rectangular problem's unmatched columns priced at min v) is an
   upper bound on the exact optimum. A pair with s_ij - v_j above the row's matched value becomes a candidate
   and the sparse problem is solved again (column generation). When no pair exceeds it the bound equals the
   objective: the assignment is an exact optimum of the dense problem. If the round limit comes first, the
   bound says how far from the optimum it can be.

Rows must not outnumber columns (transpose first): every row is matched, columns at most once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import scipy.sparse as sp
import torch
from scipy.optimize import linear_sum_assignment
from scipy.sparse.csgraph import maximum_bipartite_matching, min_weight_full_bipartite_matching

from .assignment import Parts, part_similarity  # noqa: F401 (part_similarity: the similarity the slabs hold)

EXACT_BELOW = 2048        # rows below which the dense LSAP runs as it is (memory n*m*8 bytes, time fine)
CANDIDATES = 16           # top-k per row
COLUMN_CANDIDATES = 4     # top-k per column (0: none); about 1 s at 13824 wide on a CPU thread, a round saved
BLOCK_ROWS = 1024         # rows of the similarity computed at once
KEEP_BYTES = 1 << 30      # keep the whole similarity when it fits in this (float32)
MAX_ROUNDS = 8            # column-generation rounds before giving up on a proof
ADD_PER_ROW = 8           # violating columns added per row and round
SLACK = 0.02              # pairs within this (similarity units) of violating join the violators: fewer rounds
TOLERANCE = 1e-9          # a reduced similarity above this is a violation (float32 inputs, float64 sums)
POTENTIAL_SWEEPS = 20000  # Bellman-Ford sweeps (each O(edges)); stops early when potentials settle

SlabFn = Callable[[int, int], torch.Tensor]


@dataclass
class Assignment:
    """A one-to-one matching of rows into columns, and how it was found.

    Attributes:
        rows, cols: matched index pairs (rows sorted, every row present).
        similarity: the matched similarities, float64.
        method: "exact-dense" (scipy LSAP on the full matrix) or "pruned-sparse".
        objective: sum of matched similarities.
        bound: an upper bound on the exact optimum (equal to objective for exact-dense).
        certified_optimal: the bound meets the objective within tolerance: no assignment scores higher.
        candidates: k, the candidate columns per row at the start (0 for exact-dense).
        edges: pairs in the final candidate graph.
        rounds: sparse solves done (1 + column-generation rounds).
        passes: pricing passes over the full similarity matrix.
        completed: rows whose candidates had to be completed for a full matching to exist.
    """

    rows: np.ndarray
    cols: np.ndarray
    similarity: np.ndarray
    method: str
    objective: float
    bound: float
    certified_optimal: bool
    candidates: int = 0
    edges: int = 0
    rounds: int = 0
    passes: int = 0
    completed: int = 0

    @property
    def gap(self) -> float:
        """How far below the exact optimum this assignment can be (0 when certified)."""
        return max(0.0, self.bound - self.objective)

    def summary(self) -> dict:
        return {"method": self.method, "objective": self.objective, "bound": self.bound, "gap": self.gap,
                "certified_optimal": self.certified_optimal, "candidates": self.candidates, "edges": self.edges,
                "rounds": self.rounds, "passes": self.passes, "completed_rows": self.completed}


class _Slabs:
    """The similarity matrix, row block by row block, kept when small enough."""

    def __init__(self, slab: SlabFn, n: int, m: int, block: int, keep_bytes: int):
        self.slab, self.n, self.m, self.block = slab, n, m, block
        self.keep = n * m * 4 <= keep_bytes  # float32 size; a float64 matrix is kept under the same test
        self.cache: dict[int, torch.Tensor] = {}
        self.magnitudes: dict[int, float] = {}

    def magnitude(self, r0: int) -> float:
        """max |s| over the slab starting at row r0 (after it was produced once)."""
        return self.magnitudes[r0]

    def __iter__(self):
        for r0 in range(0, self.n, self.block):
            if r0 in self.cache:
                yield r0, self.cache[r0]
                continue
            s = self.slab(r0, min(self.n, r0 + self.block))
            if s.dtype != torch.float64:  # float64 inputs stay exact (the lineage path's profiles are float64)
                s = s.float()
            if r0 not in self.magnitudes:
                lo, hi = torch.aminmax(s)  # max |s| without an |s| copy of the slab
                self.magnitudes[r0] = max(-float(lo), float(hi))
            if self.keep:
                self.cache[r0] = s
            yield r0, s

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """Full rows `idx` as float64 [len(idx), m]."""
        out = np.empty((len(idx), self.m))
        for r0, s in self:
            hit = (idx >= r0) & (idx < r0 + s.shape[0])
            if hit.any():
                out[hit] = s[torch.as_tensor(idx[hit] - r0, device=s.device)].double().cpu().numpy()
        return out


def match_slabs(slab: SlabFn, n: int, m: int, *, k: int = CANDIDATES, exact_below: int = EXACT_BELOW,
                block: int = BLOCK_ROWS, keep_bytes: int = KEEP_BYTES, max_rounds: int = MAX_ROUNDS) -> Assignment:
    """Maximum-similarity one-to-one matching of n rows into m >= n columns.

    Args:
        slab: slab(r0, r1) -> [r1 - r0, m] similarities of rows r0..r1 to every column (any device).
        n, m: rows and columns.
        k: candidate columns per row (each column also gets its best min(k, COLUMN_CANDIDATES) rows).
        exact_below: below this many rows, the dense LSAP on the full matrix.
        block: rows per slab.
        keep_bytes: keep the whole float32 similarity in memory when it fits.
        max_rounds: column-generation rounds before stopping without a proof.
    Returns:
        The Assignment, with its method and certificate.
    """
    if n > m:
        raise ValueError(f"{n} rows cannot be matched one-to-one into {m} columns: transpose the problem")
    slabs = _Slabs(slab, n, m, block, keep_bytes)
    if n < exact_below or n == 0:
        sim = np.concatenate([s.double().cpu().numpy() for _, s in slabs]) if n else np.zeros((0, m))
        rows, cols = linear_sum_assignment(sim, maximize=True)
        vals = sim[rows, cols]
        obj = float(vals.sum())
        return Assignment(rows, cols, vals, "exact-dense", obj, obj, True, rounds=1)
    k = max(1, min(k, m))
    edges, completed = _complete(slabs, _candidates(slabs, k))
    solves = passes = 0
    while True:
        rows, cols, vals, indptr = _solve(edges, n, m)
        solves += 1
        v = _potentials(edges, indptr, cols, vals, m)
        u = vals - v[cols]
        obj = float(vals.sum())
        bound_u, violating = _price(slabs, v, cols, u)
        passes += 1
        vmin = float(v.min()) if n < m else 0.0
        bound = float(bound_u.sum() + v.sum() - (m - n) * vmin)
        certified = violating is None
        if certified or passes > max_rounds:
            break
        grown = _merge(edges, violating, m)
        if len(grown[0]) == len(edges[0]):  # potentials did not settle: nothing new to add, no proof
            break
        edges = grown
    return Assignment(rows, cols, vals, "pruned-sparse", obj, max(bound, obj), certified, candidates=k,
                      edges=len(edges[0]), rounds=solves, passes=passes, completed=completed)


def _top_per_row(r, c, e, s):
    """Of the pairs (r, c) with excess e and similarity s, the ADD_PER_ROW with the largest excess in each row."""
    order = np.lexsort((-e, r))  # by row, most violating first
    r, c, s = r[order], c[order], s[order]
    keep = (np.arange(len(r)) - np.searchsorted(r, r, side="left")) < ADD_PER_ROW
    return r[keep], c[keep], s[keep]


def _candidates(slabs: _Slabs, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row top-k and column top pairs, deduplicated: (rows, cols, similarities)."""
    m = slabs.m
    rr, rc, rv = [], [], []
    col_v = col_i = None
    for r0, s in slabs:
        v, j = s.topk(k, dim=1)
        rr.append((torch.arange(s.shape[0], device=s.device) + r0).repeat_interleave(k))
        rc.append(j.reshape(-1))
        rv.append(v.reshape(-1))
        kc = min(COLUMN_CANDIDATES, k, s.shape[0])
        if kc:
            cv, ci = s.T.contiguous().topk(kc, dim=1)  # transposed first: a row-wise top-k is several times faster
            cv, ci = cv.T, ci.T + r0
            if col_v is not None:
                cv, ci = torch.cat([col_v, cv]), torch.cat([col_i, ci])
            col_v, order = cv.topk(min(kc, cv.shape[0]), dim=0)
            col_i = ci.gather(0, order)
    if col_v is not None:
        rr.append(col_i.reshape(-1))
        rc.append(torch.arange(m, device=col_v.device).expand_as(col_i).reshape(-1))
        rv.append(col_v.reshape(-1))
    r = torch.cat(rr).cpu().numpy()
    c = torch.cat(rc).cpu().numpy()
    v = torch.cat(rv).double().cpu().numpy()
    return _dedupe(r, c, v, m)


def _complete(slabs: _Slabs, edges):
    """Make a full matching exist in the candidate graph (in place of a larger k): a maximum matching,
    completed greedily by similarity on the full rows of the rows it leaves unmatched.
    Returns (edges with the completing pairs added, rows completed)."""
    r, c, _ = edges
    n, m = slabs.n, slabs.m
    graph = sp.csr_array((np.ones(len(r)), (r, c)), shape=(n, m))
    mate = maximum_bipartite_matching(graph, perm_type="column")  # row -> column, or -1
    lonely = np.flatnonzero(mate < 0)
    if not len(lonely):
        return edges, 0
    free = np.ones(m, bool)
    free[mate[mate >= 0]] = False
    full = slabs.rows(lonely)
    add = np.empty(len(lonely), np.int64)
    for t in range(len(lonely)):
        add[t] = int(np.where(free, full[t], -np.inf).argmax())
        free[add[t]] = False
    return _merge(edges, (lonely, add, full[np.arange(len(lonely)), add]), m), len(lonely)


def _solve(edges, n: int, m: int):
    """Exact LSAP on the candidate graph: (rows, cols, matched similarities, row pointers of the edge list)."""
    r, c, v = edges
    # LAPJVsp wants non-zero weights: shift them positive (every row is matched, so the optimum is unchanged)
    w = v - v.min() + 1.0
    graph = sp.csr_array((w, (r, c)), shape=(n, m))
    rows, cols = min_weight_full_bipartite_matching(graph, maximize=True)
    keys = r.astype(np.int64) * m + c  # sorted: _dedupe returns edges in row-major order
    vals = v[np.searchsorted(keys, rows.astype(np.int64) * m + cols)]
    indptr = np.searchsorted(r, np.arange(n + 1))
    return rows, cols, vals, indptr


def _potentials(edges, indptr, cols, vals, m: int) -> np.ndarray:
    """Column potentials v with v[cols[i]] <= v[j] + vals[i] - s_ij on every candidate edge (i, j): shortest
    distances in the residual network of an optimal candidate assignment (no negative cycle exists), by
    vectorised Bellman-Ford sweeps. Unmatched columns of a rectangular problem sit at the minimum (they are
    matched to dummy rows of constant similarity)."""
    _, c, s = edges
    n = len(cols)
    v = np.zeros(m)
    unmatched = np.ones(m, bool)
    unmatched[cols] = False
    rect = unmatched.any()
    for _ in range(POTENTIAL_SWEEPS):
        best = np.minimum.reduceat(v[c] - s, indptr[:-1]) + vals
        new = np.minimum(v[cols], best)
        moved = float((v[cols] - new).max()) if n else 0.0
        v[cols] = new
        if rect:
            low = v.min()
            moved = max(moved, float((v[unmatched] - low).max()))
            v[unmatched] = low
        if moved <= TOLERANCE * 1e-3:
            break
    return v


def _price(slabs: _Slabs, v: np.ndarray, cols: np.ndarray, u_matched: np.ndarray):
    """One pass over the full similarity: u_i = max_j (s_ij - v_j) for every row, and the pairs whose reduced
    similarity exceeds the row's matched one (the most violating ADD_PER_ROW per row).

    The pass screens in float32 and settles in float64: a pair whose float32 excess over the row's matched
    reduced similarity is below -margin (far beyond float32 rounding) cannot raise u_i above u_matched[i] nor
    violate; only the other pairs (violators and near-ties, few) are recomputed in float64."""
    rows, cols_hit, excess_hit, sims = [], [], [], []
    v64 = vt = um = None
    scale = 1.0 + float(np.abs(v).max()) + float(np.abs(u_matched).max())
    for r0, s in slabs:
        r1 = r0 + s.shape[0]
        if vt is None:
            v64 = torch.as_tensor(v, device=s.device)
            vt = v64.float()
            um64 = torch.as_tensor(u_matched, device=s.device)
            um = um64.float()
        # float32 error of s - v - u is a few ulps of the operands' magnitude; the margin is far above it
        margin = 64 * float(np.finfo(np.float32).eps) * (scale + slabs.magnitude(r0))
        excess = s - vt
        excess -= um[r0:r1, None]
        excess[torch.arange(r1 - r0, device=s.device), torch.as_tensor(cols[r0:r1], device=s.device)] = -torch.inf
        i, j = torch.nonzero(excess > -max(margin, SLACK), as_tuple=True)
        del excess
        if len(i):
            val = s[i, j]
            rows.append((i + r0).cpu().numpy())
            cols_hit.append(j.cpu().numpy())
            excess_hit.append((val.double() - v64[j] - um64[i + r0]).cpu().numpy())
            sims.append(val.double().cpu().numpy())
    bound_u = u_matched.copy()
    if not rows:
        return bound_u, None
    r, c, e, sv = (np.concatenate(x) for x in (rows, cols_hit, excess_hit, sims))
    np.maximum.at(bound_u, r, u_matched[r] + e)
    if not (e > TOLERANCE).any():
        return bound_u, None
    near = e > -SLACK  # violators, and with a slack the pairs about to become violators
    return bound_u, _top_per_row(r[near], c[near], e[near], sv[near])


def _dedupe(r, c, v, m):
    """Unique (row, col) pairs, sorted row-major."""
    _, first = np.unique(r.astype(np.int64) * m + c, return_index=True)
    return r[first].astype(np.int64), c[first].astype(np.int64), v[first].astype(np.float64)


def _merge(edges, extra, m: int):
    return _dedupe(*(np.concatenate([a, b]) for a, b in zip(edges, extra)), m)


def _rows(parts: Parts, r0: int, r1: int) -> Parts:
    return [t[r0:r1] for t in parts[0]], [t[r0:r1] for t in parts[1]]


def _count(parts: Parts) -> int:
    return (list(parts[0]) + list(parts[1]))[0].shape[0]


def match_parts(a: Parts, b: Parts, **options) -> Assignment:
    """Match A's neurons one-to-one into B's by `part_similarity`, computed slab by slab on the parts' device.

    Args:
        a, b: descriptor parts (see part_similarity); A must not have more neurons than B.
        options: as match_slabs (k, exact_below, block, keep_bytes, max_rounds).
    Returns:
        The Assignment.
    """
    return match_slabs(lambda r0, r1: part_similarity(_rows(a, r0, r1), b), _count(a), _count(b), **options)


def match_groups(groups: Sequence[Parts], b: Parts, *, progress: Callable[[int], None] | None = None,
                 **options) -> list[Assignment]:
    """Many-to-one matching: each group (an expert's neurons) matched one-to-one into B (the dense FFN's),
    independently, so two experts may take the same dense neuron (upcycled experts overlap).

    Args:
        groups: per group, descriptor parts.
        b: the dense side's parts.
        progress: called with the number of groups done after each.
        options: as match_slabs.
    Returns:
        One Assignment per group.
    """
    out = []
    for g, parts in enumerate(groups):
        out.append(match_parts(parts, b, **options))
        if progress is not None:
            progress(g + 1)
    return out
