"""The one shape every checkpoint reader has: names, shapes, one tensor at a time."""
from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import limits
from ..errors import InputNotFound, MalformedInput, UnsafeInput

HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    dtype: str          # storage dtype as the format names it: "F32", "BF16", "Q4_1", "int8"...
    file: str           # path relative to the source root

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


# Hugging Face hub cache: <cache>/models--org--name/{blobs/<hash>, refs/main, snapshots/<rev>/<file> -> ../../blobs/<hash>}
HF_REPO_PREFIXES = ("models--",)
HF_SNAPSHOTS = "snapshots"


def hf_repository(directory: Path) -> Path | None:
    """The repository folder (models--org--name/) when `directory` is one of its snapshots/<rev>/, else None."""
    resolved = directory.resolve()
    parent = resolved.parent
    if parent.name == HF_SNAPSHOTS and parent.parent.name.startswith(HF_REPO_PREFIXES):
        return parent.parent
    return None


def confinement_root(directory: Path) -> Path:
    """The folder a model directory's files may resolve into: the directory itself, or, for a Hugging Face
    cache snapshot, its whole repository folder (the snapshot's files are links into ../../blobs/)."""
    return hf_repository(directory) or directory.resolve()


def confined(root: Path, relative: str, *, what: str = "file") -> Path:
    """`root / relative`, refusing a path that leaves the model directory (.., absolute, links pointing out).

    Links may point anywhere inside the confinement root (a Hugging Face repository folder for its snapshots).
    The path is returned as the model directory names it, not resolved, so a file hashes under the same name
    whether it is a plain file or a link into a cache's blobs.
    """
    if not relative or os.path.isabs(relative) or "\x00" in relative:
        raise UnsafeInput(f"{what} path {relative!r} is not a relative path inside the model directory", root)
    candidate = root / relative
    resolved = candidate.resolve()
    allowed = confinement_root(root)
    if resolved != allowed and allowed not in resolved.parents:
        where = "the model directory" if allowed == root.resolve() else f"the repository folder {allowed.name}"
        raise UnsafeInput(f"{what} {relative!r} resolves outside {where}", root)
    if not resolved.exists():
        raise InputNotFound(f"{what} {relative!r} is missing", root)
    if what != "snapshot":  # every other named thing is a file: no FIFO, device, directory (a shard named ".")
        limits.regular_file(candidate, f"{what} {relative!r}")
    return candidate


def read_json_file(path: Path) -> Any:
    """A JSON document from a regular file no larger than the document_bytes limit, duplicate keys refused."""
    limits.regular_file(path, "JSON document", "document_bytes")
    try:
        return json.loads(path.read_bytes().decode("utf-8"), object_pairs_hook=_no_duplicate_keys,
                          parse_float=_finite_float, parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError, RecursionError) as exc:
        raise MalformedInput(f"invalid JSON ({exc})", path) from None


def _finite_float(text: str) -> float:
    """JSON numbers the program reads are finite: 1e999 would parse to inf and pass a type check."""
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:30]} is out of range")
    return value


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _no_duplicate_keys(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def widened(t: torch.Tensor) -> torch.Tensor:
    """Floating tensors narrower than float32 as float32; anything else as it is."""
    return t.float() if t.is_floating_point() and t.element_size() < 4 else t


class TensorSource(ABC):
    """A checkpoint opened for reading. Nothing is read until a tensor is asked for."""

    format: str = ""
    random_access = False  # whether get_rows reads only the rows asked for

    def __init__(self, root: Path, files: list[Path], config: dict | None = None):
        self.root = root
        self.files = files
        self.config = config or {}
        self.metadata: dict[str, Any] = {}
        self.vocab_tokens: list[str] | None = None  # token strings by id, when the checkpoint ships a tokenizer
        self.side_files: list[Path] = []  # config, index and tokenizer files: read, so hashed too
        self._hashes: dict[str, str] | None = None

    @abstractmethod
    def infos(self) -> dict[str, TensorInfo]:
        """Every tensor's name, shape and storage dtype, from headers only."""

    @abstractmethod
    def _load(self, name: str) -> torch.Tensor:
        ...

    def get(self, name: str, float32: bool = False) -> torch.Tensor:
        """One tensor, on the CPU, in floating point (quantized formats are dequantized).

        Args:
            name: the tensor's name.
            float32: narrower floating storage (bf16, f16, fp8) comes back widened to float32; readers with
                random access convert as they read, a block at a time, so no whole copy in the stored dtype
                is held beside the float32 one. Other dtypes come back as stored.
        Returns:
            The tensor.
        """
        info = self.infos().get(name)
        if info is None:
            raise KeyError(name)
        tensor = self._load_float32(name) if float32 else self._load(name)
        if tuple(tensor.shape) != info.shape:
            raise MalformedInput(f"tensor {name!r} has shape {tuple(tensor.shape)}, header says {info.shape}",
                                 self.root / info.file)
        return tensor

    def get_slice(self, name: str, index: int, float32: bool = False) -> torch.Tensor:
        """Entry `index` along the first dimension of a tensor (one expert of a stacked [experts, out, in]
        block), reading no more of it than the format allows: readers with random access read only that range.

        Args:
            name: the tensor's name.
            index: position along its first dimension.
            float32: as for `get`.
        Returns:
            The slice, on the CPU, in floating point where `get` would give floating point.
        """
        return self.get_rows(name, index, index + 1, float32)[0]

    def get_rows(self, name: str, start: int, stop: int, float32: bool = False) -> torch.Tensor:
        """Entries [start, stop) along the first dimension of a tensor (a block of embedding rows, or of stacked
        experts); readers with random access (`random_access`) read only that range, others load the tensor
        and keep the range.

        Args:
            name: the tensor's name.
            start, stop: the range along its first dimension.
            float32: as for `get`.
        Returns:
            The [stop - start, ...] block, on the CPU.
        """
        info = self.infos().get(name)
        if info is None:
            raise KeyError(name)
        if not info.shape or not 0 <= start < stop <= info.shape[0]:
            raise IndexError(f"{name}: range [{start}, {stop}) outside its first dimension {info.shape[:1]}")
        tensor = self._load_rows(name, start, stop, float32)
        if tuple(tensor.shape) != (stop - start, *info.shape[1:]):
            raise MalformedInput(f"tensor {name!r} entries [{start}, {stop}) have shape {tuple(tensor.shape)}, header says "
                                 f"{info.shape[1:]} each", self.root / info.file)
        return tensor

    def _load_float32(self, name: str) -> torch.Tensor:
        return widened(self._load(name))

    def stored_bytes(self, name: str) -> int:
        """Bytes the tensor occupies in the checkpoint (what reading it costs); an estimate from its shape and
        dtype name where the format does not say."""
        info = self.infos()[name]
        digits = "".join(ch for ch in info.dtype if ch.isdigit())
        return info.numel * max(1, int(digits) // 8 if digits else 4)

    def _load_rows(self, name: str, start: int, stop: int, float32: bool = False) -> torch.Tensor:
        """Formats without random access load the tensor and keep the range (a copy: the whole is released)."""
        part = self._load(name)[start:stop]
        return widened(part) if float32 else part.clone()

    def sha256(self) -> dict[str, str]:
        """sha256 of every file the source reads, keyed by path relative to the root."""
        if self._hashes is None:
            self._hashes = {self._relative(f): sha256_file(f) for f in sorted(set(self.files) | set(self.side_files))}
        return self._hashes

    def content_hash(self) -> str:
        """One digest over the files' digests: the identity of the input in every report."""
        joined = "\n".join(f"{name} {digest}" for name, digest in sorted(self.sha256().items()))
        return hashlib.sha256(joined.encode()).hexdigest()

    def _relative(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root)) if self.root.is_dir() else path.name
        except ValueError:
            return path.name

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
