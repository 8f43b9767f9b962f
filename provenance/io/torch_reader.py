"""PyTorch .bin/.pt files, read only through torch's weights-only unpickler.

A file whose pickle asks for anything beyond tensors and plain containers is
refused: torch.load(weights_only=True) stops before any code would run.
"""
from __future__ import annotations

import pickle
import pickletools
import warnings
import zipfile
import zlib
from pathlib import Path

import torch

from .. import limits
from ..errors import MalformedInput, ProvenanceError, UnsafeInput
from .base import TensorInfo, TensorSource, confined, read_json_file

INDEX_NAME = "pytorch_model.bin.index.json"
SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
# common wrappers around a state dict in training checkpoints
WRAPPER_KEYS = ("state_dict", "model", "module", "model_state_dict")


# Globals a plain state dict's pickle imports. Anything else means the pickle wants to call code.
TENSOR_GLOBAL_PREFIXES = ("torch.", "collections.OrderedDict", "_codecs.encode", "numpy.core.multiarray._reconstruct",
                          "numpy.dtype", "numpy.ndarray", "builtins.set", "builtins.frozenset")


def _zip_records(path: Path) -> list[zipfile.ZipInfo] | None:
    """The records of a torch zip checkpoint (None for a legacy pickle file), each checked against a zip bomb."""
    if not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as zf:
        records = zf.infolist()
    ratio = limits.limit("zip_ratio")
    for r in records:
        if r.compress_type != zipfile.ZIP_STORED and r.file_size > max(r.compress_size, 1) * ratio:
            raise MalformedInput(f"zip record {r.filename!r} expands {r.file_size} bytes from {r.compress_size}: "
                                 f"a decompression bomb (ratio limit {ratio}, PROVENANCE_MAX_ZIP_RATIO)", path)
    return records


def _bounded_read(zf: zipfile.ZipFile, name: str, path: Path) -> bytes:
    """One record, decompressed up to the pickle_bytes limit and no further."""
    bound = limits.limit("pickle_bytes")
    with zf.open(name) as fh:
        data = fh.read(bound + 1)
    if len(data) > bound:
        raise MalformedInput(f"pickle record {name!r} exceeds {bound} bytes (PROVENANCE_MAX_PICKLE_BYTES)", path)
    return data


def _pickle_streams(path: Path) -> list[bytes]:
    """The pickle bytes of a legacy file or of a torch zip's data.pkl, read without unpickling, bounded."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                return [_bounded_read(zf, n, path) for n in zf.namelist() if n.endswith(".pkl")]
        with open(path, "rb") as fh:
            return [fh.read(limits.limit("pickle_bytes"))]
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError, zlib.error):
        return []  # unreadable archive: nothing to classify, the load error stands


def foreign_globals(path: Path) -> list[str]:
    """Globals a pickle would import beyond tensors, found by parsing its opcodes (nothing runs), at most
    pickle_ops opcodes per stream."""
    found = []
    bound = limits.limit("pickle_ops")
    for stream in _pickle_streams(path):
        strings: list[str] = []
        try:
            for count, (op, arg, _) in enumerate(pickletools.genops(stream)):
                if count >= bound:
                    break
                if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                    strings.append(str(arg))
                elif op.name in ("GLOBAL", "INST"):
                    found.append(str(arg).replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.append(f"{strings[-2]}.{strings[-1]}")
        except Exception:
            pass  # a broken stream: whatever was parsed before the break still counts
    return [g for g in found if not g.startswith(TENSOR_GLOBAL_PREFIXES)]


def _load_weights_only(path: Path) -> dict:
    limits.regular_file(path, "checkpoint")
    try:
        records = _zip_records(path)
        # torch maps a zip's records raw under mmap=True: right for stored records, garbage for deflated ones,
        # which are read (and decompressed) the way torch.load reads them without mmap
        stored = records is not None and all(r.compress_type == zipfile.ZIP_STORED for r in records)
        with warnings.catch_warnings():  # torch's notes on pickle protocols are not the user's business
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=stored)
    except pickle.UnpicklingError as exc:
        foreign = foreign_globals(path)
        if foreign:
            raise UnsafeInput(f"refused: the pickle imports {', '.join(sorted(set(foreign))[:3])}; nothing was executed", path) from None
        detail = next((l.strip() for l in str(exc).splitlines() if "Unsupported" in l), str(exc).split("\n")[0][:200])
        raise MalformedInput(f"not a loadable PyTorch file: not a weights-only pickle ({detail}); nothing was executed", path) from None
    except ProvenanceError:
        raise
    except Exception as exc:  # torch.load's own refusal, whatever its type (AssertionError, struct.error, ...):
        # weights-only loading runs no code, so any exception means the reference loader cannot read the file
        first = str(exc).split("\n")[0][:300]
        raise MalformedInput(f"not a loadable PyTorch file ({type(exc).__name__}: {first})", path) from None
    return _state_dict(obj, path)


def _state_dict(obj, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in WRAPPER_KEYS:
            if isinstance(obj.get(key), dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
                obj = obj[key]
                break
    if not isinstance(obj, dict):
        raise MalformedInput(f"holds a {type(obj).__name__}, not a state dict of tensors", path)
    flat: dict[str, torch.Tensor] = {}
    visited: set[int] = set()  # a dict reached twice (a DAG or a cycle in the pickle) is walked once
    stack = [("", obj)]
    while stack:
        prefix, node = stack.pop()
        if id(node) in visited:
            continue
        visited.add(id(node))
        limits.check("tensors", len(flat) + len(node), path, "tensors and nested entries in the state dict")
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, torch.Tensor):
                _check_layout(name, value, path)
                flat[name] = value
            elif isinstance(value, dict):
                stack.append((name + ".", value))
    if not flat:
        raise MalformedInput("holds no tensors", path)
    return flat


def _check_layout(name: str, t: torch.Tensor, path: Path) -> None:
    """Stored weights have a real element behind every index: a zero stride (an expanded view) or a
    non-floating, non-integer dtype is not a weight matrix."""
    if t.is_sparse or t.layout != torch.strided:
        raise MalformedInput(f"tensor {name!r} has layout {t.layout}, not dense stored weights", path)
    if any(st == 0 and n > 1 for st, n in zip(t.stride(), t.shape)):
        raise MalformedInput(f"tensor {name!r} has a zero stride (an expanded view, not stored weights)", path)


class TorchSource(TensorSource):
    format = "torch"

    def __init__(self, root: Path, files: list[Path], config: dict | None = None):
        super().__init__(root, files, config)
        self._tensors: dict[str, torch.Tensor] = {}
        self._infos: dict[str, TensorInfo] = {}
        for f in files:
            for name, tensor in _load_weights_only(f).items():
                if name in self._tensors:
                    raise MalformedInput(f"tensor {name!r} appears in more than one file", f)
                self._tensors[name] = tensor
                self._infos[name] = TensorInfo(name, tuple(tensor.shape), str(tensor.dtype).removeprefix("torch."),
                                               self._relative(f))

    def infos(self) -> dict[str, TensorInfo]:
        return self._infos

    def _load(self, name: str) -> torch.Tensor:
        return self._tensors[name]

    def close(self) -> None:
        self._tensors.clear()


def open_torch(path: Path, root: Path, config: dict | None) -> TorchSource:
    if path.is_dir():
        index = path / INDEX_NAME
        if index.exists():
            data = read_json_file(confined(path, INDEX_NAME, what="index"))
            weight_map = data.get("weight_map") if isinstance(data, dict) else None
            if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
                raise MalformedInput("index has no valid weight_map", index)
            limits.check("tensors", len(weight_map), index, "tensors named by the index")
            limits.check("shards", len(set(weight_map.values())), index, "shard files named by the index")
            files = sorted({confined(path, shard, what="shard") for shard in weight_map.values()})
            source = TorchSource(path, files, config)
            source.side_files.append(index)
            return source
        else:
            files = sorted(confined(path, p.name) for p in path.iterdir() if p.suffix in SUFFIXES)
            limits.check("shards", len(files), path, "PyTorch files in the directory")
        return TorchSource(path, files, config)
    return TorchSource(root, [path], config)
