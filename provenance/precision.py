"""Every precision fact in one table: dtypes, precision modes and the modes a CPU emulates.

Drift measures, judges and compares through these rows; backends set the flags a mode row names
for their device type. A name with no row is an error naming the table it is missing from, never
a silent default: a new device type needs its flags in the mode rows before a mode runs on it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

import torch

from .errors import Unsupported

TABLE = "provenance/precision.py"


class MissingPrecisionRow(Unsupported, ValueError):
    """A dtype, mode, emulation or device type this table has no row for."""


@dataclass(frozen=True)
class DtypeRow:
    """One floating-point format as drift measures and judges it.

    Attributes:
        name: the short name used in reports and on the command line ("fp32").
        torch_dtype: the torch dtype it computes in.
        mantissa_bits: explicit mantissa bits (the unit of an ulp).
        share_threshold: relative error above which an element counts as bad (msprobe: 0.1% fp32,
            1% fp16/bf16).
        measured: whether drift measures kernels in it (float64 is the golden, not a measured dtype).
    """

    name: str
    torch_dtype: torch.dtype
    mantissa_bits: int
    share_threshold: float
    measured: bool = True

    @property
    def floor(self) -> float:
        """Half an ulp at 1.0: errors at or below it are indistinguishable from exact."""
        return 2.0 ** -(self.mantissa_bits + 1)

    @property
    def torch_name(self) -> str:
        """torch's own name of the dtype ("float32"), as fingerprint settings record it."""
        return str(self.torch_dtype).removeprefix("torch.")


@dataclass(frozen=True)
class ModeRow:
    """One precision mode for fp32 matmul and convolution.

    Attributes:
        name: the mode's name in reports ("ieee", "tf32").
        description: what the mode means, in one line.
        mode_class: modes of one class mean the same thing on different hardware; drift compare
            matches rows by class.
        input_mantissa_bits: mantissa bits the hardware keeps of each matmul input (None: all of fp32's).
        flags: device type -> the backend flags that select the mode there. A device type absent here
            does not have the mode (TF32 has no NPU meaning, HF32 no CUDA one).
    """

    name: str
    description: str
    mode_class: str
    input_mantissa_bits: int | None = None
    flags: Mapping[str, Mapping[str, bool]] = field(default_factory=dict)

    def __post_init__(self):
        frozen = {k: MappingProxyType(dict(v)) for k, v in self.flags.items()}
        object.__setattr__(self, "flags", MappingProxyType(frozen))


@dataclass(frozen=True)
class Emulation:
    """A precision mode the CPU emulates, to predict the envelope of hardware it is not.

    Attributes:
        mode: the emulated mode's name in reports.
        description: the hardware it stands for.
        mantissa_bits: matmul inputs are rounded to this many mantissa bits (None: not rounded).
        reorder: the summed dimension's order is reversed (another accumulation order).
        clamp: inputs are clamped to this magnitude (the largest finite value of a narrower format).
    """

    mode: str
    description: str
    mantissa_bits: int | None = None
    reorder: bool = False
    clamp: float | None = None


DTYPES: tuple[DtypeRow, ...] = (
    DtypeRow("fp64", torch.float64, 52, 1e-6, measured=False),
    DtypeRow("fp32", torch.float32, 23, 1e-3),
    DtypeRow("bf16", torch.bfloat16, 7, 1e-2),
    DtypeRow("fp16", torch.float16, 10, 1e-2),
)

MODES: tuple[ModeRow, ...] = (
    ModeRow("ieee", "IEEE fp32 matmul and convolution: no reduced-precision inputs", "ieee", None,
            {"cpu": {}, "cuda": {"cuda_matmul_tf32": False, "cudnn_tf32": False},
             "npu": {"npu_matmul_hf32": False, "npu_conv_hf32": False}}),
    ModeRow("tf32", "TF32 tensor-core inputs (10-bit mantissa) for fp32 matmul and convolution", "reduced-fp32", 10,
            {"cuda": {"cuda_matmul_tf32": True, "cudnn_tf32": True}}),
    ModeRow("hf32", "HF32 inputs (11-bit mantissa) for fp32 matmul and convolution on Ascend", "reduced-fp32", 11,
            {"npu": {"npu_matmul_hf32": True, "npu_conv_hf32": True}}),
)

_BY_DTYPE = {r.name: r for r in DTYPES}
_BY_TORCH = {r.torch_dtype: r for r in DTYPES}
_BY_MODE = {r.name: r for r in MODES}


def _missing(kind: str, name: object, known) -> MissingPrecisionRow:
    return MissingPrecisionRow(f"no {kind} row {name!r} in {TABLE} (rows: {', '.join(known)})")


def dtype_row(name: str) -> DtypeRow:
    """The row of a dtype.

    Args:
        name: short name ("fp32") or torch's name ("float32").
    Returns:
        Its DtypeRow.
    Raises:
        MissingPrecisionRow: no row has that name.
    """
    row = _BY_DTYPE.get(name) or next((r for r in DTYPES if r.torch_name == name), None)
    if row is None:
        raise _missing("dtype", name, _BY_DTYPE)
    return row


def dtype_row_of(dtype: torch.dtype) -> DtypeRow:
    """The row of a torch dtype.

    Args:
        dtype: a torch floating-point dtype.
    Returns:
        Its DtypeRow.
    Raises:
        MissingPrecisionRow: the table has no row for it.
    """
    row = _BY_TORCH.get(dtype)
    if row is None:
        raise _missing("dtype", str(dtype), _BY_DTYPE)
    return row


def measured_dtypes() -> tuple[str, ...]:
    """The dtype names drift measures kernels in (what `--dtypes` accepts), in table order."""
    return tuple(r.name for r in DTYPES if r.measured)


def mode_row(name: str) -> ModeRow:
    """The row of a precision mode.

    Args:
        name: the mode's name ("ieee", "tf32", ...).
    Returns:
        Its ModeRow.
    Raises:
        MissingPrecisionRow: no row has that name.
    """
    row = _BY_MODE.get(name)
    if row is None:
        raise _missing("precision mode", name, _BY_MODE)
    return row


def mode_class(name: str) -> str:
    """The class a mode belongs to; an emulated mode with no mode row is its own class.

    Args:
        name: a mode name as a drift report row carries it.
    Returns:
        The mode's class name.
    """
    row = _BY_MODE.get(name)
    return row.mode_class if row is not None else name


def modes_on(device_type: str) -> list[str]:
    """The modes that exist on a device type, in table order.

    Args:
        device_type: a backend's device type ("cpu", "cuda", ...).
    Returns:
        Mode names; "ieee" first when the device type has a row for it.
    Raises:
        MissingPrecisionRow: no mode row names the device type, so not even IEEE can be set on it.
    """
    found = [r.name for r in MODES if device_type in r.flags]
    if not found:
        raise MissingPrecisionRow(f"no precision mode row in {TABLE} has flags for device type {device_type!r} "
                                  f"(add them to the 'ieee' row at least)")
    return found


def mode_flags(name: str, device_type: str) -> Mapping[str, bool]:
    """The backend flags that select a mode on a device type.

    Args:
        name: the mode's name.
        device_type: the backend's device type.
    Returns:
        Flag name -> value (empty when the device has nothing to set).
    Raises:
        MissingPrecisionRow: the mode has no row, or its row has no flags for this device type.
    """
    row = mode_row(name)
    if device_type not in row.flags:
        raise MissingPrecisionRow(f"precision mode {name!r} does not exist on device type {device_type!r}: "
                                  f"its row in {TABLE} has flags for {', '.join(row.flags)} only")
    return row.flags[device_type]


# mode -> what it stands for on real hardware; the bits come from the dtype and mode rows above
EMULATIONS: tuple[Emulation, ...] = (
    Emulation("tf32", "CUDA TF32 tensor cores: fp32 matmul inputs rounded to 10 mantissa bits",
              mode_row("tf32").input_mantissa_bits),
    Emulation("hf32", "Ascend HF32: fp32 matmul inputs rounded to 11 mantissa bits", mode_row("hf32").input_mantissa_bits),
    Emulation("bf16-inputs", "bf16 inputs, fp32 accumulation", dtype_row("bf16").mantissa_bits),
    Emulation("fp16-inputs", "fp16-class inputs (pre-910B Ascend fp32 matmul), fp32 accumulation",
              dtype_row("fp16").mantissa_bits, clamp=torch.finfo(torch.float16).max),
    Emulation("reordered", "another accumulation order (a different GEMM kernel or device)", None, reorder=True),
)
_BY_EMULATION = {e.mode: e for e in EMULATIONS}


def emulation(mode: str) -> Emulation:
    """The row of an emulated mode.

    Args:
        mode: the emulated mode's name ("tf32", "reordered", ...).
    Returns:
        Its Emulation.
    Raises:
        MissingPrecisionRow: no emulation row has that name.
    """
    row = _BY_EMULATION.get(mode)
    if row is None:
        raise _missing("emulation", mode, _BY_EMULATION)
    return row
