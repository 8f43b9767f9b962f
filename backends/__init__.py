"""Backend adapters: where kernels run, at what precision, and who computed a result.

torch >= 2.5 autoloads installed device extensions on `import torch`; a broken
torch_npu would then break every command. Autoloading is turned off here and the
NPU adapter imports torch_npu itself, so a failure becomes a reason, not a crash.
"""
import os

os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")

from .base import AcceleratorBackend, Availability, Backend  # noqa: E402
from .cpu import CpuBackend  # noqa: E402
from .cuda import CudaBackend  # noqa: E402
from .npu import NpuBackend  # noqa: E402
from .registry import (BACKENDS, available_backends, backend_rank, describe_backends, get_backend,  # noqa: E402
                       register_backend, unregister_backend)

__all__ = ["AcceleratorBackend", "Backend", "Availability", "CpuBackend", "CudaBackend", "NpuBackend",
           "BACKENDS", "available_backends", "backend_rank", "describe_backends", "get_backend", "register_backend",
           "unregister_backend"]
