"""PyTorch .bin/.pt files, read only through torch's weights-only unpickler.

A file whose pickle asks for anything beyond tensors and plain containers is
refused: torch.load(weights_only=True) stops before any code would run.
"""
from __future__ import annotations

import pickle
import pickletools
import zipfile
from pathlib import Path

import torch

from ..errors import MalformedInput, UnsafeInput
from .base import TensorInfo, TensorSource, confined, read_json_file

INDEX_NAME = "pytorch_model.bin.index.json"
SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
# common wrappers around a state dict in training checkpoints
WRAPPER_KEYS = ("state_dict", "model", "module", "model_state_dict")


# Globals a plain state dict's pickle imports. Anything else means the pickle wants to call code.
TENSOR_GLOBAL_PREFIXES = ("torch.", "collections.OrderedDict", "_codecs.encode", "numpy.core.multiarray._reconstruct",
                          "numpy.dtype", "numpy.ndarray", "builtins.set", "builtins.frozenset")


def _pickle_streams(path: Path) -> list[bytes]:
    """The pickle bytes of a legacy file or of a torch zip's data.pkl, read without unpickling."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                return [zf.read(n) for n in zf.namelist() if n.endswith(".pkl")]
        return [path.read_bytes()[: 64 << 20]]
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError):
        return []  # unreadable archive: nothing to classify, the load error stands


def foreign_globals(path: Path) -> list[str]:
    """Globals a pickle would import beyond tensors, found by parsing its opcodes (nothing runs)."""
    found = []
    for stream in _pickle_streams(path):
        strings: list[str] = []
        try:
            for op, arg, _ in pickletools.genops(stream):
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
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except pickle.UnpicklingError as exc:
        foreign = foreign_globals(path)
        if foreign:
            raise UnsafeInput(f"refused: the pickle imports {', '.join(sorted(set(foreign))[:3])}; nothing was executed", path) from None
        detail = next((l.strip() for l in str(exc).splitlines() if "Unsupported" in l), str(exc).split("\n")[0][:200])
        raise MalformedInput(f"not a loadable PyTorch file: not a weights-only pickle ({detail}); nothing was executed", path) from None
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, OSError, KeyError, IndexError, TypeError,
            AttributeError, UnicodeDecodeError, OverflowError, MemoryError) as exc:
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

    def walk(prefix: str, node) -> None:
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, torch.Tensor):
                flat[name] = value
            elif isinstance(value, dict):
                walk(name + ".", value)

    walk("", obj)
    if not flat:
        raise MalformedInput("holds no tensors", path)
    return flat


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
            files = sorted({confined(path, shard, what="shard") for shard in weight_map.values()})
            source = TorchSource(path, files, config)
            source.side_files.append(index)
            return source
        else:
            files = sorted(confined(path, p.name) for p in path.iterdir() if p.suffix in SUFFIXES)
        return TorchSource(path, files, config)
    return TorchSource(root, [path], config)
