"""Shared helpers for the index tests: zoo fingerprints written once per session."""
from __future__ import annotations

from pathlib import Path

from provenance.zoo import TRANSFORMS

SEEDS = (0, 1)
DERIVED = [t for t, spec in TRANSFORMS.items() if not spec.independent]
CONTROLS = [t for t, spec in TRANSFORMS.items() if spec.independent]


def bases(seeds=SEEDS) -> list[str]:
    return [f"base-s{s}" for s in seeds]


def controls(seeds=SEEDS) -> list[str]:
    return [f"base-s{s}-{t}" for s in seeds for t in CONTROLS]


def derived(seeds=SEEDS, transforms=None) -> list[str]:
    return [f"base-s{s}-{t}" for s in seeds for t in (transforms or DERIVED)]


def parent_of(name: str) -> str:
    """The base a zoo model descends from."""
    return "-".join(name.split("-")[:2])


def immediate_parent(name: str) -> str:
    """The model a zoo derivative was made from: its base, or the derivative its transform starts from."""
    base = parent_of(name)
    source = TRANSFORMS[name.split("-", 2)[2]].source
    return f"{base}-{source}" if source else base


def fingerprint_files(zoo, names, directory: Path) -> dict[str, Path]:
    """name -> fingerprint file, fingerprinting each zoo model once into `directory`."""
    from provenance.backends import get_backend
    from provenance.fingerprint import fingerprint_model
    cpu = get_backend("cpu")
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in names:
        path = directory / f"{name}.safetensors"
        if not path.exists():
            fingerprint_model(zoo(name), cpu, label=name).save(path)
        out[name] = path
    return out
