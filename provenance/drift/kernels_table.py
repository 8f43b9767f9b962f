"""The kernels drift measures, and the real-weight inputs they run on.

Each row: the kernel (a function of a dict of placed tensors), whether it is a matmul
kernel (TF32/HF32 emulation applies), which input can be sliced along dim 0 for the
slice-invariance check, and the axis of its output that carries the hidden dimension
(so the reordered-accumulation emulation can undo its permutation).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .. import kernels
from ..anchors import choose_anchors
from ..errors import Unsupported
from ..fingerprint import N_ANCHORS

# input tensor -> axes holding the hidden dimension / the anchor dimension
HIDDEN_AXES = {"embed": (-1,), "wq": (-1,), "wk": (-1,), "wv": (-1,), "w_gate": (-1,), "w_up": (-1,),
               "wo": (0,), "w_down": (0,), "norm_a": (0,), "norm_b": (0,), "g_attn": (0,)}
ANCHOR_AXES = {"gram_a": (0, 1), "gram_b": (0, 1), "up_a": (-1,), "up_b": (-1,)}


@dataclass(frozen=True)
class DriftKernel:
    fn: Callable[[dict], torch.Tensor]
    matmul: bool
    slice_input: str | None = None
    output_hidden_axis: int | None = None


KERNELS: dict[str, DriftKernel] = {
    "std": DriftKernel(lambda i: kernels.std(i["wq"]), matmul=False),
    "rms_norm": DriftKernel(lambda i: kernels.rms_rows(i["embed"]), matmul=False, slice_input="embed", output_hidden_axis=-1),
    "centred_correlation": DriftKernel(lambda i: kernels.pearson(i["norm_a"], i["norm_b"]), matmul=False),
    "anchor_features": DriftKernel(lambda i: kernels.projection_features(kernels.anchor_inputs(i["embed"], i["g_attn"]), i["wq"]), matmul=True, slice_input="embed"),
    "gram": DriftKernel(lambda i: kernels.gram(kernels.projection_features(kernels.anchor_inputs(i["embed"], i["g_attn"]), i["wq"])), matmul=True),
    "unbiased_cka": DriftKernel(lambda i: kernels.unbiased_cka(i["gram_a"], i["gram_b"]), matmul=True),
    "assignment_cost": DriftKernel(lambda i: kernels.neuron_similarity(None, kernels.standardize_rows(i["up_a"]), None,
                                                                      kernels.standardize_rows(i["up_b"])),
                                   matmul=True, slice_input="up_a"),
    "block_forward": DriftKernel(lambda i: kernels.block_forward(i["embed"], i["wq"], i["wk"], i["wv"], i["wo"], i["w_gate"],
                                                                 i["w_up"], i["w_down"], i["heads"], i["kv_heads"]),
                                 matmul=True, slice_input="embed", output_hidden_axis=-1),
}


def kernel_inputs(view_a, view_b, layer: int = 0) -> dict:
    """Float64 CPU tensors from two models' real weights (B supplies the second operand of pair kernels)."""
    def f64(t):
        return None if t is None else t.detach().to(torch.float64)

    out = {}
    for view, suffix in ((view_a, "a"), (view_b, "b")):
        embed = view.get("embed")
        _, rows, _ = choose_anchors(view.source.vocab_tokens, embed.shape[0], N_ANCHORS)
        e = f64(embed[rows])
        g = kernels.fold_norm(torch.ones(e.shape[-1], dtype=torch.float64), f64(view.get("norm.attn", layer)))
        wq, up = f64(view.get("attn.q", layer)), f64(view.get("mlp.up", layer))
        # the same features the fingerprint stores: Q Gram and up-neuron profiles over the anchors
        out[f"gram_{suffix}"] = kernels.gram(kernels.projection_features(kernels.anchor_inputs(e, g), wq))
        out[f"up_{suffix}"] = kernels.neuron_profiles(kernels.anchor_inputs(e, f64(view.get("norm.mlp", layer))), up).contiguous()
        out[f"norm_{suffix}"] = g
        if suffix == "a":
            out.update({"embed": e, "g_attn": g, "wq": wq, "wk": f64(view.get("attn.k", layer)), "wv": f64(view.get("attn.v", layer)),
                        "wo": f64(view.get("attn.o", layer)), "w_gate": f64(view.get("mlp.gate", layer)), "w_up": up,
                        "w_down": f64(view.get("mlp.down", layer))})
            facts = view.facts
            out["heads"] = facts["num_attention_heads"] or 1
            out["kv_heads"] = facts["num_key_value_heads"] or out["heads"]
    if out["gram_a"].shape != out["gram_b"].shape or out["norm_a"].shape != out["norm_b"].shape:
        raise Unsupported("drift pair kernels need two models of the same shape")
    return out


def reorder(inputs: dict, gen: torch.Generator) -> tuple[dict, torch.Tensor]:
    """One hidden and one anchor permutation applied to every input consistently: same math, other summation order."""
    hidden = inputs["embed"].shape[-1]
    anchors = inputs["gram_a"].shape[0]
    ph, pa = torch.randperm(hidden, generator=gen), torch.randperm(anchors, generator=gen)
    out = dict(inputs)
    for name, axes in HIDDEN_AXES.items():
        for ax in axes:
            if out.get(name) is not None:  # a model without a gate projection has no w_gate
                out[name] = out[name].index_select(ax % out[name].dim(), ph)
    for name, axes in ANCHOR_AXES.items():
        for ax in axes:
            out[name] = out[name].index_select(ax % out[name].dim(), pa)
    return out, ph
