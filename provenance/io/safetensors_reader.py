"""safetensors: single files, model directories and sharded checkpoints.

The header is validated here, then each tensor is read by explicit positioned reads of its own byte
range into a tensor of its stored dtype: nothing is memory-mapped, so a run over a checkpoint larger
than memory keeps only the tensor at hand resident (mapped pages of every shard would otherwise count
against the process until the shard is closed), and a tensor's bytes are read once.
"""
from __future__ import annotations

import json
import os
import struct
import sys
from pathlib import Path

import torch

from .. import limits
from ..errors import MalformedInput, Unsupported
from .base import TensorInfo, TensorSource, _no_duplicate_keys, confined, read_json_file

# storage dtype -> bytes per element (safetensors' own names)
DTYPE_SIZES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1,
}
# storage dtype -> torch dtype the bytes are viewed as (little-endian, as the format stores them)
TORCH_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2, "I64": torch.int64, "I32": torch.int32,
    "I16": torch.int16, "I8": torch.int8, "U64": torch.uint64, "U32": torch.uint32, "U16": torch.uint16,
    "U8": torch.uint8, "BOOL": torch.bool,
}
INDEX_NAME = "model.safetensors.index.json"
READ_CHUNK = 64 << 20  # one positioned read at most this long (some kernels cap a single read near 2 GiB)
WIDEN_BLOCK = 8 << 20  # stored bytes read and widened at a time when float32 is asked for


def read_header(path: Path) -> tuple[dict[str, TensorInfo], dict]:
    """Parse and validate one file's header: every tensor's bytes lie inside the file, once."""
    infos, metadata, _ = read_layout(path)
    return infos, metadata


def read_layout(path: Path) -> tuple[dict[str, TensorInfo], dict, dict[str, tuple[int, int]]]:
    """read_header, plus each tensor's absolute byte range [begin, end) in the file."""
    size = limits.regular_file(path, "safetensors file")
    with open(path, "rb") as fh:
        prefix = fh.read(8)
        if len(prefix) < 8:
            raise MalformedInput("file is shorter than the 8-byte safetensors header length", path)
        (header_len,) = struct.unpack("<Q", prefix)
        limits.check("header_bytes", header_len, path, "safetensors header length")
        if 8 + header_len > size:
            raise MalformedInput(f"header length {header_len} runs past the end of the {size}-byte file", path)
        raw = fh.read(header_len)
    # count entries before parsing, so a header of a million tiny tensors is refused without building them
    limits.check("tensors", raw.count(b'"data_offsets"'), path, "tensors in the safetensors header")
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MalformedInput(f"header is not valid JSON ({exc})", path) from None
    if not isinstance(header, dict):
        raise MalformedInput("header is not a JSON object", path)
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise MalformedInput("__metadata__ is not an object", path)
    data_len = size - 8 - header_len
    infos: dict[str, TensorInfo] = {}
    spans, ranges = [], {}
    for name, entry in header.items():
        if not isinstance(entry, dict):
            raise MalformedInput(f"entry for tensor {name!r} is not an object", path)
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype not in DTYPE_SIZES:
            raise MalformedInput(f"tensor {name!r} has unknown dtype {dtype!r}", path)
        if not (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
            raise MalformedInput(f"tensor {name!r} has an invalid shape {shape!r}", path)
        if not (isinstance(offsets, list) and len(offsets) == 2
                and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
            raise MalformedInput(f"tensor {name!r} has invalid data_offsets {offsets!r}", path)
        begin, end = offsets
        if not 0 <= begin <= end <= data_len:
            raise MalformedInput(f"tensor {name!r} offsets [{begin}, {end}] lie outside the {data_len}-byte data section", path)
        numel = 1
        for d in shape:
            numel *= d
        if numel * DTYPE_SIZES[dtype] != end - begin:
            raise MalformedInput(f"tensor {name!r}: shape {shape} of {dtype} needs {numel * DTYPE_SIZES[dtype]} bytes, offsets give {end - begin}", path)
        infos[name] = TensorInfo(name, tuple(shape), dtype, path.name)
        spans.append((begin, end, name))
        ranges[name] = (8 + header_len + begin, 8 + header_len + end)
    spans.sort()
    for (b0, e0, n0), (b1, e1, n1) in zip(spans, spans[1:]):
        if b1 < e0:
            raise MalformedInput(f"tensors {n0!r} and {n1!r} overlap in the data section", path)
    return infos, metadata, ranges


def read_into(fd: int, buffer: memoryview, offset: int, path: Path) -> None:
    """Fill `buffer` from `fd` at `offset` with positioned reads (no shared file position, no mapping)."""
    done = 0
    while done < len(buffer):
        want = buffer[done:done + READ_CHUNK]
        if hasattr(os, "preadv"):
            n = os.preadv(fd, [want], offset + done)
        else:  # platforms without positioned reads (Windows): seek, then read a copy
            os.lseek(fd, offset + done, os.SEEK_SET)
            data = os.read(fd, len(want))
            n = len(data)
            want[:n] = data
        if n <= 0:
            raise MalformedInput(f"file ended {len(buffer) - done} bytes before a tensor's end", path)
        done += n


class SafetensorsSource(TensorSource):
    format = "safetensors"
    random_access = True

    def __init__(self, root: Path, files: list[Path], config: dict | None = None,
                 weight_map: dict[str, Path] | None = None):
        super().__init__(root, files, config)
        self._infos: dict[str, TensorInfo] = {}
        self._file_of: dict[str, Path] = {}
        self._ranges: dict[str, tuple[int, int]] = {}
        for f in files:
            infos, meta, ranges = read_layout(f)
            self._ranges.update(ranges)
            self.metadata.setdefault("file_metadata", {})[self._relative(f)] = meta
            for name, info in infos.items():
                if name in self._infos:
                    raise MalformedInput(f"tensor {name!r} appears in more than one shard", f)
                self._infos[name] = TensorInfo(name, info.shape, info.dtype, self._relative(f))
                self._file_of[name] = f
        if weight_map is not None:
            for name, f in weight_map.items():
                if name not in self._infos:
                    raise MalformedInput(f"index lists tensor {name!r} in {f.name}, which does not hold it", root / INDEX_NAME)
                if self._file_of[name] != f:
                    raise MalformedInput(f"index puts tensor {name!r} in {f.name}, but it is in {self._file_of[name].name}", root / INDEX_NAME)
        self._handles: dict[Path, int] = {}  # shard -> open file descriptor

    def infos(self) -> dict[str, TensorInfo]:
        return self._infos

    def stored_bytes(self, name: str) -> int:
        begin, end = self._ranges[name]
        return end - begin

    def _fd(self, path: Path) -> int:
        fd = self._handles.get(path)
        if fd is None:
            try:
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError as exc:
                raise MalformedInput(f"cannot open safetensors file ({exc.strerror})", path) from None
            self._handles[path] = fd
        return fd

    def _read(self, name: str, begin: int, end: int, shape: tuple[int, ...], float32: bool = False) -> torch.Tensor:
        """Bytes [begin, end) of `name`'s shard as a tensor of the given shape: its stored dtype, or with `float32`
        narrower floats widened block by block through one reused buffer as they are read."""
        if sys.byteorder != "little":
            raise Unsupported("reading safetensors needs a little-endian machine", self._file_of[name])
        path, stored = self._file_of[name], TORCH_DTYPES[self._infos[name].dtype]
        fd = self._fd(path)
        size = torch.empty(0, dtype=stored).element_size()
        if not (float32 and stored.is_floating_point and size < 4):
            buffer = torch.empty(end - begin, dtype=torch.uint8)
            read_into(fd, memoryview(buffer.numpy()).cast("B"), begin, path)
            return buffer.view(stored).reshape(shape)
        out = torch.empty(shape, dtype=torch.float32).reshape(-1)
        step = max(size, WIDEN_BLOCK // size * size)
        buffer = torch.empty(min(step, end - begin), dtype=torch.uint8)
        for at in range(begin, end, step):
            n = min(step, end - at)
            read_into(fd, memoryview(buffer.numpy()).cast("B")[:n], at, path)
            first = (at - begin) // size
            out[first:first + n // size].copy_(buffer[:n].view(stored))
        return out.reshape(shape)

    def _load(self, name: str) -> torch.Tensor:
        begin, end = self._ranges[name]
        return self._read(name, begin, end, self._infos[name].shape)

    def _load_float32(self, name: str) -> torch.Tensor:
        begin, end = self._ranges[name]
        return self._read(name, begin, end, self._infos[name].shape, float32=True)

    def _load_rows(self, name: str, start: int, stop: int, float32: bool = False) -> torch.Tensor:
        """Entries [start, stop) along the first dimension: a contiguous byte range, read alone."""
        shape = self._infos[name].shape
        begin, end = self._ranges[name]
        step = (end - begin) // shape[0]
        return self._read(name, begin + start * step, begin + stop * step, (stop - start, *shape[1:]), float32)

    def close(self) -> None:
        handles, self._handles = self._handles, {}
        for fd in handles.values():
            os.close(fd)


def open_safetensors(path: Path, root: Path, config: dict | None) -> SafetensorsSource:
    """`path` is a .safetensors file, an index file, or a directory holding either."""
    if path.is_dir():
        index = path / INDEX_NAME
        if index.exists():
            return _open_index(confined(path, INDEX_NAME, what="index"), path, config)
        files = sorted(p for p in path.glob("*.safetensors"))
        limits.check("shards", len(files), path, "safetensors files in the directory")
        if not files:
            raise Unsupported("directory holds no .safetensors file", path)
        return SafetensorsSource(path, [confined(path, f.name) for f in files], config)
    if path.name.endswith(".index.json"):
        return _open_index(path, path.parent, config)
    return SafetensorsSource(root, [path], config)


def _open_index(index: Path, root: Path, config: dict | None) -> SafetensorsSource:
    data = read_json_file(index)
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise MalformedInput("index has no weight_map object", index)
    limits.check("tensors", len(weight_map), index, "tensors named by the index")
    limits.check("shards", len({v for v in weight_map.values() if isinstance(v, str)}), index,
                 "shard files named by the index")
    shards: dict[str, Path] = {}
    resolved_map = {}
    for name, shard in weight_map.items():
        if not isinstance(shard, str):
            raise MalformedInput(f"weight_map entry for {name!r} is not a file name", index)
        if shard not in shards:
            shards[shard] = confined(root, shard, what="shard")
        resolved_map[name] = shards[shard]
    source = SafetensorsSource(root, sorted(set(shards.values())), config, weight_map=resolved_map)
    source.side_files.append(index)
    return source
