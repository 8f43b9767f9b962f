"""Subprocess entry: replay a segment in fp32 and write the result, under whatever ATEN_CPU_CAPABILITY it started with.

Usage: python -m provenance.claims.replay_worker OUT.safetensors start=... optimizer=... batches=... recipe=... end=...
OUT's folder also gets capability.txt, the instruction set torch actually used.
"""
from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    """Replay and write the result.

    Args:
        argv: OUT.safetensors, then role=path for each segment file.
    Returns:
        The exit status (0).
    """
    from safetensors.torch import save_file
    import torch
    from .replay import replay
    from .segment import load_segment
    out = Path(argv[0])
    paths = {k: Path(v) for k, v in (a.split("=", 1) for a in argv[1:])}
    state = replay(load_segment(paths), "fp32")
    save_file({k: v.contiguous() for k, v in state.items()}, out)
    (out.parent / "capability.txt").write_text(torch.backends.cpu.get_cpu_capability())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
