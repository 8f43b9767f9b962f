"""NVIDIA CUDA, and AMD ROCm through the same torch.cuda API: a ROCm build of torch runs its HIP
kernels under the "cuda" device type and says so in its identity (runtime "rocm", its HIP version)."""
from __future__ import annotations

import torch

from .base import AcceleratorBackend, Availability


def hip_version() -> str | None:
    """The HIP version of a ROCm build of torch.

    Returns:
        torch.version.hip, or None on a CUDA or CPU build.
    """
    return getattr(torch.version, "hip", None)


class CudaBackend(AcceleratorBackend):
    """A CUDA (or ROCm) device through torch.cuda."""

    name = "cuda"
    device_type = "cuda"
    rank = 20

    def probe(self) -> Availability:
        """Detect a CUDA (or ROCm) device without failing: a CPU build, no device, a driver error and a missing
        index are each a reason.

        Returns:
            Availability.
        """
        if torch.version.cuda is None and hip_version() is None:
            return Availability(False, f"this torch build ({torch.__version__}) has no CUDA support")
        try:
            if not torch.cuda.is_available():
                return Availability(False, "no CUDA device visible (torch.cuda.is_available() is False)")
            count = torch.cuda.device_count()
        except Exception as exc:  # driver errors surface here
            return Availability(False, f"CUDA driver error: {' '.join(str(exc).split())}")
        if self.index >= count:
            return Availability(False, f"CUDA device {self.index} requested, {count} present")
        return Availability(True, "")

    def _read_flags(self) -> dict:
        return {"cuda_matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
                "cudnn_tf32": torch.backends.cudnn.allow_tf32,
                "cudnn_deterministic": torch.backends.cudnn.deterministic,
                "cudnn_benchmark": torch.backends.cudnn.benchmark}

    def _write_flags(self, flags: dict) -> None:
        if "cuda_matmul_tf32" in flags:
            torch.backends.cuda.matmul.allow_tf32 = flags["cuda_matmul_tf32"]
        if "cudnn_tf32" in flags:
            torch.backends.cudnn.allow_tf32 = flags["cudnn_tf32"]

    def device_name(self) -> str:
        """The GPU's name.

        Returns:
            torch.cuda.get_device_name for this device.
        """
        return torch.cuda.get_device_name(self.device)

    def versions(self) -> dict:
        """Runtime and library versions and the device's properties; on ROCm, the HIP version and GPU
        architecture (cudnn is then MIOpen's version, as torch reports it).

        Returns:
            runtime ("cuda" or "rocm"), cuda, hip, cudnn, compute_capability, total_memory_bytes (and gpu_arch on ROCm).
        """
        props = torch.cuda.get_device_properties(self.device)
        hip = hip_version()
        out = {"runtime": "rocm" if hip else "cuda", "cuda": torch.version.cuda, "hip": hip,
               "cudnn": torch.backends.cudnn.version(), "compute_capability": f"{props.major}.{props.minor}",
               "total_memory_bytes": props.total_memory}
        if hip:
            out["gpu_arch"] = getattr(props, "gcnArchName", None)
        return out
