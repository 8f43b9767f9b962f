"""Index benchmark: one-to-many search, family trees and the pre-filter at scale, on the lineage zoo.

1. Search: an index of the zoo's bases (declared base models) and independent controls; every
   derived model searches it. Printed: whether the base each derivative descends from ranks first with the
   verdict `derived` (after Holm's correction over the index), and every `derived` candidate an
   independent model (a control, or a base searching the others) receives.
2. Tree: an index of bases, controls and every derivative; `index tree` over it. Printed: edge
   precision and recall against the zoo's parent-child edges (a derivative made from another derivative,
   like pangu_rotate from pangu, has that derivative as its parent), how many edges got a direction and how
   many of those are right; and, as a baseline from the same comparisons, the forest without the
   declared-base metadata (attachment by strength of evidence alone).
3. Scale: the search index plus N synthetic entries (default 10,000). A synthetic entry is a summary
   vector drawn from a Gaussian with the mean and (shrunk) covariance of the real independent models'
   summaries, stored as a row of the same SQLite table (with an empty fingerprint: it is never
   confirmed). Printed: the pre-filter's time over the whole index (reading the summaries included),
   against the time an exhaustive confirmation would take (one full comparison measured in this run,
   times N), and the pre-filter's recall of the true parent (the candidate the exhaustive comparison
   finds) at several K.

    python benchmarks/index_search.py [--seeds 3] [--synthetic 10000] [--out benchmarks/results/index_search_cpu.json]

Exits 1 when a derivative's parent is not first and derived, or an independent model gets a derived candidate.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import provenance
from provenance.backends import get_backend
from provenance.atomic import write_json
from provenance.fingerprint import fingerprint_model
from provenance.index import Store
from provenance.index import summary as S
from provenance.index.search import rank_prefilter, search
from provenance.index.store import utc_now
from provenance.index.tree import assemble, candidate_pairs, compare_pairs
from provenance.lineage import compare_fingerprints
from provenance.zoo import TRANSFORMS, build

SCHEMA_VERSION = "1.0"
RECALL_AT = (1, 5, 10, 50, 100)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def zoo_names(seeds):
    bases = [f"base-s{s}" for s in seeds]
    controls = [f"base-s{s}-{t}" for s in seeds for t, spec in TRANSFORMS.items() if spec.independent]
    derived = [f"base-s{s}-{t}" for s in seeds for t, spec in TRANSFORMS.items() if not spec.independent]
    return bases, controls, derived


def parent_of(name: str) -> str:
    """The base a zoo model descends from (the indexed ancestor a search must find)."""
    return "-".join(name.split("-")[:2])


def immediate_parent(name: str) -> str:
    """The model a derivative was made from: its base, or the derivative its transform starts from (a tree edge)."""
    source = TRANSFORMS[name.split("-", 2)[2]].source
    return f"{parent_of(name)}-{source}" if source else parent_of(name)


def _index(db: Path, fps: dict, bases, others):
    store = Store(db, create=True)
    origin = store.origin("local", {"tool": "provenance", "tool_version": provenance.__version__, "benchmark": "index_search"})
    for name in bases:
        store.add(fps[name], origin_id=origin, role="base")
    for name in others:
        store.add(fps[name], origin_id=origin)
    return store


# --- 1. search -------------------------------------------------------------------------------------

def search_section(store, fps, derived, independent, top):
    rows, false_derived = [], []
    for name in derived:
        r = search(store, fps[name], top=top)
        first = r["candidates"][0] if r["candidates"] else {}
        rows.append({"query": name, "parent": parent_of(name), "first": first.get("name"), "verdict": first.get("verdict"),
                     "p_value_corrected": first.get("p_value_corrected"), "ok": first.get("name") == parent_of(name)
                     and first.get("verdict") == "derived",
                     "direction": first.get("direction", {}).get("parent"),
                     "other_derived": [c["name"] for c in r["candidates"][1:] if c["verdict"] == "derived"]})
    for name in independent:
        r = search(store, fps[name], top=top)
        false_derived += [{"query": name, "candidate": c["name"], "p_value_corrected": c["p_value_corrected"]}
                          for c in r["candidates"] if c["verdict"] == "derived"]
    return {"queries": rows, "parent_first_and_derived": sum(r["ok"] for r in rows), "derived_queries": len(rows),
            "independent_queries": len(independent), "false_derived": false_derived}


# --- 2. tree ---------------------------------------------------------------------------------------

def _score_tree(doc, truth):
    edges = {frozenset((e["a"], e["b"])): e for e in doc["edges"]}
    right = [k for k in edges if k in truth]
    directed = [e for e in doc["edges"] if e["parent"] is not None]
    return {"edges": len(edges), "true_edges": len(truth), "right": len(right),
            "precision": len(right) / len(edges) if edges else None, "recall": len(right) / len(truth),
            "false_edges": sorted(" -- ".join(sorted(k)) for k in edges if k not in truth),
            "missed": sorted(" -- ".join(sorted(k)) for k in truth if k not in edges),
            "directed": len(directed), "directed_right": sum(frozenset((e["a"], e["b"])) in truth and e["parent"] ==
                                                             immediate_parent(e["b"] if e["parent"] == e["a"] else e["a"])
                                                             for e in directed)}


def tree_section(store, derived):
    entries = store.entries()
    pairs, rule = candidate_pairs(store, entries)
    t0 = time.perf_counter()
    compared = compare_pairs(store, entries, pairs, progress=True)
    seconds = time.perf_counter() - t0
    truth = {frozenset((immediate_parent(n), n)) for n in derived}
    declared = _score_tree(assemble(entries, compared, rule), truth)
    plain = [dataclasses.replace(e, role="model") for e in entries]
    weights_only = _score_tree(assemble(plain, compared, rule), truth)
    return {"models": len(entries), "compared": len(compared), "compare_seconds": seconds, "pairs_rule": rule,
            "with_declared_bases": declared, "weights_only_baseline": weights_only}


# --- 3. scale --------------------------------------------------------------------------------------

def synthetic_summaries(real: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """n vectors from a Gaussian with the real summaries' mean and covariance, shrunk toward its diagonal."""
    mu = real.mean(axis=0)
    cov = np.cov(real, rowvar=False)
    cov = 0.9 * cov + 0.1 * np.diag(np.diag(cov)) + 1e-8 * np.eye(len(mu))
    return np.random.default_rng(seed).multivariate_normal(mu, cov, size=n, method="eigh").astype(np.float32)


def add_synthetic(store, vectors: np.ndarray) -> None:
    origin = store.origin("local", {"tool": "provenance", "synthetic": True})
    rows = [(f"{'f' * 16}{k:048x}", f"synthetic-{k}", "model", "synthetic", "synthetic", 0, "{}", None, None, None, "{}",
             provenance.__version__, utc_now(), origin, S.SUMMARY_VERSION, v.astype("<f4").tobytes(), "0" * 64, b"")
            for k, v in enumerate(vectors)]
    with store.transaction():
        store.conn.executemany(
            "INSERT INTO entries(content_hash, name, role, family, format, layers, facts, source, released, fingerprinted_by, "
            "backend, tool_version, added_at, origin_id, summary_version, summary, fingerprint_sha256, fingerprint) "
            "VALUES (" + ", ".join("?" * 18) + ")", rows)


def scale_section(store, fps, derived, independent, n):
    real = np.stack([S.summarize(fps[name]) for name in independent])
    add_synthetic(store, synthetic_summaries(real, n))
    times, ranks = [], []
    for name in derived:
        pre = rank_prefilter(store, fps[name])
        times.append(pre["seconds"])
        ranks.append(next(k for k, (_, cand, _) in enumerate(pre["ranked"], 1) if cand == parent_of(name)))
    # the baseline: what confirming every indexed model would cost, from full comparisons measured here
    t0 = time.perf_counter()
    sample = derived[:6]
    for name in sample:
        compare_fingerprints(fps[parent_of(name)], fps[name])
    one = (time.perf_counter() - t0) / len(sample)
    entries = len(store)
    return {"indexed": entries, "synthetic": n, "prefilter_seconds_median": statistics.median(times),
            "prefilter_seconds_max": max(times), "full_comparison_seconds": one,
            "exhaustive_seconds_estimate": one * entries, "speedup": one * entries / statistics.median(times),
            "parent_rank": dict(zip(derived, ranks)),
            "recall_at": {k: sum(r <= k for r in ranks) / len(ranks) for k in RECALL_AT}}


# --- report ----------------------------------------------------------------------------------------

def render(doc) -> str:
    s, t, x = doc["search"], doc["tree"], doc["scale"]
    lines = [f"## Search: {s['derived_queries']} derived queries against {doc['search_index']} indexed models "
             f"(bases and independent controls), top {doc['top']} confirmed, Holm over the index", "",
             "| derived model | true parent | first candidate | verdict | corrected p | direction |", "|---|---|---|---|---|---|"]
    for r in s["queries"]:
        p = "n/a" if r["p_value_corrected"] is None else f"{r['p_value_corrected']:.2g}"
        lines.append(f"| {r['query']} | {r['parent']} | {r['first']}{'' if r['ok'] else ' (WRONG)'} | {r['verdict']} | {p} | "
                     f"{r['direction'] or ''} |")
    lines += ["", f"True parent first with verdict derived: {s['parent_first_and_derived']}/{s['derived_queries']}.",
              f"Independent queries (controls and bases): {s['independent_queries']}; `derived` candidates given to them: "
              f"{len(s['false_derived'])}.", ""]
    for label, key in (("with declared bases", "with_declared_bases"), ("weights only (baseline)", "weights_only_baseline")):
        v = t[key]
        prec = "n/a" if v["precision"] is None else f"{v['precision']:.3f}"
        lines.append(f"Tree {label}: {v['edges']} edges, {v['right']} right of {v['true_edges']} true: precision {prec}, "
                     f"recall {v['recall']:.3f}; directions given on {v['directed']} edges, {v['directed_right']} right.")
    lines += [f"Tree: {t['models']} models, {t['compared']} pairs compared in {t['compare_seconds']:.1f} s ({t['pairs_rule']}).", "",
              f"## Scale: {x['indexed']} indexed ({x['synthetic']} synthetic summaries)", "",
              f"Pre-filter over the whole index: median {x['prefilter_seconds_median'] * 1000:.1f} ms, max "
              f"{x['prefilter_seconds_max'] * 1000:.1f} ms per query (summaries read from SQLite included).",
              f"Baseline, exhaustive confirmation: one full comparison {x['full_comparison_seconds'] * 1000:.0f} ms, "
              f"x {x['indexed']} = {x['exhaustive_seconds_estimate']:.0f} s; the pre-filter is {x['speedup']:.0f}x faster.",
              "Pre-filter recall of the true parent: " + ", ".join(f"@{k} {v:.2f}" for k, v in x["recall_at"].items()) + "."]
    worst = sorted(x["parent_rank"].items(), key=lambda kv: -kv[1])[:6]
    lines.append("Lowest-ranked parents: " + ", ".join(f"{q} (rank {r})" for q, r in worst) + ".")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--synthetic", type=int, default=10_000)
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--out", type=Path, default=None, help="write the JSON document here")
    args = ap.parse_args(argv)
    if args.seeds < 2:
        ap.error("--seeds must be at least 2")
    seeds = list(range(args.seeds))
    bases, controls, derived = zoo_names(seeds)
    cpu = get_backend("cpu")
    fps, t0 = {}, time.time()
    for k, name in enumerate(bases + controls + derived, 1):
        fps[name] = fingerprint_model(build(name), cpu, label=name)
        _log(f"[model {k}/{len(bases) + len(controls) + len(derived)} {time.time() - t0:6.1f}s] {name}")
    with tempfile.TemporaryDirectory(prefix="index-bench-") as tmp:
        store = _index(Path(tmp) / "search.db", fps, bases, controls)
        n_search = len(store)
        search_doc = search_section(store, fps, derived, controls + bases, args.top)
        _log("[search done]")
        scale_doc = scale_section(store, fps, derived, bases + controls, args.synthetic)
        store.close()
        _log("[scale done]")
        tree_store = _index(Path(tmp) / "tree.db", fps, bases, controls + derived)
        tree_doc = tree_section(tree_store, derived)
        tree_store.close()
    doc = {"benchmark": "index_search", "schema_version": SCHEMA_VERSION, "tool_version": provenance.__version__,
           "identity": cpu.identity(), "seeds": seeds, "top": args.top, "search_index": n_search,
           "summary_dimension": S.DIMENSION, "correction": "holm", "search": search_doc, "tree": tree_doc, "scale": scale_doc}
    print(render(doc))
    if args.out:
        write_json(args.out, doc)
    ok = search_doc["parent_first_and_derived"] == search_doc["derived_queries"] and not search_doc["false_derived"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
