"""The Backend protocol. Kernels never touch devices; adapters do it for them."""
from __future__ import annotations

import contextlib
import os
import platform
import sys
import time
from dataclasses import dataclass
from typing import Iterator

import torch

from ..precision import mode_flags, modes_on


@dataclass(frozen=True)
class Availability:
    """Whether a backend can run here, and if not, why (one line for the user)."""

    available: bool
    reason: str = ""


class Backend:
    """Subclasses set `name`, `device_type` and `rank` and override what differs on their device.

    Attributes:
        name: the backend's name in reports and on the command line.
        device_type: torch's device type; the precision table's mode rows are keyed by it.
        rank: which backend a drift report stands for when it measured several (highest first):
            an accelerator outranks the CPU every machine also has.
    """

    name = "base"
    device_type = "cpu"
    rank = 0
    # whether weights cross to the device in their stored dtype and are widened there (half the transfer for
    # bf16, and no float32 copy in host memory); on the CPU they are widened as they are read
    widen_on_device = False

    def __init__(self, index: int = 0):
        self.index = index

    # detection ------------------------------------------------------------
    def probe(self) -> Availability:
        """Detect the device without failing.

        Returns:
            Availability: available, or the reason it is not.
        """
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        """The torch device this backend places tensors on."""
        return torch.device(self.device_type, self.index) if self.device_type != "cpu" else torch.device("cpu")

    # placement and timing -------------------------------------------------
    def place(self, tensor: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Move a tensor to the device, optionally casting it.

        Args:
            tensor: any tensor.
            dtype: the dtype to cast to; None keeps the tensor's own.
        Returns:
            The tensor on this backend's device.
        """
        return tensor.to(device=self.device, dtype=dtype or tensor.dtype)

    def synchronize(self) -> None:
        """Wait until the device has finished its queued work (a no-op on the CPU)."""

    def new_event(self):
        """A timing event on the device (torch.cuda.Event and its mirrors), or None to time on the host.

        Returns:
            A device event with record/synchronize/elapsed_time, or None.
        """
        return None

    @contextlib.contextmanager
    def timer(self) -> Iterator[dict]:
        """Elapsed milliseconds of the block: device events where the device has them, else host wall time."""
        out = {"ms": float("nan")}
        start = self.new_event()
        if start is None:
            t0 = time.perf_counter_ns()
            yield out
            self.synchronize()
            out["ms"] = (time.perf_counter_ns() - t0) / 1e6
            return
        end = self.new_event()
        start.record()
        yield out
        end.record()
        end.synchronize()
        out["ms"] = start.elapsed_time(end)

    def memory_stats(self) -> dict:
        """Peak device memory since the last reset.

        Returns:
            {"max_allocated_bytes", "max_reserved_bytes"} on accelerators; {} where the device keeps none.
        """
        return {}

    def reset_peak_memory(self) -> None:
        """Start a new peak-memory measurement (a no-op where the device keeps none)."""

    # precision and determinism --------------------------------------------
    def modes(self) -> list[str]:
        """The precision modes that exist on this backend's device type (provenance/precision.py).

        Returns:
            Mode names, "ieee" first.
        Raises:
            MissingPrecisionRow: no mode row has flags for this device type.
        """
        return modes_on(self.device_type)

    def _read_flags(self) -> dict:
        return {}

    def _write_flags(self, flags: dict) -> None:
        pass

    @contextlib.contextmanager
    def precision(self, mode: str = "ieee", deterministic: bool | None = None) -> Iterator[None]:
        """Pin a precision mode (and optionally deterministic algorithms), restoring both after.

        Args:
            mode: a mode row's name (provenance/precision.py).
            deterministic: force deterministic algorithms on or off; None leaves them as they are.
        Raises:
            MissingPrecisionRow: the mode has no row, or none for this backend's device type.
        """
        flags = mode_flags(mode, self.device_type)
        saved_flags = self._read_flags()
        saved_det = torch.are_deterministic_algorithms_enabled()
        saved_matmul = torch.get_float32_matmul_precision()
        try:
            self._write_flags(flags)
            if deterministic is not None:
                torch.use_deterministic_algorithms(deterministic)
            yield
        finally:
            self._write_flags(saved_flags)
            torch.use_deterministic_algorithms(saved_det)
            torch.set_float32_matmul_precision(saved_matmul)

    # identity -----------------------------------------------------------------
    def device_name(self) -> str:
        """The device's marketing name.

        Returns:
            A name for people ("NVIDIA H100 80GB HBM3", a CPU model).
        """
        return platform.processor() or platform.machine()

    def versions(self) -> dict:
        """Runtime and library versions and device properties for the identity record.

        Returns:
            A flat dict merged into identity(); {} when the device has none to add.
        """
        return {}

    def identity(self) -> dict:
        """Who computed a result: device, software versions and every numeric flag in force.

        Returns:
            The identity record (docs/SCHEMAS.md).
        """
        return {
            "backend": self.name,
            "device": str(self.device),
            "device_name": self.device_name(),
            "torch": torch.__version__,
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            **self.versions(),
            "flags": {
                "float32_matmul_precision": torch.get_float32_matmul_precision(),
                "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
                "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
                "num_threads": torch.get_num_threads(),
                **self._read_flags(),
            },
        }


class AcceleratorBackend(Backend):
    """What CUDA and NPU share, written once: torch.accelerator (torch >= 2.6) where it serves this
    device type, else torch.<device>, whose API torch_npu mirrors from torch.cuda."""

    widen_on_device = True

    def api(self):
        """The module whose device API serves this device type.

        Returns:
            torch.accelerator where it serves this device type (torch >= 2.6), else torch.<device_type>.
        """
        generic = getattr(torch, "accelerator", None)
        if generic is not None and hasattr(generic, "max_memory_allocated"):
            current = generic.current_accelerator()
            if current is not None and current.type == self.device_type:
                return generic
        return getattr(torch, self.device_type)

    def synchronize(self) -> None:
        """Wait for the device's queued work."""
        self.api().synchronize(self.device)

    def new_event(self):
        """A device timing event.

        Returns:
            torch.Event on this device, with timing enabled.
        """
        return torch.Event(self.device, enable_timing=True)

    def memory_stats(self) -> dict:
        """Peak device memory since the last reset.

        Returns:
            {"max_allocated_bytes", "max_reserved_bytes"}.
        """
        api = self.api()
        return {"max_allocated_bytes": api.max_memory_allocated(self.device),
                "max_reserved_bytes": api.max_memory_reserved(self.device)}

    def reset_peak_memory(self) -> None:
        """Start a new peak-memory measurement."""
        self.api().reset_peak_memory_stats(self.device)
