from __future__ import annotations

from ..errors import BackendUnavailable

from .base import Backend
from .cpu import CpuBackend
from .cuda import CudaBackend
from .npu import NpuBackend

BACKENDS: dict[str, type[Backend]] = {"cpu": CpuBackend, "cuda": CudaBackend, "npu": NpuBackend}


def get_backend(name: str) -> Backend:
    """A ready backend, or BackendUnavailable carrying the reason."""
    kind, _, index = name.partition(":")
    cls = BACKENDS.get(kind)
    if cls is None:
        raise BackendUnavailable(f"unknown backend {name!r} (known: {', '.join(BACKENDS)})")
    backend = cls(int(index) if index.isdigit() else 0)
    status = backend.probe()
    if not status.available:
        raise BackendUnavailable(f"backend {name} is unavailable: {status.reason}")
    return backend


def describe_backends() -> list[dict]:
    out = []
    for name, cls in BACKENDS.items():
        backend = cls()
        status = backend.probe()
        out.append({"name": name, "available": status.available, "reason": status.reason,
                    "identity": backend.identity() if status.available else None})
    return out


def available_backends() -> list[Backend]:
    return [cls() for cls in BACKENDS.values() if cls().probe().available]
