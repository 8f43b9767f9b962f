"""The backend registry: one row per adapter. Adding a backend is one adapter file plus one row here
(or a register_backend call); its name, device type and rank are the adapter's own attributes."""
from __future__ import annotations

from ..errors import BackendUnavailable

from .base import Backend
from .cpu import CpuBackend
from .cuda import CudaBackend
from .npu import NpuBackend

BACKENDS: dict[str, type[Backend]] = {cls.name: cls for cls in (CpuBackend, CudaBackend, NpuBackend)}


def register_backend(cls: type[Backend]) -> type[Backend]:
    """Add an adapter to the registry under its `name` (usable as a class decorator).

    Args:
        cls: a Backend subclass with its own `name`, `device_type` and `rank`.
    Returns:
        The class, unchanged.
    Raises:
        ValueError: another adapter is registered under that name.
    """
    known = BACKENDS.get(cls.name)
    if known is not None and known is not cls:
        raise ValueError(f"backend {cls.name!r} is already registered ({known.__name__})")
    BACKENDS[cls.name] = cls
    return cls


def unregister_backend(name: str) -> None:
    """Remove an adapter from the registry (a no-op when none has that name).

    Args:
        name: the adapter's name.
    """
    BACKENDS.pop(name, None)


def backend_rank(name: str) -> int:
    """The rank of a registered backend: which one a drift report with several stands for (highest first).

    Args:
        name: a backend name as reports carry it (no device index).
    Returns:
        The adapter's `rank`.
    Raises:
        BackendUnavailable: no adapter is registered under that name.
    """
    cls = BACKENDS.get(name)
    if cls is None:
        raise BackendUnavailable(f"no backend row {name!r} in the backend registry (known: {', '.join(BACKENDS)})")
    return cls.rank


def get_backend(name: str) -> Backend:
    """A ready backend.

    Args:
        name: a registered name, optionally with a device index ("cuda:1").
    Returns:
        The adapter instance, probed available.
    Raises:
        BackendUnavailable: the name is unknown, or the backend is unavailable (the reason says why).
    """
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
    """Every registered backend's availability.

    Returns:
        One row per backend: name, available, reason (why not) and identity (when available).
    """
    out = []
    for name, cls in BACKENDS.items():
        backend = cls()
        status = backend.probe()
        out.append({"name": name, "available": status.available, "reason": status.reason,
                    "identity": backend.identity() if status.available else None})
    return out


def available_backends() -> list[Backend]:
    """An instance of every registered backend that is available here, in registry order.

    Returns:
        Backend instances.
    """
    return [cls() for cls in BACKENDS.values() if cls().probe().available]
