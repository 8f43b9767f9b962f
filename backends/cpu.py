from __future__ import annotations

import os
import platform

import torch

from .base import Availability, Backend

CPUINFO = "/proc/cpuinfo"
# /proc/cpuinfo flags that choose which kernels torch runs (and so the bits training gives):
# exact names, and prefixes that cover whole families (avx512f, avx512bw, avx512_bf16, amx_tile ...)
ISA_FLAGS = ("sse4_2", "fma", "f16c", "avx", "avx2", "avx_vnni")
ISA_PREFIXES = ("avx512", "amx")


def _cpuinfo() -> tuple[str | None, list[str] | None]:
    """The CPU model name and its instruction-set flags from the first processor, when readable."""
    model, flags = None, None
    try:
        with open(CPUINFO, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model is None:
                    model = value.strip()
                elif key in ("flags", "Features") and flags is None:
                    flags = value.split()
                if model is not None and flags is not None:
                    break
    except OSError:
        pass
    return model, flags


def isa_flags(flags: list[str] | None) -> list[str] | None:
    """The flags that matter to torch's CPU kernels.

    Args:
        flags: the CPU's flags as /proc/cpuinfo lists them, or None when unreadable.
    Returns:
        The relevant flags, sorted; None when the flags could not be read.
    """
    if flags is None:
        return None
    return sorted(f for f in set(flags) if f in ISA_FLAGS or f.startswith(ISA_PREFIXES))


def _cpu_model() -> str:
    return _cpuinfo()[0] or platform.processor() or platform.machine()


class CpuBackend(Backend):
    """The host CPU: always available, and where the float64 golden runs."""

    name = "cpu"
    device_type = "cpu"
    rank = 10

    def probe(self) -> Availability:
        """The CPU is always there.

        Returns:
            Availability(True).
        """
        return Availability(True, "")

    def device_name(self) -> str:
        """The CPU model.

        Returns:
            /proc/cpuinfo's model name, else what the platform module says.
        """
        return _cpu_model()

    def versions(self) -> dict:
        """Besides versions, the instruction set torch dispatches to: the same training gives different bits
        on AVX2 and AVX-512, so a result's CPU capability is part of who computed it.

        Returns:
            mkldnn, cpu_capability, cpu_capability_override, cpu_model, machine and isa_flags.
        """
        return {"mkldnn": torch.backends.mkldnn.is_available(),
                "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                "cpu_capability_override": os.environ.get("ATEN_CPU_CAPABILITY"),
                "cpu_model": _cpu_model(),
                "machine": platform.machine(),
                "isa_flags": isa_flags(_cpuinfo()[1])}
