"""Backend adapters: where kernels run, at what precision, and who computed a result.

torch >= 2.5 autoloads installed device extensions on `import torch`; a broken
torch_npu would then break every command. Autoloading is turned off here and the
NPU adapter imports torch_npu itself, so a failure becomes a reason, not a crash.
"""
import os

os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")

from .base import PRECISION_MODES, AcceleratorBackend, Availability, Backend  # noqa: E402
from .cpu import CpuBackend  # noqa: E402
from .cuda import CudaBackend  # noqa: E402
from .npu import NpuBackend  # noqa: E402
from .registry import BACKENDS, available_backends, describe_backends, get_backend  # noqa: E402

__all__ = ["AcceleratorBackend", "Backend", "Availability", "PRECISION_MODES", "CpuBackend", "CudaBackend", "NpuBackend",
           "BACKENDS", "available_backends", "describe_backends", "get_backend"]
