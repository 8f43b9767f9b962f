"""Lineage benchmark: detection per transform and false positives over independent pairs,
for the verdict and for the sigma-curve baseline side by side.

Zoo: several bases trained from different seeds on the same data (the hard negatives),
and derivatives of each by every transform in provenance.zoo.TRANSFORMS.
Derived pairs: (base, its derivative). Independent pairs: (base_i, base_j) and
(base_i, derivative of base_j) for i != j.

    python benchmarks/lineage_zoo.py [--seeds 3] [--out benchmarks/results/lineage_zoo.json]
"""
from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

from provenance.backends import get_backend
from provenance.atomic import write_json
from provenance.fingerprint import fingerprint_model
from provenance.lineage import DECISION, compare_fingerprints
from provenance.zoo import TRANSFORMS, build

SIGMA_THRESHOLD = 0.9  # the level at which the sigma-curve claim was made (0.927)


def sigma_of(result) -> float | None:
    return next(s["statistic"] for s in result["signals"] if s["name"] == "sigma_curves")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--transforms", nargs="*", default=list(TRANSFORMS))
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    cpu = get_backend("cpu")
    seeds = list(range(args.seeds))
    names = [f"base-s{s}" for s in seeds] + [f"base-s{s}-{t}" for s in seeds for t in args.transforms]
    t0 = time.time()
    fps = {}
    for k, name in enumerate(names, 1):
        fps[name] = fingerprint_model(build(name), cpu, label=name)
        print(f"[{k}/{len(names)} {time.time() - t0:6.1f}s] {name}", file=sys.stderr, flush=True)
    rows = []
    for s in seeds:
        for t in args.transforms:
            rows.append(("derived", t, f"base-s{s}", f"base-s{s}-{t}"))
    for i, j in itertools.permutations(seeds, 2):
        if i < j:
            rows.append(("independent", "base vs base", f"base-s{i}", f"base-s{j}"))
        for t in args.transforms:
            rows.append(("independent", t, f"base-s{i}", f"base-s{j}-{t}"))
    results = []
    compare_times = []
    for truth, transform, a, b in rows:
        t = time.perf_counter()
        r = compare_fingerprints(fps[a], fps[b])
        compare_times.append(time.perf_counter() - t)
        sig = sigma_of(r)
        results.append({"truth": truth, "transform": transform, "a": a, "b": b, "verdict": r["verdict"],
                        "p_value": r["p_value"], "sigma_corr": sig,
                        "baseline": "derived" if sig is not None and sig >= SIGMA_THRESHOLD else "independent",
                        "signals": {s["name"]: {"statistic": s["statistic"], "p_value": s["p_value"], "effect": s.get("effect")}
                                    for s in r["signals"]}})
    print(f"\n{'transform':16} {'pairs':>5} {'ours: derived':>14} {'inconcl.':>9} {'baseline: derived':>18}   min effect (ours)")
    summary = {}
    for transform in args.transforms:
        sel = [r for r in results if r["truth"] == "derived" and r["transform"] == transform]
        ours = sum(r["verdict"] == "derived" for r in sel)
        inc = sum(r["verdict"] == "inconclusive" for r in sel)
        base = sum(r["baseline"] == "derived" for r in sel)
        effects = [max((v["effect"] or 0) for k, v in r["signals"].items() if k in ("neuron_match", "dense_moe_match", "attention_cka")) for r in sel]
        summary[transform] = {"pairs": len(sel), "ours_detected": ours, "ours_inconclusive": inc, "baseline_detected": base,
                              "min_best_effect": min(effects)}
        print(f"{transform:16} {len(sel):5d} {ours:>8d}/{len(sel):<5d} {inc:>9d} {base:>12d}/{len(sel):<5d}   {min(effects):.3f}")
    neg = [r for r in results if r["truth"] == "independent"]
    fp_ours = sum(r["verdict"] == "derived" for r in neg)
    ind_ours = sum(r["verdict"] == "independent" for r in neg)
    fp_base = sum(r["baseline"] == "derived" for r in neg)
    max_neg_effect = max(max((v["effect"] or -1) for k, v in r["signals"].items() if k in ("neuron_match", "dense_moe_match", "attention_cka")) for r in neg)
    print(f"\nindependent pairs: {len(neg)}; ours: {fp_ours} false positives, {ind_ours} called independent, "
          f"{len(neg) - fp_ours - ind_ours} inconclusive; baseline (sigma >= {SIGMA_THRESHOLD}): {fp_base} false positives")
    print(f"largest effect on an independent pair: {max_neg_effect:.3f} (derivation margin {DECISION['min_effect']})")
    print(f"compare time per pair (tiny models): median {sorted(compare_times)[len(compare_times)//2]*1e3:.1f} ms")
    doc = {"benchmark": "lineage_zoo", "identity": cpu.identity(), "seeds": seeds, "decision_rule": DECISION,
           "sigma_threshold": SIGMA_THRESHOLD, "summary": summary,
           "independent": {"pairs": len(neg), "ours_false_positives": fp_ours, "ours_independent": ind_ours,
                           "baseline_false_positives": fp_base, "max_effect": max_neg_effect},
           "pairs": results}
    if args.out:
        write_json(args.out, doc)
    derived_total = sum(v["pairs"] for v in summary.values())
    detected = sum(v["ours_detected"] for v in summary.values())
    return 0 if fp_ours == 0 and detected == derived_total else 1


if __name__ == "__main__":
    sys.exit(main())
