"""Precision modes a CPU can emulate, to predict the envelope of hardware it is not.

Reduced-precision matmul inputs (TF32, HF32, bf16, fp16) are emulated by rounding each
tensor to that many mantissa bits as a backend places it, then computing in fp32;
accumulation order is emulated by reversing the summed dimension. Rows made this way
are labelled emulated in every report.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..backends import CpuBackend


def round_mantissa(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Round fp32 values to `bits` explicit mantissa bits (round to nearest even), keeping fp32 storage."""
    if x.dtype != torch.float32:
        return x
    drop = 23 - bits
    as_int = x.contiguous().view(torch.int32)
    half = 1 << (drop - 1)
    lsb = (as_int >> drop) & 1
    rounded = ((as_int + (half - 1) + lsb) >> drop) << drop
    keep = ~torch.isfinite(x)  # leave inf/nan alone
    return torch.where(keep, x, rounded.view(torch.float32))


@dataclass(frozen=True)
class Emulation:
    mode: str
    description: str
    mantissa_bits: int | None = None   # inputs rounded to this many bits
    reorder: bool = False             # reduction order reversed


# mode -> what it stands for on real hardware
EMULATIONS = {
    "tf32": Emulation("tf32", "CUDA TF32 tensor cores: fp32 matmul inputs rounded to 10 mantissa bits", 10),
    "hf32": Emulation("hf32", "Ascend HF32: fp32 matmul inputs rounded to 11 mantissa bits", 11),
    "bf16-inputs": Emulation("bf16-inputs", "bf16 inputs, fp32 accumulation", 7),
    "fp16-inputs": Emulation("fp16-inputs", "fp16-class inputs (pre-910B Ascend fp32 matmul), fp32 accumulation", 10),
    "reordered": Emulation("reordered", "another accumulation order (a different GEMM kernel or device)", None, True),
}


class EmulatedBackend(CpuBackend):
    """The CPU backend, rounding every tensor it places (or reversing its last dimension's order)."""

    def __init__(self, emulation: Emulation):
        super().__init__()
        self.emulation = emulation
        self.name = f"cpu-emulated-{emulation.mode}"

    def place(self, tensor: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        out = super().place(tensor, dtype)
        if self.emulation.mantissa_bits is not None:
            out = round_mantissa(out, self.emulation.mantissa_bits)
            if self.emulation.mode == "fp16-inputs":
                out = out.clamp(-65504, 65504)
        return out

    def identity(self) -> dict:
        ident = super().identity()
        ident.update({"backend": self.name, "emulated": True, "emulation": self.emulation.description})
        return ident
