"""Comparison at a large model's stored size, from the files: load both fingerprints, then compare.

Two synthetic fingerprints of 48-layer, 5120-wide models (benchmarks/synthetic.py: B derived from A) are
written with the project's own save path, then each round times, in one process on one torch thread:
- load: `load_fingerprint` of each file (header and document checks, digest over every tensor, finite and
  shape checks);
- compare: `compare_fingerprints` on the loaded pair (every signal);
- baselines, timed in the same rounds: reading each file's bytes once (what any load must do), and one matrix
  product per stored matrix pair (the data, touched once by the operation a comparison is built from).

Each round runs in a fresh process, as `provenance compare A.fp B.fp` does (a process that compares once pays
the page faults of every buffer it touches for the first time; imports, which are start-up, are not counted). Printed: process CPU
time (what the work costs on a shared machine) beside wall time (which also counts the neighbours' turns),
medians over the rounds, and each ratio to its baseline. No wall-clock assertion: machines and their load differ.

    python -m benchmarks.compare_scale [--layers 48] [--rounds 5] [--profile] [--out results.json]   (from the repository root)
"""
from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import subprocess
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


def one_round(a: Path, b: Path) -> dict:
    """One round in this process: the baselines, both loads and the comparison, (CPU s, wall s) each."""
    import provenance.report.schemas  # noqa: F401  (jsonschema, imported by the first load: start-up, not loading)
    from provenance.fingerprint import load_fingerprint
    from provenance.lineage import compare_fingerprints

    read = [_timed(Path.read_bytes, p)[1:] for p in (a, b)]
    (fa, *load_a), (fb, *load_b) = _timed(load_fingerprint, a), _timed(load_fingerprint, b)
    product = _timed(_product_baseline, fa, fb)[1:]
    out, *cmp = _timed(compare_fingerprints, fa, fb)
    return {"read": read, "load": [load_a, load_b], "product": [product], "compare": [cmp],
            "total": [(load_a[0] + load_b[0] + cmp[0], load_a[1] + load_b[1] + cmp[1])], "verdict": out["verdict"]}


def run(layers: int, rounds: int, profile: bool, threads: int) -> dict:
    """Write the pair, time the rounds (each in a fresh process); returns the medians and ratios."""
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
        worker = [sys.executable, "-m", "benchmarks.compare_scale", "--threads", str(threads), "--worker", *map(str, paths)]
        for r in range(rounds):
            got = json.loads(subprocess.run(worker, check=True, capture_output=True, text=True).stdout)
            for k in rows:
                rows[k] += [tuple(x) for x in got[k]]
            verdict = got["verdict"]
            (load_a, load_b), (cmp,) = got["load"], got["compare"]
            print(f"round {r + 1}/{rounds}: load {load_a[0]:.3f} + {load_b[0]:.3f} s, compare {cmp[0]:.3f} s CPU "
                  f"({verdict})", file=sys.stderr, flush=True)
        if profile:
            prof = cProfile.Profile()
            prof.enable()
            compare_fingerprints(load_fingerprint(paths[0]), load_fingerprint(paths[1]))
            prof.disable()
            pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(25)

    med = {k: {"cpu_s": statistics.median(c for c, _ in v), "wall_s": statistics.median(w for _, w in v)}
           for k, v in rows.items()}
    import provenance
    from provenance.backends import CpuBackend
    return {"benchmark": "compare_scale", "schema_version": SCHEMA_VERSION, "tool_version": provenance.__version__,
            "identity": CpuBackend().identity(), "fresh_process_per_round": True, "layers": layers, "rounds": rounds, "threads": torch.get_num_threads(),
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
    ap.add_argument("--worker", nargs=2, type=Path, metavar="FP", help=argparse.SUPPRESS)  # one round, JSON on stdout
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(one_round(*args.worker)))
        return 0
    res = run(args.layers, args.rounds, args.profile, args.threads)
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
