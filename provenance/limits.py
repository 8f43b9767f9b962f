"""Explicit limits on what one input may ask of the program, checked before the work starts.

A small hostile file can name a billion layers, a million tensors or a four-million-token
vocabulary; without a bound each turns into minutes of work or gigabytes of memory. Every
limit has a default far above any real checkpoint (DeepSeek-V3: 61 layers, about 92k tensors,
163 shards; the largest vocabularies: about 256k tokens) and an environment variable that
raises it. The table is the single source of truth; README.md quotes it.

Only regular files are read, and their size is known before they are read: a FIFO, a device,
a directory where a file belongs never reach a reader.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import InputNotFound, MalformedInput

ENV_PREFIX = "PROVENANCE_MAX_"

# name -> (default, what it bounds). The environment variable is PROVENANCE_MAX_<NAME upper-case>.
LIMITS: dict[str, tuple[int, str]] = {
    "layers": (1024, "transformer layers in a checkpoint, a config or a fingerprint"),
    "tensors": (250_000, "tensors in one checkpoint (all shards together)"),
    "header_bytes": (32 << 20, "bytes of one safetensors header"),
    "document_bytes": (64 << 20, "bytes of one JSON document or vocab.txt (config, index, tokenizer, drift report)"),
    "vocab": (1_000_000, "tokens in one vocabulary (tokenizer file or GGUF token list)"),
    "shards": (10_000, "shard files named by one index"),
    "rows": (100_000, "rows of one drift report"),
    "onnx_nodes": (1_000_000, "nodes in one ONNX graph"),
    "gguf_kv": (100_000, "metadata entries in one GGUF header"),
    "pickle_bytes": (256 << 20, "bytes of a pickle stream after decompression (torch zip data.pkl)"),
    "pickle_ops": (20_000_000, "pickle opcodes parsed when classifying a refused pickle"),
    "zip_ratio": (200, "uncompressed/compressed size ratio of a deflated record in a torch zip"),
}


def limit(name: str) -> int:
    """The limit in force: the environment variable PROVENANCE_MAX_<NAME> when set, else the default.

    Args:
        name: a key of LIMITS.
    Returns:
        The bound, a positive integer.
    """
    default = LIMITS[name][0]
    raw = os.environ.get(ENV_PREFIX + name.upper())
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw.strip().replace("_", ""))
    except ValueError:
        raise MalformedInput(f"environment variable {ENV_PREFIX + name.upper()}={raw[:40]!r} is not an integer") from None
    if value <= 0:
        raise MalformedInput(f"environment variable {ENV_PREFIX + name.upper()} must be positive")
    return value


def check(name: str, value: int, path: object | None = None, what: str | None = None) -> None:
    """Refuse `value` above the limit `name`, naming the variable that raises it.

    Args:
        name: a key of LIMITS.
        value: the count or size the input asks for.
        path: the input, named in the error.
        what: words for the count (default: the table's description).
    """
    bound = limit(name)
    if value > bound:
        raise MalformedInput(f"{what or LIMITS[name][1]}: {value} exceeds the limit of {bound} "
                             f"(raise it with {ENV_PREFIX + name.upper()})", path)


def regular_file(path: str | os.PathLike, what: str = "file", max_bytes: str | None = None) -> int:
    """Refuse anything but a readable regular file (FIFO, device, socket, directory, link loop) before it is opened.

    Args:
        path: the file.
        what: how the error names it ("config", "shard", ...).
        max_bytes: a key of LIMITS bounding its size, or None.
    Returns:
        Its size in bytes.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise InputNotFound(f"{what} does not exist", path) from None
    except OSError as exc:  # ELOOP, EACCES on a parent, ENAMETOOLONG
        raise MalformedInput(f"{what} cannot be examined ({exc.strerror or type(exc).__name__})", path) from None
    if stat.S_ISDIR(info.st_mode):
        raise MalformedInput(f"{what} is a directory, not a file", path)
    if not stat.S_ISREG(info.st_mode):
        kind = "FIFO" if stat.S_ISFIFO(info.st_mode) else "device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(
            info.st_mode) else "socket" if stat.S_ISSOCK(info.st_mode) else "special file"
        raise MalformedInput(f"{what} is a {kind}, not a regular file; refused without reading", path)
    if not os.access(path, os.R_OK):
        raise MalformedInput(f"{what} is not readable (permission denied)", path)
    if max_bytes is not None:
        check(max_bytes, info.st_size, path, f"{what} size in bytes")
    return info.st_size


def readable_dir(path: Path, what: str = "model directory") -> None:
    """Refuse a directory that cannot be listed, before a reader iterates it."""
    if not os.access(path, os.R_OK | os.X_OK):
        raise MalformedInput(f"{what} is not readable (permission denied)", path)


def table_markdown() -> str:
    """The limits as a Markdown table (for README.md and `--help` texts)."""
    lines = ["| limit | default | environment variable | bounds |", "|---|---|---|---|"]
    for name, (default, what) in LIMITS.items():
        lines.append(f"| {name} | {default:,} | `{ENV_PREFIX + name.upper()}` | {what} |")
    return "\n".join(lines)
