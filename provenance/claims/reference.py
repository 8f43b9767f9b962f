"""Reference outputs: recompute the vendor's published outputs and judge them against the drift envelope.

The model is run in float64 (the golden) and in every mode of the claimed precision (ENVELOPE):
fp32 in two accumulation orders, matmul inputs rounded as the claimed hardware rounds them, and
native bf16 where bf16 is claimed. The envelope of a tensor is the largest relative L2 distance of
a mode from the golden; the published tensor's distance is reported in units of it. Inside is
consistent (any platform with that precision would compute the same), never proof.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import MalformedInput
from ..io.safetensors_reader import read_header
from ..precision import dtype_row, mode_row
from .checks import Check
from .hfmodel import LinearMode, build_model, load_state
from .replay import SLACK, STRONG

TENSORS = ("input_ids", "logits", "hidden_states")
# mode -> (F.linear input bits, reversed reductions, native dtype)
REF_MODES = {
    "fp32": (None, False, torch.float32), "fp32-reordered": (None, True, torch.float32),
    "tf32-inputs": (mode_row("tf32").input_mantissa_bits, False, torch.float32),
    "hf32-inputs": (mode_row("hf32").input_mantissa_bits, False, torch.float32),
    "bf16-inputs": (dtype_row("bf16").mantissa_bits, False, torch.float32), "bf16-native": (None, False, torch.bfloat16),
    "fp16-inputs": (dtype_row("fp16").mantissa_bits, False, torch.float32),
}
ENVELOPE = {
    "fp32": ("fp32", "fp32-reordered"), "tf32": ("fp32", "fp32-reordered", "tf32-inputs"),
    "hf32": ("fp32", "fp32-reordered", "hf32-inputs"), "bf16": ("fp32", "fp32-reordered", "bf16-inputs", "bf16-native"),
    "fp16": ("fp32", "fp32-reordered", "fp16-inputs"),
}
FLOOR = dtype_row("fp32").floor


def read_reference(path: Path, vocab: int, hidden: int) -> dict[str, torch.Tensor]:
    """The published tensors, checked: known names, integer ids in range, shapes that fit the model, finite values.

    Args:
        path: the reference outputs (.safetensors).
        vocab: the model's vocabulary size.
        hidden: the model's hidden size.
    Returns:
        Tensor name (input_ids, logits, hidden_states) -> tensor.
    Raises:
        MalformedInput: anything that does not fit.
    """
    from safetensors.torch import load_file
    if not path.name.endswith(".safetensors"):
        raise MalformedInput("reference outputs must be a .safetensors file", path)
    read_header(path)
    tensors = load_file(path)
    for name in tensors:
        if name not in TENSORS:
            raise MalformedInput(f"unexpected tensor {name!r} (known: {', '.join(TENSORS)})", path)
    if "input_ids" not in tensors or not ({"logits", "hidden_states"} & set(tensors)):
        raise MalformedInput("needs input_ids and logits and/or hidden_states", path)
    ids = tensors["input_ids"]
    if ids.dtype.is_floating_point or ids.dim() != 2 or ids.numel() == 0:
        raise MalformedInput(f"input_ids must be integers of shape [batch, seq], not {ids.dtype} {tuple(ids.shape)}", path)
    if int(ids.min()) < 0 or int(ids.max()) >= vocab:
        raise MalformedInput(f"input_ids outside [0, {vocab})", path)
    want = {"logits": (*ids.shape, vocab), "hidden_states": (*ids.shape, hidden)}
    for name, shape in want.items():
        if name in tensors:
            t = tensors[name]
            if tuple(t.shape) != shape:
                raise MalformedInput(f"{name} has shape {tuple(t.shape)}, the model and input_ids give {shape}", path)
            if not t.is_floating_point() or not torch.isfinite(t).all():
                raise MalformedInput(f"{name} holds NaN or Inf (or is not floating point)", path)
    return {k: (v.to(torch.int64) if k == "input_ids" else v.double()) for k, v in tensors.items()}


@torch.no_grad()
def _outputs(model, ids, bits=None, reorder=False) -> dict[str, torch.Tensor]:
    ctx = LinearMode(bits, reorder)
    with ctx:
        out = model(input_ids=ids, output_hidden_states=True)
    return {"logits": out.logits.double(), "hidden_states": out.hidden_states[-1].double()}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def check_reference(model_path: Path, ref_path: Path, mode: str, drift_reports: list[Path] | None = None) -> Check:
    """Recompute and judge the claim's [reference_outputs].

    Args:
        model_path: the claimed model's checkpoint.
        ref_path: the published outputs (.safetensors).
        mode: the precision they were computed in (a key of ENVELOPE).
        drift_reports: measured drift reports of the claimed hardware; they widen the envelope (drift_scale).
    Returns:
        A Check of kind "test" named reference_outputs.
    """
    cfg, state = load_state(model_path)
    fp32 = build_model(cfg, state, model_path).eval()
    vocab = fp32.config.vocab_size
    ref = read_reference(ref_path, vocab, fp32.config.hidden_size)
    ids = ref["input_ids"]
    golden = _outputs(build_model(cfg, state, model_path, torch.float64).eval(), ids)
    bf16 = None
    spreads = {}
    for m in ENVELOPE[mode]:
        bits, reorder, dtype = REF_MODES[m]
        if dtype == torch.bfloat16:
            bf16 = bf16 or build_model(cfg, state, model_path, torch.bfloat16).eval()
            out = _outputs(bf16, ids)
        else:
            out = _outputs(fp32, ids, bits, reorder)
        spreads[m] = {k: _rel(out[k], golden[k]) for k in golden}
    from .drift_scale import envelope_scale
    scale, scale_rows = envelope_scale(drift_reports or [], mode)
    rows = {}
    for name in ("logits", "hidden_states"):
        if name not in ref:
            continue
        env = scale * max([FLOOR] + [s[name] for s in spreads.values()])
        d = _rel(ref[name], golden[name])
        rows[name] = {"distance": d, "envelope": env, "ratio": d / env, "by_mode": {m: s[name] for m, s in spreads.items()}}
    ratio = max(r["ratio"] for r in rows.values())
    data = {"mode": mode, "tensors": rows, "ratio": ratio, "envelope_modes": list(ENVELOPE[mode]),
            "envelope_source": "measured drift reports x this CPU" if scale_rows else "this CPU, emulated modes",
            "drift_scale": scale, "drift_rows": scale_rows}
    text = ", ".join(f"{k} {v['ratio']:.3g} envelopes (relative L2 {v['distance']:.3g})" for k, v in rows.items())
    if ratio <= SLACK:
        return Check("reference_outputs", "supports", "weak", f"{text}: inside the {mode} envelope; any platform computing in "
                     f"{mode} would produce the same, so this does not identify the platform", kind="test", data=data)
    strength = "strong" if ratio > STRONG else "weak"
    return Check("reference_outputs", "contradicts", strength, f"{text}: outside every {mode} envelope; these weights in {mode} "
                 "do not produce the published outputs", kind="test", data=data)


