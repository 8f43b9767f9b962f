"""Training-segment replay (Proof-of-Learning style), with a tolerance calibrated by replaying again.

The segment is replayed with transformers' forward and backward and torch's AdamW from the
claimed start, optimizer state and batches. The same replay is then run in other modes, each
standing for a way honest hardware differs: another thread count, another accumulation order,
another CPU instruction set (a subprocess with ATEN_CPU_CAPABILITY), and, for a reduced-precision
claim, that precision. The envelope is the largest distance between a mode and the reference
replay; the claimed end is judged by its distance from the reference in units of that envelope.
"""
from __future__ import annotations

import contextlib
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..errors import BackendUnavailable, MalformedInput
from ..precision import dtype_row, mode_row
from ..zoo.build import torch_threads
from .checks import Check
from .hfmodel import LinearMode, build_model
from .segment import Segment, load_segment, tensor_norm


@dataclass(frozen=True)
class Mode:
    """One way honest hardware differs, as a replay mode.

    Attributes:
        description: what the mode stands for.
        bits: F.linear inputs rounded to this many mantissa bits (from the precision table), or None.
        reorder: F.linear reductions in reverse order.
        autocast: torch.autocast dtype, or None.
        threads: "other" for a thread count other than the reference's.
        isa: another CPU instruction set, in a subprocess.
    """

    description: str
    bits: int | None = None        # F.linear inputs rounded to this many mantissa bits
    reorder: bool = False          # F.linear reductions in reverse order
    autocast: torch.dtype | None = None
    threads: str | None = None     # "other": a thread count other than the reference's
    isa: bool = False              # another CPU instruction set, in a subprocess


MODES: dict[str, Mode] = {
    "fp32": Mode("fp32, this process's thread count and instruction set (the reference replay)"),
    "fp32-threads": Mode("fp32 with another thread count (another reduction split)", threads="other"),
    "fp32-reordered": Mode("fp32 with every matmul reduction in reverse order (another GEMM kernel)", reorder=True),
    "fp32-isa": Mode("fp32 on another CPU instruction set (AVX2 on an AVX-512 machine)", isa=True),
    "tf32-inputs": Mode("matmul inputs rounded to 10 mantissa bits (CUDA TF32), emulated",
                        bits=mode_row("tf32").input_mantissa_bits),
    "hf32-inputs": Mode("matmul inputs rounded to 11 mantissa bits (Ascend HF32), emulated",
                        bits=mode_row("hf32").input_mantissa_bits),
    "bf16-inputs": Mode("matmul inputs rounded to bf16 (7 mantissa bits), fp32 accumulation, emulated",
                        bits=dtype_row("bf16").mantissa_bits),
    "bf16-autocast": Mode("bf16 mixed precision (torch.autocast on CPU), fp32 master weights", autocast=torch.bfloat16),
    "fp16-inputs": Mode("matmul inputs rounded to fp16-class 10 mantissa bits, emulated",
                        bits=dtype_row("fp16").mantissa_bits),
}
FP32_ENVELOPE = ("fp32-threads", "fp32-reordered", "fp32-isa")
# claimed training dtype -> modes whose spread makes the envelope
ENVELOPE_MODES = {
    "fp32": FP32_ENVELOPE,
    "tf32": FP32_ENVELOPE + ("tf32-inputs",),
    "hf32": FP32_ENVELOPE + ("hf32-inputs",),
    "bf16": FP32_ENVELOPE + ("bf16-inputs", "bf16-autocast"),
    "fp16": FP32_ENVELOPE + ("fp16-inputs",),
}
# the instruction set a subprocess is pinned to, by the one torch reports here
OTHER_ISA = {"AVX512": "avx2", "AVX512_BF16": "avx2", "AMX": "avx2", "AVX2": "default", "SVE256": "default"}
SLACK = 2.0          # accepted within this many envelopes (msprobe's pass/warn band ends at 2)
STRONG = 20.0        # beyond this many envelopes a contradiction is strong
FLOOR = dtype_row("fp32").floor  # an envelope never below half an fp32 ulp per element (norm-wise), as drift compare's


def replay(seg: Segment, mode: str = "fp32", progress: Callable[[str], None] | None = None) -> dict[str, torch.Tensor]:
    """The segment's end as this process computes it in `mode` (not the subprocess modes).

    Args:
        seg: a loaded segment.
        mode: a key of MODES without `isa`.
    Returns:
        The replayed fp32 state dict.
    """
    spec = MODES[mode]
    model = build_model(seg.cfg, seg.start, seg.paths["start"])
    model.train()
    params = dict(model.named_parameters())
    r = seg.recipe
    decay = [p for n, p in params.items() if not any(s in n for s in r["no_decay"])]
    no_decay = [p for n, p in params.items() if any(s in n for s in r["no_decay"])]
    groups = [{"params": decay, "weight_decay": r["weight_decay"]}] + ([{"params": no_decay, "weight_decay": 0.0}] if no_decay else [])
    opt = torch.optim.AdamW(groups, lr=r["lr"], betas=tuple(r["betas"]), eps=r["eps"], foreach=False)
    for name, p in params.items():
        opt.state[p] = {"step": torch.tensor(float(seg.step)), "exp_avg": seg.exp_avg[name].clone(),
                        "exp_avg_sq": seg.exp_avg_sq[name].clone()}
    with contextlib.ExitStack() as stack:
        if spec.threads:
            stack.enter_context(torch_threads(1 if torch.get_num_threads() > 1 else 2))
        if spec.bits is not None or spec.reorder:
            stack.enter_context(LinearMode(spec.bits, spec.reorder))
        for k in range(seg.batches.shape[0]):
            ids = seg.batches[k]
            ctx = torch.autocast("cpu", dtype=spec.autocast) if spec.autocast else contextlib.nullcontext()
            with ctx:
                loss = model(input_ids=ids, labels=ids).loss
            if not torch.isfinite(loss):
                raise MalformedInput(f"the replay's loss is {float(loss)} at step {k} (mode {mode})", seg.paths["batches"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if r["grad_clip"] is not None:
                torch.nn.utils.clip_grad_norm_(list(params.values()), r["grad_clip"])
            opt.step()
            if progress:
                progress(f"replay {mode}: step {k + 1}/{seg.batches.shape[0]}")
    return {n: p.detach().float().clone() for n, p in params.items() if n in seg.start}




def cpu_capability() -> str:
    """The instruction set torch dispatches to in this process.

    Returns:
        torch.backends.cpu.get_cpu_capability().
    """
    return torch.backends.cpu.get_cpu_capability()


def replay_other_isa(paths: dict[str, Path]) -> tuple[dict[str, torch.Tensor], str]:
    """The fp32 replay in a subprocess on another instruction set; ATEN_CPU_CAPABILITY is read at torch's start.

    Args:
        paths: the segment's files by role (start, optimizer, batches, recipe, end).
    Returns:
        (the replayed end state, "<this capability> -> <the subprocess's>").
    Raises:
        BackendUnavailable: no lower instruction set is known, or the subprocess failed.
    """
    from safetensors.torch import load_file
    here = cpu_capability()
    target = OTHER_ISA.get(here)
    if target is None:
        raise BackendUnavailable(f"no other CPU instruction set known below {here}")
    with tempfile.TemporaryDirectory(prefix="provenance-replay-") as tmp:
        out = Path(tmp) / "replayed.safetensors"
        env = {**os.environ, "ATEN_CPU_CAPABILITY": target}
        args = [sys.executable, "-m", "provenance.claims.replay_worker", str(out)] + [f"{k}={v}" for k, v in paths.items()]
        proc = subprocess.run(args, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise BackendUnavailable(f"the {target} replay subprocess failed: {tail}")
        seen = (Path(tmp) / "capability.txt").read_text().strip()
        return load_file(out), f"{here} -> {seen}"


def distances(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, float]:
    """Per-tensor L2 distance between two states.

    Args:
        a, b: tensor name -> tensor, with the same names.
    Returns:
        Tensor name -> ||a - b||.
    """
    return {n: tensor_norm(a[n] - b[n]) for n in a}


def total(per_tensor: dict[str, float]) -> float:
    """The whole-model distance from per-tensor ones.

    Args:
        per_tensor: tensor name -> distance.
    Returns:
        The root of the sum of squares.
    """
    return math.sqrt(sum(d * d for d in per_tensor.values()))


def calibrate_and_judge(seg: Segment, claimed_dtype: str = "fp32", progress: Callable[[str], None] | None = None,
                        modes: tuple[str, ...] | None = None) -> dict:
    """Replay in every envelope mode, then measure the claimed end in envelope units.

    Args:
        seg: a loaded segment.
        claimed_dtype: the claim's training dtype; picks the envelope's modes (ENVELOPE_MODES).
        progress: called with a short line per replay step.
        modes: override the envelope's modes (tests).
    Returns:
        A dict with per-tensor and overall distances, the envelope and its modes, and timings.
    """
    t0 = time.perf_counter()
    ref = replay(seg, "fp32", progress)
    timings = {"fp32": time.perf_counter() - t0}
    modes = modes or ENVELOPE_MODES.get(claimed_dtype, FP32_ENVELOPE)
    spreads, notes = {}, {}
    for mode in modes:
        t = time.perf_counter()
        if MODES[mode].isa:
            try:
                state, notes[mode] = replay_other_isa(seg.paths)
            except BackendUnavailable as exc:
                notes[mode] = f"not measured: {exc}"
                continue
        else:
            state = replay(seg, mode, progress)
        timings[mode] = time.perf_counter() - t
        spreads[mode] = distances(state, ref)
    names = list(ref)
    floor = {n: FLOOR * tensor_norm(ref[n]) for n in names}
    envelope = {n: max([floor[n]] + [s[n] for s in spreads.values()]) for n in names}
    floor_total = FLOOR * total({n: tensor_norm(ref[n]) for n in names})
    measured = max([total(s) for s in spreads.values()], default=0.0)
    envelope_total = max(floor_total, measured)
    d_end = distances(seg.end, ref)
    moved = total(distances(ref, seg.start))
    return {
        "per_tensor": {n: {"distance": d_end[n], "envelope": envelope[n], "ratio": d_end[n] / envelope[n]} for n in names},
        "distance": total(d_end), "envelope": envelope_total, "ratio": total(d_end) / envelope_total,
        "envelope_source": "measured" if measured >= floor_total else "precision floor (measured spread is smaller)",
        "measured_spread": measured, "precision_floor": floor_total,
        "movement": moved, "mode_spread": {m: total(s) for m, s in spreads.items()}, "mode_notes": notes,
        "modes": list(modes), "timings_s": timings, "steps": int(seg.batches.shape[0]), "cpu_capability": cpu_capability(),
    }


def judge(result: dict) -> Check:
    """The replay's Check from its measured distance in envelope units.

    Args:
        result: calibrate_and_judge's measurements.
    Returns:
        A test Check: neutral when the segment moved the weights too little to tell, supports within the
        acceptance, contradicts (strong past the per-tensor limit) otherwise.
    """
    ratio, worst = result["ratio"], max(result["per_tensor"].items(), key=lambda kv: kv[1]["ratio"])
    data = {k: result[k] for k in ("distance", "envelope", "envelope_source", "measured_spread", "precision_floor", "ratio", "movement", "mode_spread", "mode_notes", "modes",
                                   "timings_s", "steps", "cpu_capability")}
    data["worst_tensor"] = {"name": worst[0], **worst[1]}
    data["per_tensor"] = result["per_tensor"]
    where = (f"distance to the claimed end {ratio:.3g} envelopes (envelope {result['envelope']:.3g}: "
             f"{result['envelope_source']} over {', '.join(result['modes'])})")
    if result["envelope"] >= 0.5 * result["movement"]:
        return Check("replay", "neutral", "none", f"{where}; the segment moved the weights by only {result['movement']:.3g}, "
                     "too little against the envelope to tell a replay from another trajectory", kind="test", data=data)
    # one tensor far outside its own envelope is an edit the overall norm could dilute in a large model
    if ratio <= SLACK and worst[1]["ratio"] <= STRONG:
        return Check("replay", "supports", "weak", f"{where}: the claimed end follows from the start, optimizer state and "
                     f"batches within {SLACK:g} envelopes; tolerance-based replay can be spoofed", kind="test", data=data)
    strength = "strong" if max(ratio, worst[1]["ratio"]) > STRONG else "weak"
    return Check("replay", "contradicts", strength, f"{where}: the claimed end does not follow from the claimed start, data "
                 f"and recipe (worst tensor {worst[0]} at {worst[1]['ratio']:.3g} envelopes)", kind="test", data=data)


def check_replay(paths: dict[str, Path], claimed_dtype: str, progress: Callable[[str], None] | None = None) -> Check:
    """Load, replay and judge the claim's [segment].

    Args:
        paths: the segment's files by role.
        claimed_dtype: the claim's training dtype (picks the envelope's modes).
        progress: called with a short line per stage, or None.
    Returns:
        The replay Check.
    """
    seg = load_segment(paths)
    return judge(calibrate_and_judge(seg, claimed_dtype or "fp32", progress))
