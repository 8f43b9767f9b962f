"""A claimed training segment: start checkpoint, optimizer state, batches, recipe and end checkpoint, validated."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import MalformedInput, Unsupported
from ..io.base import read_json_file
from ..io.safetensors_reader import read_header
from .claimfile import finite_number
from .hfmodel import load_state

# recipe key -> (required, check). Unknown keys are errors, as in the claim file.
RECIPE_KEYS = {
    "optimizer": True, "lr": True, "betas": True, "eps": True, "weight_decay": True, "grad_clip": False,
    "steps": True, "loss": True, "no_decay": False,
}
OPTIMIZERS = ("adamw",)
LOSSES = ("causal-lm",)   # cross-entropy of next-token prediction, labels = input_ids (transformers' convention)


@dataclass
class Segment:
    """A training segment as the claim publishes it, loaded and checked.

    Attributes:
        cfg: the model's config.json.
        start: the weights at the segment's start.
        exp_avg, exp_avg_sq: AdamW's moment estimates at the start.
        step: AdamW's step count at the start.
        batches: [steps, batch, seq] int64 token ids.
        recipe: the optimizer settings (RECIPE_KEYS).
        end: the weights the claim says the segment ended at.
        paths: the files, by role.
    """

    cfg: dict
    start: dict[str, torch.Tensor]
    exp_avg: dict[str, torch.Tensor]
    exp_avg_sq: dict[str, torch.Tensor]
    step: int
    batches: torch.Tensor          # [k, batch, seq] int64
    recipe: dict
    end: dict[str, torch.Tensor]
    paths: dict[str, Path]


def read_recipe(path: Path) -> dict:
    """The segment's optimizer recipe, strict: unknown keys refused, required ones present with their types.

    Args:
        path: recipe.json.
    Returns:
        The recipe.
    Raises:
        MalformedInput: not an object, an unknown or missing key, or a bad value.
        Unsupported: an optimizer or loss the replay does not implement.
    """
    doc = read_json_file(path)
    if not isinstance(doc, dict):
        raise MalformedInput("recipe is not a JSON object", path)
    for key in doc:
        if key not in RECIPE_KEYS:
            raise MalformedInput(f"unknown recipe key {key!r} (known: {', '.join(RECIPE_KEYS)})", path)
    for key, required in RECIPE_KEYS.items():
        if required and key not in doc:
            raise MalformedInput(f"recipe lacks {key!r}", path)
    if doc["optimizer"] not in OPTIMIZERS:
        raise Unsupported(f"recipe optimizer {doc['optimizer']!r} (supported: {', '.join(OPTIMIZERS)})", path)
    if doc["loss"] not in LOSSES:
        raise Unsupported(f"recipe loss {doc['loss']!r} (supported: {', '.join(LOSSES)})", path)
    betas = doc["betas"]
    if not (isinstance(betas, list) and len(betas) == 2):
        raise MalformedInput("recipe betas must be a list of two numbers", path)
    steps = doc["steps"]
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise MalformedInput(f"recipe steps must be a positive integer, not {steps!r}", path)
    clip = doc.get("grad_clip")
    no_decay = doc.get("no_decay", [])
    if not (isinstance(no_decay, list) and all(isinstance(s, str) for s in no_decay)):
        raise MalformedInput("recipe no_decay must be a list of parameter-name substrings", path)
    return {
        "optimizer": doc["optimizer"], "loss": doc["loss"], "steps": steps, "no_decay": no_decay,
        "lr": finite_number(doc["lr"], "recipe lr", path, minimum=0.0),
        "betas": [finite_number(b, "recipe betas", path, minimum=0.0) for b in betas],
        "eps": finite_number(doc["eps"], "recipe eps", path, minimum=0.0),
        "weight_decay": finite_number(doc["weight_decay"], "recipe weight_decay", path, minimum=0.0),
        "grad_clip": None if clip in (None, 0) else finite_number(clip, "recipe grad_clip", path, minimum=0.0),
    }


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    from safetensors.torch import load_file
    if path.is_dir() or not path.name.endswith(".safetensors"):
        raise Unsupported("expected a .safetensors file", path)
    _, meta = read_header(path)  # validated before the library maps it
    return load_file(path), meta


def read_optimizer(path: Path, start: dict[str, torch.Tensor]) -> tuple[dict, dict, int]:
    """AdamW's state at the segment's start, matched to the start weights.

    Args:
        path: the optimizer state (.safetensors with the step in its metadata).
        start: the start weights.
    Returns:
        (exp_avg, exp_avg_sq, step).
    Raises:
        MalformedInput: a missing or negative step, a tensor that does not match a weight, a weight without
            state, or non-finite values.
    """
    tensors, meta = _read_safetensors(path)
    try:
        step = int(meta.get("step", ""))
    except ValueError:
        raise MalformedInput(f"metadata key 'step' must be an integer, not {meta.get('step')!r}", path) from None
    if step < 0:
        raise MalformedInput(f"metadata step {step} is negative", path)
    m, v = {}, {}
    for name, t in tensors.items():
        param, _, kind = name.rpartition(".")
        if kind not in ("exp_avg", "exp_avg_sq") or param not in start:
            raise MalformedInput(f"tensor {name!r} is not <parameter>.exp_avg or <parameter>.exp_avg_sq of a start parameter", path)
        if tuple(t.shape) != tuple(start[param].shape):
            raise MalformedInput(f"tensor {name!r} has shape {tuple(t.shape)}, the parameter has {tuple(start[param].shape)}", path)
        t = t.to(torch.float32)
        if not torch.isfinite(t).all() or (kind == "exp_avg_sq" and (t < 0).any()):
            raise MalformedInput(f"tensor {name!r} holds NaN, Inf{' or negative values' if kind == 'exp_avg_sq' else ''}", path)
        (m if kind == "exp_avg" else v)[param] = t
    for param in start:
        if param not in m or param not in v:
            raise MalformedInput(f"no exp_avg/exp_avg_sq for parameter {param!r}", path)
    return m, v, step


def read_batches(path: Path, steps: int, vocab: int) -> torch.Tensor:
    """The segment's token batches.

    Args:
        path: batches (.safetensors holding input_ids only).
        steps: the recipe's step count.
        vocab: the model's vocabulary size.
    Returns:
        [steps, batch, seq] int64 token ids.
    Raises:
        MalformedInput: other tensors, another shape or ids out of range.
    """
    tensors, _ = _read_safetensors(path)
    if set(tensors) != {"input_ids"}:
        extra = sorted(set(tensors) - {"input_ids"})
        raise MalformedInput(f"unexpected tensor {extra[0]!r} (only input_ids)" if extra else "no tensor input_ids", path)
    ids = tensors["input_ids"]
    if ids.dtype.is_floating_point or ids.dtype == torch.bool or ids.dim() != 3:
        raise MalformedInput(f"input_ids must be integers of shape [k, batch, seq], not {ids.dtype} {tuple(ids.shape)}", path)
    if ids.shape[0] != steps:
        raise MalformedInput(f"input_ids holds {ids.shape[0]} steps, the recipe says {steps}", path)
    if ids.shape[2] < 2 or ids.numel() == 0:
        raise MalformedInput(f"input_ids shape {tuple(ids.shape)} has no next token to predict", path)
    if int(ids.min()) < 0 or int(ids.max()) >= vocab:
        raise MalformedInput(f"input_ids outside [0, {vocab})", path)
    return ids.to(torch.int64)


def load_segment(paths: dict[str, Path]) -> Segment:
    """Read and cross-check every artifact of a [segment] section.

    Args:
        paths: the segment's keys (start, optimizer, batches, recipe, end) resolved to paths.
    Returns:
        A Segment; raises MalformedInput/Unsupported naming the file on any inconsistency.
    """
    recipe = read_recipe(paths["recipe"])
    cfg, start = load_state(paths["start"])
    end_cfg, end = load_state(paths["end"])
    for name, t in start.items():
        if name not in end or tuple(end[name].shape) != tuple(t.shape):
            raise MalformedInput(f"end checkpoint lacks {name!r} or has another shape for it", paths["end"])
    if set(end) != set(start):
        raise MalformedInput(f"end checkpoint has tensor {sorted(set(end) - set(start))[0]!r} that start lacks", paths["end"])
    m, v, step = read_optimizer(paths["optimizer"], start)
    vocab = int(cfg.get("vocab_size") or start[next(k for k in start if "embed_tokens" in k)].shape[0])
    batches = read_batches(paths["batches"], recipe["steps"], vocab)
    return Segment(cfg, start, m, v, step, batches, recipe, end, dict(paths))


def tensor_norm(t: torch.Tensor) -> float:
    """The L2 norm, computed in float64.

    Args:
        t: any tensor.
    Returns:
        Its norm.
    """
    return math.sqrt(float(t.double().pow(2).sum()))
