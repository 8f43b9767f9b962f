"""Comparison at a large model's stored size, from the files: load both fingerprints, then compare.

Two synthetic fingerprints of 48-layer, 5120-wide models (benchmarks/synthetic.py: B derived from A) are
written with the project's own save path, then each round times, in one process on one torch thread:
- load: `load_fingerprint` of each file (header and document checks, digest over every tensor, finite and
  shape checks);
- compare: `compare_fingerprints` on the loaded pair (every signal);
- baselines, timed in the same rounds: reading each file's bytes once (what any load must do), and one matrix
  product per stored matrix pair (the data, touched once by the operation a comparison is built from).

Printed: process CPU time (what the work costs on a shared machine) beside wall time (which also counts the
neighbours' turns), medians over the rounds, and each ratio to its baseline. No wall-clock assertion: machines
and their load differ.

    python -m benchmarks.compare_scale [--layers 48] [--rounds 5] [--profile] [--out results.json]   (from the repository root)
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

SCHEMA_VERSION = "1.0"


def _timed(fn, *args):
    """(result, process CPU seconds, wall seconds) of one call."""
    cpu, wall = time.process_time(), time.perf_counter()
    out = fn(*args)
    return out, time.process_time() - cpu, time.perf_counter() - wall


def _product_baseline(a, b) -> None:
    for k in a.tensors:
        a.tensors[k] @ b.tensors[k].T


def run(layers: int, rounds: int, profile: bool) -> dict:
    """Write the pair, time the rounds; returns the medians and ratios."""
    from benchmarks.synthetic import synthetic_fingerprint
    from provenance.fingerprint import load_fingerprint
    from provenance.lineage import compare_fingerprints

    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp) / "a.safetensors", Path(tmp) / "b.safetensors"]
        a = synthetic_fingerprint(layers, seed=1)
        a.save(paths[0])
        synthetic_fingerprint(layers, seed=2, parent=a).save(paths[1])
        del a
        sizes = [p.stat().st_size for p in paths]
        rows: dict[str, list[tuple[float, float]]] = {k: [] for k in
                                                      ("read", "load", "compare", "product", "total")}
        verdict = None
        for r in range(rounds):
            for p in paths:
                rows["read"].append(_timed(Path.read_bytes, p)[1:])
            (fa, *load_a), (fb, *load_b) = _timed(load_fingerprint, paths[0]), _timed(load_fingerprint, paths[1])
            rows["load"] += [tuple(load_a), tuple(load_b)]
            rows["product"].append(_timed(_product_baseline, fa, fb)[1:])
            out, *cmp = _timed(compare_fingerprints, fa, fb)
            rows["compare"].append(tuple(cmp))
            rows["total"].append((load_a[0] + load_b[0] + cmp[0], load_a[1] + load_b[1] + cmp[1]))
            verdict = out["verdict"]
            print(f"round {r + 1}/{rounds}: load {load_a[0]:.3f} + {load_b[0]:.3f} s, compare {cmp[0]:.3f} s CPU "
                  f"({out['verdict']})", file=sys.stderr, flush=True)
        if profile:
            prof = cProfile.Profile()
            prof.enable()
            compare_fingerprints(load_fingerprint(paths[0]), load_fingerprint(paths[1]))
            prof.disable()
            pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(25)

    med = {k: {"cpu_s": statistics.median(c for c, _ in v), "wall_s": statistics.median(w for _, w in v)}
           for k, v in rows.items()}
    return {"schema_version": SCHEMA_VERSION, "layers": layers, "rounds": rounds, "threads": torch.get_num_threads(),
            "file_bytes": sizes, "verdict": verdict, "median": med,
            "ratios_cpu": {"load_per_file_over_read": med["load"]["cpu_s"] / med["read"]["cpu_s"],
                           "compare_over_products": med["compare"]["cpu_s"] / med["product"]["cpu_s"]}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--profile", action="store_true", help="cProfile one load-and-compare after the rounds (stderr)")
    ap.add_argument("--out", type=Path, help="write the results as JSON")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    res = run(args.layers, args.rounds, args.profile)
    m, r = res["median"], res["ratios_cpu"]
    print(f"{args.layers}-layer fingerprints, {res['file_bytes'][0] / 1e6:.0f} MB each; {res['threads']} torch thread(s), "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; medians of {args.rounds} rounds, CPU / wall s")
    for key, what in (("load", "load one file"), ("compare", "compare"), ("total", "load both + compare"),
                      ("read", "baseline: read one file's bytes"), ("product", "baseline: one product per matrix pair")):
        print(f"  {what:40} {m[key]['cpu_s']:.3f} / {m[key]['wall_s']:.3f}")
    print(f"  load / read: {r['load_per_file_over_read']:.1f}x   compare / products: {r['compare_over_products']:.1f}x"
          f"   verdict: {res['verdict']}")
    if args.out:
        from provenance.atomic import write_json
        write_json(args.out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
