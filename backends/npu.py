"""Ascend NPU through torch_npu's documented API (torch.npu mirrors torch.cuda).

Detection follows the accelerate pattern: look for the module before importing it,
guard the import (it can fail on machines without the CANN runtime), cache the answer.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
from functools import lru_cache
import torch

from .base import AcceleratorBackend, Availability


@lru_cache(maxsize=1)
def import_torch_npu():
    """Import torch_npu once, never raising.

    Returns:
        (module, None), or (None, the reason it is unusable).
    """
    if importlib.util.find_spec("torch_npu") is None:
        return None, "torch_npu is not installed (pip install 'provenance-verifier[npu]' on an Ascend host)"
    try:
        return importlib.import_module("torch_npu"), None
    except Exception as exc:
        return None, f"torch_npu failed to import: {' '.join(str(exc).split())[:300]}"


class NpuBackend(AcceleratorBackend):
    """An Ascend NPU through torch_npu."""

    name = "npu"
    device_type = "npu"
    rank = 30

    def probe(self) -> Availability:
        """Detect an Ascend NPU without failing: torch_npu missing or broken, no device and a missing index are
        each a reason.

        Returns:
            Availability.
        """
        module, reason = import_torch_npu()
        if module is None:
            return Availability(False, reason)
        try:
            if not torch.npu.is_available():
                return Availability(False, "no Ascend NPU visible (torch.npu.is_available() is False)")
            count = torch.npu.device_count()
        except Exception as exc:
            return Availability(False, f"NPU driver error: {' '.join(str(exc).split())[:300]}")
        if self.index >= count:
            return Availability(False, f"NPU device {self.index} requested, {count} present")
        return Availability(True, "")

    def _read_flags(self) -> dict:
        npu = getattr(torch, "npu", None)
        if npu is None or not hasattr(npu, "matmul"):
            return {}
        return {"npu_matmul_hf32": bool(npu.matmul.allow_hf32), "npu_conv_hf32": bool(npu.conv.allow_hf32)}

    def _write_flags(self, flags: dict) -> None:
        if "npu_matmul_hf32" in flags:
            torch.npu.matmul.allow_hf32 = flags["npu_matmul_hf32"]
        if "npu_conv_hf32" in flags:
            torch.npu.conv.allow_hf32 = flags["npu_conv_hf32"]

    def device_name(self) -> str:
        """The NPU's name.

        Returns:
            torch.npu.get_device_name for this device.
        """
        return torch.npu.get_device_name(self.index)

    def versions(self) -> dict:
        """torch_npu, CANN and SoC versions (None where torch_npu cannot say).

        Returns:
            torch_npu, cann and soc_version.
        """
        module, _ = import_torch_npu()
        out = {"torch_npu": getattr(module, "__version__", None), "cann": None, "soc_version": None}
        with contextlib.suppress(Exception):
            out["cann"] = module.npu.utils.get_cann_version()
        with contextlib.suppress(Exception):
            out["soc_version"] = module.npu.get_soc_version()
        return out
