"""Regenerate provenance/lineage/panel.py: signal statistics on the zoo's independent pairs.

Run: python benchmarks/reference_panel.py [--seeds 2]
Pairs: every two bases, each base against every derivative of another base, and each base against
the other-tokenizer and MoE controls. They are the hard negatives: same architecture and data.
"""
from __future__ import annotations

import argparse
import itertools
from pathlib import Path

from backends import get_backend
from provenance.fingerprint import fingerprint_model
from provenance.lineage import embedding
from provenance.zoo import build

DERIVED = ("finetune", "vocab_carry", "long_continued", "rotate", "wash")
CONTROLS = ("scratch_vocab", "scratch_moe")
OUT = Path(__file__).resolve().parent.parent / "provenance" / "lineage" / "panel.py"


def panel_pairs(seeds) -> list[tuple[str, str]]:
    pairs = [(f"base-s{i}", f"base-s{j}") for i, j in itertools.combinations(seeds, 2)]
    pairs += [(f"base-s{i}", f"base-s{j}-{t}") for i in seeds for j in seeds if i != j for t in DERIVED]
    pairs += [(f"base-s{i}", f"base-s{j}-{t}") for i in seeds for j in seeds for t in CONTROLS]
    return pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, default=2)
    args = ap.parse_args()
    cpu = get_backend("cpu")
    fps = {}
    values = []
    for a, b in panel_pairs(range(args.seeds)):
        for n in (a, b):
            if n not in fps:
                fps[n] = fingerprint_model(build(n), cpu, label=n)
        rows = embedding.shared_rows(fps[a], fps[b])
        if rows is not None and rows[0].shape[0] >= embedding.MIN_SHARED:
            values.append(round(embedding.cross_validated_procrustes(*rows), 4))
            print(f"{a} vs {b}: {values[-1]}", flush=True)
    text = OUT.read_text()
    head = text[:text.index("EMBEDDING_PANEL = ")]
    OUT.write_text(head + f"EMBEDDING_PANEL = {values!r}\n")
    print(f"wrote {len(values)} values to {OUT}")


if __name__ == "__main__":
    main()
