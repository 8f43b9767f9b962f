"""Precision modes a CPU can emulate, to predict the envelope of hardware it is not.

Reduced-precision matmul inputs (TF32, HF32, bf16, fp16) are emulated by rounding each
tensor to that many mantissa bits as a backend places it, then computing in fp32;
accumulation order is emulated by reversing the summed dimension. Rows made this way
are labelled emulated in every report.
"""
from __future__ import annotations

import torch

from ..backends import CpuBackend
from ..precision import Emulation, dtype_row

FP32_BITS = dtype_row("fp32").mantissa_bits


def round_mantissa(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Round fp32 values to `bits` explicit mantissa bits (round to nearest even), keeping fp32 storage.

    Args:
        x: a tensor; other dtypes than fp32 are returned unchanged.
        bits: mantissa bits to keep (fewer than fp32's 23).
    Returns:
        The rounded tensor; inf and NaN are left alone.
    """
    if x.dtype != torch.float32:
        return x
    drop = FP32_BITS - bits
    as_int = x.contiguous().view(torch.int32)
    half = 1 << (drop - 1)
    lsb = (as_int >> drop) & 1
    rounded = ((as_int + (half - 1) + lsb) >> drop) << drop
    keep = ~torch.isfinite(x)  # leave inf/nan alone
    return torch.where(keep, x, rounded.view(torch.float32))


class EmulatedBackend(CpuBackend):
    """The CPU backend, rounding every tensor it places (or reversing its last dimension's order)."""

    def __init__(self, emulation: Emulation):
        super().__init__()
        self.emulation = emulation
        self.name = f"cpu-emulated-{emulation.mode}"

    def place(self, tensor: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Place a tensor as the CPU does, then round (and clamp) it as the emulated hardware would.

        Args:
            tensor: any tensor.
            dtype: the dtype to cast to; None keeps the tensor's own.
        Returns:
            The placed tensor.
        """
        out = super().place(tensor, dtype)
        if self.emulation.mantissa_bits is not None:
            out = round_mantissa(out, self.emulation.mantissa_bits)
            if self.emulation.clamp is not None:
                out = out.clamp(-self.emulation.clamp, self.emulation.clamp)
        return out

    def identity(self) -> dict:
        """The CPU's identity record, marked emulated and naming what it emulates.

        Returns:
            The identity record with backend, emulated and emulation set.
        """
        ident = super().identity()
        ident.update({"backend": self.name, "emulated": True, "emulation": self.emulation.description})
        return ident
