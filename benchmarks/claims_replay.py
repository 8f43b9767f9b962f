"""Training-segment replay on the demo claims: honest distance, each spoof's, and the margin between them.

Distances are in units of the envelope calibrated in the same run (the spread of the same replay
across thread counts, accumulation orders and CPU instruction sets), so the margin is a ratio of
two measurements made here. Run: python benchmarks/claims_replay.py [--dtype bf16] (bf16: the segment is trained under bf16 autocast and the
envelope includes the bf16 modes).
"""
from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"),
                        help="training dtype of the demo segment (bf16: CPU autocast), as the claims say")
    args = parser.parse_args()
    from provenance.claims.claimfile import parse_claim
    from provenance.claims.demo import CLAIMS, build_demo_claims
    from provenance.claims.replay import calibrate_and_judge, cpu_capability, judge
    from provenance.claims.segment import load_segment
    print(f"machine: {platform.machine()}, {cpu_capability()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    ratios = {}
    with tempfile.TemporaryDirectory(prefix="claims-bench-") as tmp:
        for name, path in build_demo_claims(Path(tmp), dtype=args.dtype).items():
            seg = load_segment(parse_claim(path).segment)
            t0 = time.perf_counter()
            result = calibrate_and_judge(seg, args.dtype)
            wall = time.perf_counter() - t0
            check = judge(result)
            ratios[name] = result["ratio"]
            worst = max(result["per_tensor"].items(), key=lambda kv: kv[1]["ratio"])
            spread = ", ".join(f"{m} {v:.3g}" for m, v in result["mode_spread"].items())
            print(f"{name:22} {result['ratio']:12.4g} envelopes  {check.result:11} {check.strength:6} "
                  f"(distance {result['distance']:.3g}, envelope {result['envelope']:.3g} [{result['envelope_source']}]; spreads: {spread}; "
                  f"worst tensor {worst[0]} {worst[1]['ratio']:.3g}; fp32 replay {result['timings_s']['fp32']:.1f}s, "
                  f"all modes {wall:.1f}s)  [{CLAIMS[name][0]}]")
    nearest = min(v for n, v in ratios.items() if n != "honest")
    print(f"honest {ratios['honest']:.3g} envelopes; nearest spoof {nearest:.3g} envelopes; "
          f"margin {nearest / ratios['honest']:.3g}x")


if __name__ == "__main__":
    main()
