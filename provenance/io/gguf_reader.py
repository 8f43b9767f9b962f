"""GGUF (llama.cpp) files through the `gguf` package, dequantized one tensor at a time.

The package parses the header; tensor bytes are read here with positioned reads, a block of rows at a
time into one reused buffer, and dequantized into the tensor's float32 output. The package's own path
(dequantize the whole memory-mapped tensor) keeps the file's pages mapped and builds several float32
temporaries of the whole tensor, which for a 152k-token embedding is gigabytes.
"""
from __future__ import annotations

import math

import os
import struct
from pathlib import Path

import numpy as np
import torch

from .. import limits
from ..errors import MalformedInput, Unsupported
from .base import TensorInfo, TensorSource
from .safetensors_reader import read_into

DEQUANT_CHUNK = 4 << 20  # float32 bytes of output dequantized per block of rows (the dequantizer makes a few temporaries this size)

# GGUF value type -> byte size of a fixed-size scalar (8: string, 9: array are walked)
_GGUF_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_GGUF_STRING, _GGUF_ARRAY = 8, 9

# GGUF metadata key suffix -> HF config key, so the rest of the code sees one vocabulary of facts
CONFIG_KEYS = {
    "block_count": "num_hidden_layers",
    "embedding_length": "hidden_size",
    "feed_forward_length": "intermediate_size",
    "attention.head_count": "num_attention_heads",
    "attention.head_count_kv": "num_key_value_heads",
    "vocab_size": "vocab_size",
    "expert_count": "num_experts",
    "expert_used_count": "num_experts_per_tok",
    "context_length": "max_position_embeddings",
}
# Architectures whose converter permutes attn_q/attn_k rows for llama.cpp's RoPE layout:
# tensor name suffix -> config key holding the head count used for that permutation.
ROPE_PERMUTED = {
    "llama": {"attn_q.weight": "num_attention_heads", "attn_k.weight": "num_key_value_heads"},
}


def _field(reader, key):
    field = reader.fields.get(key)
    if field is None:
        return None
    try:
        return field.contents()
    except Exception:
        return None


def _check_header(path: Path) -> None:
    """Walk a GGUF header's counts before the gguf package parses it: tensor count, metadata entries and
    every array's length (a token list of millions of strings) against the limits, with nothing built."""
    size = limits.regular_file(path, "GGUF file")
    with open(path, "rb") as fh:
        def read(n: int) -> bytes:
            data = fh.read(n)
            if len(data) < n:
                raise MalformedInput("GGUF header is truncated")
            return data

        def u32() -> int:
            return struct.unpack("<I", read(4))[0]

        def u64() -> int:
            return struct.unpack("<Q", read(8))[0]

        def skip_string() -> None:
            n = u64()
            if fh.tell() + n > size:
                raise MalformedInput(f"GGUF string of {n} bytes runs past the end of the file")
            fh.seek(n, 1)

        if read(4) != b"GGUF":
            raise MalformedInput("not a GGUF file (bad magic)")
        version = u32()
        if version not in (2, 3):
            raise MalformedInput(f"GGUF version {version} is not 2 or 3")
        limits.check("tensors", u64(), None, "tensors the GGUF header claims")
        n_kv = u64()
        limits.check("gguf_kv", n_kv, None, "metadata entries the GGUF header claims")
        for _ in range(n_kv):
            skip_string()
            kind = u32()
            if kind == _GGUF_ARRAY:
                item, count = u32(), u64()
                limits.check("vocab", count, None, "items in a GGUF metadata array")
                if item == _GGUF_STRING:
                    for _ in range(count):
                        skip_string()
                elif item in _GGUF_SCALAR_SIZES:
                    fh.seek(count * _GGUF_SCALAR_SIZES[item], 1)
                else:
                    raise MalformedInput(f"GGUF metadata array of unknown type {item}")
            elif kind == _GGUF_STRING:
                skip_string()
            elif kind in _GGUF_SCALAR_SIZES:
                fh.seek(_GGUF_SCALAR_SIZES[kind], 1)
            else:
                raise MalformedInput(f"GGUF metadata value of unknown type {kind}")
            if fh.tell() > size:
                raise MalformedInput("GGUF metadata runs past the end of the file")


def check_header(path: Path) -> None:
    """_check_header, its refusals worded as every other unreadable GGUF file."""
    try:
        _check_header(path)
    except MalformedInput as exc:
        if exc.path is not None:  # the file itself is not a regular file: that message stands
            raise
        raise MalformedInput(f"not a readable GGUF file ({exc})", path) from None


def unpermute_rope_rows(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """Undo llama.cpp's interleaving of rotary halves so rows line up with the HF layout."""
    rows, cols = w.shape
    if n_head <= 0 or rows % (2 * n_head):
        raise MalformedInput(f"cannot undo the RoPE row permutation: {rows} rows, {n_head} heads")
    return w.reshape(n_head, rows // n_head // 2, 2, cols).transpose(1, 2).reshape(rows, cols)


class GGUFSource(TensorSource):
    format = "gguf"
    random_access = True

    def __init__(self, root: Path, path: Path):
        try:
            import gguf
        except ImportError:
            raise Unsupported("reading GGUF needs the gguf package: pip install 'provenance-verifier[gguf]'", path) from None
        self._gguf = gguf
        check_header(path)
        try:
            self._reader = gguf.GGUFReader(str(path), "r")
            tensors = list(self._reader.tensors)
        except Exception as exc:  # the reader raises ValueError, IndexError, struct errors... on bad files
            raise MalformedInput(f"not a readable GGUF file ({type(exc).__name__}: {str(exc)[:200]})", path) from None
        arch = _field(self._reader, "general.architecture")
        config: dict = {"model_type": f"gguf-{arch}" if arch else "gguf", "gguf_architecture": arch}
        for suffix, key in CONFIG_KEYS.items():
            value = _field(self._reader, f"{arch}.{suffix}")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if not math.isfinite(value) or value != int(value):  # a count that is NaN, infinite or fractional
                    raise MalformedInput(f"metadata {arch}.{suffix} is {value!r}, not a whole number", path)
                config[key] = int(value)
        super().__init__(root, [path], config)
        self.metadata = {"general.name": _field(self._reader, "general.name"),
                         "general.file_type": _field(self._reader, "general.file_type")}
        self._tensors = {}
        self._infos: dict[str, TensorInfo] = {}
        for t in tensors:
            shape = tuple(int(d) for d in reversed([int(x) for x in t.shape]))
            if t.name in self._infos:
                raise MalformedInput(f"tensor {t.name!r} appears twice", path)
            self._tensors[t.name] = t
            self._infos[t.name] = TensorInfo(t.name, shape, t.tensor_type.name, path.name)
        self._permuted = ROPE_PERMUTED.get(arch or "", {})
        self._fd: int | None = None

    def vocab(self) -> list[str] | None:
        tokens = _field(self._reader, "tokenizer.ggml.tokens")
        return [str(t) for t in tokens] if isinstance(tokens, list) else None

    def infos(self) -> dict[str, TensorInfo]:
        return self._infos

    def stored_bytes(self, name: str) -> int:
        return int(self._tensors[name].n_bytes)

    def _rows(self, name: str, first: int, last: int) -> np.ndarray:
        """Rows [first, last) of a tensor seen as [rows, last dimension], dequantized to float32."""
        t, info = self._tensors[name], self._infos[name]
        gguf = self._gguf
        cols = max(info.shape[-1], 1) if info.shape else 1
        block, type_size = gguf.GGML_QUANT_SIZES[t.tensor_type]
        if cols % block:
            raise MalformedInput(f"tensor {name!r}: rows of {cols} values are not whole {info.dtype} blocks", self.files[0])
        row_bytes = cols // block * type_size
        typed = {gguf.GGMLQuantizationType.F32: np.float32, gguf.GGMLQuantizationType.F16: np.float16}.get(t.tensor_type)
        out = np.empty((last - first, cols), dtype=np.float32)
        step = max(1, DEQUANT_CHUNK // (4 * cols))
        buffer = np.empty(min(step, last - first) * row_bytes, dtype=np.uint8)
        if self._fd is None:
            self._fd = os.open(self.files[0], os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        for r0 in range(first, last, step):
            r1 = min(last, r0 + step)
            raw = buffer[:(r1 - r0) * row_bytes]
            read_into(self._fd, memoryview(raw), t.data_offset + r0 * row_bytes, self.files[0])
            data = raw.view(typed).reshape(r1 - r0, cols) if typed else raw.reshape(r1 - r0, row_bytes)
            try:
                out[r0 - first:r1 - first] = np.asarray(gguf.quants.dequantize(data, t.tensor_type),
                                                        dtype=np.float32).reshape(r1 - r0, cols)
            except Exception as exc:
                raise MalformedInput(f"cannot dequantize tensor {name!r} of type {info.dtype} ({exc})", self.files[0]) from None
        return out

    def _load(self, name: str) -> torch.Tensor:
        info = self._infos[name]
        if info.numel == 0:
            return torch.zeros(info.shape)
        rows = info.numel // info.shape[-1] if info.shape else 1
        tensor = torch.from_numpy(self._rows(name, 0, rows)).reshape(info.shape)
        for suffix, heads_key in self._permuted.items():
            if name.endswith(suffix) and tensor.dim() == 2:
                tensor = unpermute_rope_rows(tensor, int(self.config.get(heads_key) or 0))
        return tensor

    def _load_float32(self, name: str) -> torch.Tensor:
        return self._load(name)  # dequantized to float32 already

    def _load_rows(self, name: str, start: int, stop: int, float32: bool = False) -> torch.Tensor:
        """Entries [start, stop) along the first dimension (embedding rows, or experts of a stacked
        [experts, out, in] tensor): their rows alone are read and dequantized."""
        shape = self._infos[name].shape
        if len(shape) < 2 or any(name.endswith(suffix) for suffix in self._permuted):
            return super()._load_rows(name, start, stop, float32)
        per = self._infos[name].numel // shape[0] // shape[-1]
        return torch.from_numpy(self._rows(name, start * per, stop * per)).reshape(stop - start, *shape[1:])

    def close(self) -> None:
        self._tensors.clear()
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def open_gguf(path: Path, root: Path, config: dict | None) -> GGUFSource:
    if path.is_dir():
        files = sorted(path.glob("*.gguf"))
        if len(files) != 1:
            raise Unsupported(f"directory holds {len(files)} .gguf files; name one", path)
        path = files[0]
    return GGUFSource(root if root.is_dir() else path.parent, path)
