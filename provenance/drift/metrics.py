"""Error of one output against its float64 golden, in msprobe's terms."""
from __future__ import annotations

import math

import torch

from ..precision import dtype_row_of

SMALL_VALUE = 1e-3  # elements below this fraction of the tensor's largest magnitude are judged by absolute error


NON_FINITE = {"max_rel_err": None, "median_rel_err": None, "max_ulp": None, "median_ulp": None, "ulp_p90": None, "ulp_p99": None,
              "share_above_threshold": None, "small_value_abs_err": None, "cosine": None, "finite": False}


def errors(out: torch.Tensor, golden: torch.Tensor, dtype: torch.dtype) -> dict:
    """Error metrics of one output against its float64 golden, in msprobe's terms.

    Args:
        out: the output, on any device, in any dtype.
        golden: the float64 golden output of the same shape.
        dtype: the dtype whose ulp and share threshold apply (a dtype row of the precision table).
    Returns:
        max/median relative error, ulp statistics, the share above the dtype's threshold, the small-value
        absolute error, the cosine and finite; an output with NaN or Inf (an overflow) gets no error
        numbers, only finite=False.
    Raises:
        ValueError: the shapes differ.
        MissingPrecisionRow: the dtype has no row in the precision table.
    """
    o = out.detach().to("cpu", torch.float64).reshape(-1)
    if not torch.isfinite(o).all():
        return dict(NON_FINITE)
    g = golden.detach().to("cpu", torch.float64).reshape(-1)
    if o.shape != g.shape:
        raise ValueError(f"output shape {tuple(out.shape)} differs from golden {tuple(golden.shape)}")
    diff = (o - g).abs()
    scale = float(g.abs().max()) or 1.0
    small = g.abs() < SMALL_VALUE * scale
    normal = ~small
    rel = diff[normal] / g.abs()[normal]
    row = dtype_row_of(dtype)
    bits = row.mantissa_bits
    exponent = torch.floor(torch.log2(g.abs().clamp_min(torch.finfo(torch.float64).tiny)))
    ulp = torch.pow(2.0, exponent - bits)
    ulps = diff[normal] / ulp[normal]
    cos = float((o @ g) / (o.norm() * g.norm())) if o.norm() > 0 and g.norm() > 0 else (1.0 if torch.equal(o, g) else 0.0)
    return {
        "max_rel_err": float(rel.max()) if rel.numel() else 0.0,
        "median_rel_err": float(rel.median()) if rel.numel() else 0.0,
        "max_ulp": float(ulps.max()) if ulps.numel() else 0.0,
        "median_ulp": float(ulps.median()) if ulps.numel() else 0.0,
        "ulp_p90": float(torch.quantile(ulps, 0.9)) if ulps.numel() else 0.0,
        "ulp_p99": float(torch.quantile(ulps, 0.99)) if ulps.numel() else 0.0,
        "share_above_threshold": float((rel > row.share_threshold).double().mean()) if rel.numel() else 0.0,
        "small_value_abs_err": float(diff[small].max() / scale) if small.any() else 0.0,
        "cosine": cos if math.isfinite(cos) else 0.0,
        "finite": bool(torch.isfinite(o).all()),
    }


def bitwise_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same shape, same dtype, same bits.

    Args:
        a, b: tensors on any device.
    Returns:
        True when every byte is equal.
    """
    a, b = a.detach().cpu(), b.detach().cpu()
    return a.shape == b.shape and a.dtype == b.dtype and torch.equal(a.reshape(-1).contiguous().view(torch.uint8), b.reshape(-1).contiguous().view(torch.uint8))
