"""One-to-many search: rank every indexed model with the pre-filter, confirm the top K with the full
lineage comparison, and correct the p-values for the number of indexed models searched.

Multiplicity: a search over N indexed models is N tests, whether or not the pre-filter let a model
through to confirmation. Holm's step-down procedure is applied over all N, with the models the
pre-filter did not send to confirmation counted at p = 1 (a valid, conservative choice: the
pre-filter's selection looked at all N). A candidate is reported `derived` only when its pair
verdict is `derived` and its Holm-corrected p-value is at most the decision rule's alpha_derived;
a derived pair verdict that does not survive the correction is reported `inconclusive`.
"""
from __future__ import annotations

import time

import numpy as np

from ..lineage import DECISION, compare_fingerprints
from ..progress import Progress
from ..schemas import SCHEMA_VERSIONS, tool_record
from . import direction as D
from . import summary as S

DEFAULT_TOP = 10
CORRECTION = "holm"
VERDICT_ORDER = {"derived": 0, "inconclusive": 1, "independent": 2}


def prefilter_scores(query: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Pre-filter similarity of the query summary to every row: minus the root-mean-square difference
    over the coordinates both define (NaN marks a matrix a model lacks). Higher is closer.

    Args:
        query: float32 [DIMENSION].
        matrix: float32 [entries, DIMENSION].
    Returns:
        float64 [entries]; -inf for rows sharing no defined coordinate with the query.
    """
    if matrix.shape[0] == 0:
        return np.zeros(0)
    both = np.isfinite(matrix) & np.isfinite(query)[None, :]
    diff = np.where(both, matrix - np.nan_to_num(query)[None, :], 0.0)
    counts = both.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = -np.sqrt(np.einsum("ij,ij->i", diff, diff, dtype=np.float64) / counts)
    score[counts == 0] = -np.inf
    return score


def holm(p_values: list[float | None], searched: int) -> list[float | None]:
    """Holm-adjusted p-values over `searched` tests, of which these are the confirmed ones (the rest count as
    p = 1). None stays None (a comparison without a calibrated p-value).

    Args:
        p_values: p-values of the confirmed candidates.
        searched: number of tests in the family (every indexed model searched), >= len(p_values).
    Returns:
        adjusted p-values in the input order.
    """
    order = sorted((p, k) for k, p in enumerate(p_values) if p is not None)
    out: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, k) in enumerate(order):
        running = max(running, min(1.0, (searched - rank) * p))
        out[k] = running
    return out


def rank_prefilter(store, query_fp) -> dict:
    """The pre-filter alone: every indexed model (except the query's own content hash) ranked by summary
    similarity, with the time it took (reading the summaries from the store included).

    Args:
        store: the open index.
        query_fp: the query's Fingerprint.
    Returns:
        {"ranked": [(content hash, name, score)] best first, "query_indexed": whether the query itself is
        indexed, "seconds"}.
    """
    t0 = time.perf_counter()
    ids, hashes, names, matrix = store.summaries()
    own = query_fp.model()["content_hash"]
    keep = [k for k, h in enumerate(hashes) if h != own]
    q = S.summarize(query_fp)
    scores = prefilter_scores(q, matrix[keep]) if keep else np.zeros(0)
    order = np.argsort(-scores, kind="stable")
    ranked = [(hashes[keep[k]], names[keep[k]], float(scores[k])) for k in order]
    return {"ranked": ranked, "query_indexed": len(keep) < len(hashes), "seconds": time.perf_counter() - t0}


def search(store, query_fp, top: int = DEFAULT_TOP, progress: bool = False) -> dict:
    """Which indexed model is the query derived from?

    Args:
        store: an open index Store.
        query_fp: the query's Fingerprint.
        top: how many pre-filter candidates to confirm with the full comparison (0: all of them).
        progress: progress lines on stderr.
    Returns:
        The search document (docs/INDEX.md): query, candidates [{name, content_hash, verdict, pair_verdict,
        p_value, p_value_corrected, rank, prefilter_rank, prefilter_score, reason, direction}], searched,
        confirmed, correction, prefilter_seconds, confirm_seconds, query_indexed, schema_version.
    """
    pre = rank_prefilter(store, query_fp)
    ranked = pre["ranked"]
    chosen = ranked if top <= 0 else ranked[:top]
    tracker = Progress(len(chosen), "confirm", progress)
    t0 = time.perf_counter()
    rows = []
    for pre_rank, (content_hash, name, score) in enumerate(chosen, 1):
        candidate = store.fingerprint(content_hash)
        result = compare_fingerprints(candidate, query_fp)  # A: the indexed model, B: the query
        rows.append({"name": name, "content_hash": content_hash, "pair_verdict": result["verdict"],
                     "p_value": result["p_value"], "prefilter_rank": pre_rank, "prefilter_score": score,
                     "reason": result["reason"], "direction": _direction(candidate, query_fp, result)})
        tracker.step(name)
    confirm_seconds = time.perf_counter() - t0
    for row, adjusted in zip(rows, holm([r["p_value"] for r in rows], len(ranked))):
        row["p_value_corrected"] = adjusted
        derived = row["pair_verdict"] == "derived" and adjusted is not None and adjusted <= DECISION["alpha_derived"]
        row["verdict"] = "derived" if derived else ("inconclusive" if row["pair_verdict"] == "derived" else row["pair_verdict"])
    rows.sort(key=lambda r: (VERDICT_ORDER[r["verdict"]], 1.0 if r["p_value_corrected"] is None else r["p_value_corrected"],
                             -r["prefilter_score"]))
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    model = query_fp.model()
    return {"schema_version": SCHEMA_VERSIONS["index_search"], "tool": tool_record(),
            "query": {"name": model.get("label"), "content_hash": model["content_hash"], "family": model.get("family"),
                      "layers": query_fp.num_layers},
            "candidates": rows, "searched": len(ranked), "confirmed": len(rows), "correction": CORRECTION,
            "alpha_derived": DECISION["alpha_derived"], "query_indexed": pre["query_indexed"],
            "prefilter_seconds": pre["seconds"], "confirm_seconds": confirm_seconds}


def _direction(candidate, query_fp, result) -> dict:
    """Structural direction (direction.py) in search terms: 'candidate' (the indexed model is the parent),
    'query', or None; only for derived pairs."""
    if result["verdict"] != "derived":
        return {"parent": None, "evidence": ["no lineage evidence"]}
    d = D.infer(candidate, query_fp, result)
    return {"parent": {"a": "candidate", "b": "query"}.get(d["parent"]), "evidence": d["evidence"]}
