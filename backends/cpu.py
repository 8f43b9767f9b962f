from __future__ import annotations

import platform

import torch

from .base import Availability, Backend


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class CpuBackend(Backend):
    name = "cpu"
    device_type = "cpu"

    def probe(self) -> Availability:
        return Availability(True, "")

    def device_name(self) -> str:
        return _cpu_model()

    def versions(self) -> dict:
        return {"mkldnn": torch.backends.mkldnn.is_available(),
                "cpu_capability": torch.backends.cpu.get_cpu_capability()}
