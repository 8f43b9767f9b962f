"""Bounded mutation fuzzing of the checkpoint readers (outside CI).

Mutates small valid files of every format and reads them fully; any exception other than
a ProvenanceError is a finding, printed with the mutation that caused it.

    python scripts/fuzz_readers.py --iterations 2000 --seconds 300
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from provenance.errors import ProvenanceError  # noqa: E402
from tests.test_properties import SEEDS, mutate, read_everything  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    findings, clean, rejected = 0, 0, 0
    start = time.monotonic()
    kinds = ("flip", "truncate", "insert", "overwrite8")
    with tempfile.TemporaryDirectory() as tmp:
        for it in range(args.iterations):
            if time.monotonic() - start > args.seconds:
                break
            name = rng.choice(sorted(SEEDS))
            muts = [(rng.choice(kinds), rng.randrange(10**6), rng.randrange(1, 2**63)) for _ in range(rng.randint(1, 6))]
            muts = [(k, p, v % 256 if k in ("flip", "insert") else v) for k, p, v in muts]
            path = Path(tmp) / f"{it}" / name
            path.parent.mkdir()
            path.write_bytes(mutate(SEEDS[name], muts))
            try:
                read_everything(path)
                clean += 1
            except ProvenanceError:
                rejected += 1
            except Exception:
                findings += 1
                print(f"FINDING {name} {muts}\n{traceback.format_exc(limit=3)}", flush=True)
    total = clean + rejected + findings
    print(f"{total} inputs in {time.monotonic() - start:.0f}s: {clean} read, {rejected} rejected cleanly, {findings} findings")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
