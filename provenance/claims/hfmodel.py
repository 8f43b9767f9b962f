"""HF-layout checkpoints into transformers' own model classes, and the precision modes they run in.

Only classes named in MODEL_CLASSES are built (never remote code). Weights are read through the
project's validated readers, so a hostile file gets the same one-line errors as everywhere else.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from ..drift.emulation import round_mantissa
from ..errors import MalformedInput, Unsupported
from ..io import load_config, open_source

# config.json model_type -> transformers class. Dense decoders whose checkpoints load as they are.
MODEL_CLASSES = {"qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM", "llama": "LlamaForCausalLM",
                 "mistral": "MistralForCausalLM"}
# model types known and refused, with the reason
REFUSED = {
    "qwen2_moe": "the embedded zoo's MoE layout has no shared_expert_gate, which transformers' Qwen2-MoE applies "
                 "(a sigmoid gate on the shared expert); MoE replay is not supported (dense models are)",
}


def require_transformers():
    """transformers, imported on demand (an optional dependency).

    Returns:
        The transformers module.
    Raises:
        Unsupported: it is not installed (the message names the extra to install).
    """
    try:
        import transformers
    except ImportError:
        raise Unsupported("replaying or recomputing outputs needs transformers: pip install 'provenance[replay]'") from None
    return transformers


def load_state(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config, fp32 state dict) of an HF-layout checkpoint directory; NaN/Inf weights are refused.

    Args:
        path: the checkpoint directory, or a weights file inside it.
    Returns:
        (config.json as a dict, tensor name -> fp32 tensor).
    Raises:
        MalformedInput: no config.json, or non-finite weights.
        Unsupported: integer weights.
    """
    path = Path(path)
    directory = path if path.is_dir() else path.parent
    cfg = load_config(directory)
    if not cfg:
        raise MalformedInput("no config.json: the model class cannot be chosen", directory)
    if path.is_dir() and not (path / "model.safetensors.index.json").exists() and (path / "model.safetensors").is_file():
        path = path / "model.safetensors"  # the weights only: optimizer state may sit beside them
    source = open_source(path)
    try:
        state = {}
        for name in source.infos():
            t = source.get(name)
            if not t.is_floating_point():
                raise Unsupported(f"tensor {name!r} is {t.dtype}; replay needs floating-point weights", path)
            t = t.to(torch.float32).contiguous()
            if not torch.isfinite(t).all():
                raise MalformedInput(f"tensor {name!r} holds NaN or Inf", path)
            state[name] = t
    finally:
        source.close()
    return cfg, state


def build_model(cfg: dict, state: dict[str, torch.Tensor], where: Path, dtype: torch.dtype = torch.float32):
    """The transformers model named by cfg's model_type, holding `state` exactly (names and shapes checked).

    Args:
        cfg: the checkpoint's config.json.
        state: tensor name -> tensor, as load_state gives it.
        where: the checkpoint, for messages.
        dtype: the dtype the model computes in.
    Returns:
        The model in eval mode (never built from remote code).
    Raises:
        Unsupported: a model_type not in MODEL_CLASSES, or a refused one.
        MalformedInput: a tensor missing or foreign to the model class.
    """
    transformers = require_transformers()
    model_type = cfg.get("model_type")
    if model_type in REFUSED:
        raise Unsupported(f"model_type {model_type!r}: {REFUSED[model_type]}", where)
    if model_type not in MODEL_CLASSES:
        raise Unsupported(f"model_type {model_type!r} is not one of {', '.join(MODEL_CLASSES)}", where)
    kwargs = {k: v for k, v in cfg.items() if k not in ("architectures", "auto_map", "model_type", "torch_dtype", "dtype")}
    kwargs.setdefault("tie_word_embeddings", "lm_head.weight" not in state)
    config = transformers.AutoConfig.for_model(model_type, **kwargs)
    with _default_dtype(dtype):
        model = getattr(transformers, MODEL_CLASSES[model_type])(config)
    expected = model.state_dict()
    if config.tie_word_embeddings:
        expected.pop("lm_head.weight", None)
    for name in expected:
        if name not in state:
            raise MalformedInput(f"tensor {name!r} is missing for {MODEL_CLASSES[model_type]}", where)
    for name, t in state.items():
        if name not in expected:
            raise MalformedInput(f"tensor {name!r} is not part of {MODEL_CLASSES[model_type]}", where)
        if tuple(t.shape) != tuple(expected[name].shape):
            raise MalformedInput(f"tensor {name!r} has shape {tuple(t.shape)}, the config implies {tuple(expected[name].shape)}", where)
    model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=False)
    if config.tie_word_embeddings:
        model.tie_weights()
    return model


@contextlib.contextmanager
def _default_dtype(dtype):
    saved = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(saved)


def _ste_round(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Rounded to `bits` mantissa bits forward, identity backward (a straight-through estimator)."""
    if x.dtype != torch.float32:
        return x
    return x + (round_mantissa(x.detach(), bits) - x.detach())


class LinearMode(TorchFunctionMode):
    """Every F.linear with inputs rounded to `bits` mantissa bits, and/or its reduction run in reverse order.

    Reversing the summed dimension of both operands leaves the product unchanged in exact
    arithmetic and changes only the order in which fp32 accumulates it.
    """

    def __init__(self, bits: int | None = None, reorder: bool = False):
        super().__init__()
        self.bits, self.reorder = bits, reorder

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear:
            x, w = args[0], args[1]
            b = args[2] if len(args) > 2 else kwargs.get("bias")
            if self.bits is not None:
                x, w = _ste_round(x, self.bits), _ste_round(w, self.bits)
            if self.reorder:
                x, w = x.flip(-1), w.flip(-1)
            return func(x, w, b)
        return func(*args, **kwargs)
