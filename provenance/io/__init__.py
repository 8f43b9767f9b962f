"""Checkpoint readers. `open_source(path)` picks one by what the path holds."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import torch

from .. import limits
from ..errors import InputNotFound, MalformedInput, ProvenanceError, Unsupported
from ..terminal import escape_terminal
from .base import HF_REPO_PREFIXES, HF_SNAPSHOTS, TensorInfo, TensorSource, confined, read_json_file
from .gguf_reader import open_gguf
from .onnx_reader import open_onnx
from .safetensors_reader import open_safetensors
from .torch_reader import open_torch

# format -> (opener, file suffixes, marker files that identify a directory)
FORMATS = {
    "safetensors": (open_safetensors, (".safetensors",), ("model.safetensors.index.json",)),
    "torch": (open_torch, (".bin", ".pt", ".pth", ".ckpt"), ("pytorch_model.bin.index.json",)),
    "gguf": (open_gguf, (".gguf",), ()),
    "onnx": (open_onnx, (".onnx",), ()),
}
# file magic -> format, for files whose suffix says nothing useful
MAGIC = {b"GGUF": "gguf"}
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "vocab.txt")
REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # what refs/main may hold: a commit hash, no path
MAX_REF_BYTES = 256


def resolve_hf_repository(path: Path) -> Path:
    """A Hugging Face cache repository folder (models--org--name/) stands for the snapshot its refs/main names
    (or its only snapshot when it has no refs/main); any other path is returned as it is."""
    if not (path.is_dir() and path.resolve().name.startswith(HF_REPO_PREFIXES) and (path / HF_SNAPSHOTS).is_dir()):
        return path
    ref = path / "refs" / "main"
    if ref.is_file():
        if ref.stat().st_size > MAX_REF_BYTES:
            raise MalformedInput("refs/main is too large to hold a revision", ref)
        revision = ref.read_bytes().decode("utf-8", errors="replace").strip()
        if not REVISION.fullmatch(revision):
            raise MalformedInput(f"refs/main holds {revision[:60]!r}, not a revision", ref)
        snapshot = confined(path, f"{HF_SNAPSHOTS}/{revision}", what="snapshot")
        if not snapshot.is_dir():
            raise InputNotFound(f"snapshot {revision} named by refs/main is not a folder", path)
        return snapshot
    snapshots = sorted(p for p in (path / HF_SNAPSHOTS).iterdir() if p.is_dir())
    if len(snapshots) != 1:
        raise Unsupported(f"repository folder has no refs/main and {len(snapshots)} snapshots; name one (snapshots/<rev>)", path)
    return snapshots[0]


def detect_format(path: Path) -> str:
    if path.is_dir():
        for fmt, (_, suffixes, markers) in FORMATS.items():
            if any((path / m).exists() for m in markers):
                return fmt
        for fmt, (_, suffixes, _) in FORMATS.items():
            if any(p.suffix in suffixes for p in path.iterdir() if p.is_file() or p.is_symlink()):
                return fmt
        raise Unsupported("no checkpoint found in directory (looked for safetensors, .bin/.pt, .gguf, .onnx)", path)
    if path.name.endswith(".index.json"):
        return "torch" if path.name.startswith("pytorch_model") else "safetensors"
    for fmt, (_, suffixes, _) in FORMATS.items():
        if path.suffix in suffixes:
            return fmt
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head in MAGIC:
        return MAGIC[head]
    raise Unsupported(f"unknown checkpoint format (suffix {path.suffix!r})", path)


SAMPLED_TENSORS = 4  # tensors compared by value when a directory holds two weight formats


def other_formats(directory: Path, fmt: str) -> list[str]:
    """Weight formats besides `fmt` that a model directory also holds (safetensors beside .bin, say)."""
    names = [p.name for p in directory.iterdir()]
    return [other for other, (_, suffixes, markers) in FORMATS.items() if other != fmt and other in ("safetensors", "torch")
            and any(n.endswith(suffixes) or n in markers for n in names)]


def compare_formats(source: TensorSource, directory: Path, config: dict) -> None:
    """When a directory holds two weight formats, record which is read and warn on stderr when they differ
    (names, shapes, or the values of a sample of tensors): the files a user sees are not all the model read."""
    others = other_formats(directory, source.format)
    if not others:
        return
    source.metadata["weights_read"] = source.format
    source.metadata["also_present"] = others
    for other in others:
        try:
            alt = FORMATS[other][0](directory, directory, config)
        except ProvenanceError as exc:
            _warn(f"{directory}: reading the {source.format} weights; the {other} weights beside them are unreadable ({exc})")
            continue
        try:
            why = _difference(source, alt)
        finally:
            alt.close()
        if why:
            _warn(f"{directory}: holds {source.format} and {other} weights that differ ({why}); "
                  f"reading the {source.format} weights")


def _difference(a: TensorSource, b: TensorSource) -> str | None:
    ia, ib = a.infos(), b.infos()
    if set(ia) != set(ib):
        return f"{len(set(ia) ^ set(ib))} tensor names are in one only"
    names = sorted(ia)
    for name in names:
        if ia[name].shape != ib[name].shape:
            return f"tensor {name!r} has shape {ia[name].shape} against {ib[name].shape}"
    step = max(1, len(names) // SAMPLED_TENSORS)
    for name in names[::step][:SAMPLED_TENSORS]:
        if not torch.equal(a.get(name).float(), b.get(name).float()):
            return f"tensor {name!r} holds different values"
    return None


def _warn(text: str) -> None:
    print(f"provenance: warning: {escape_terminal(text)}", file=sys.stderr, flush=True)


def load_config(directory: Path) -> dict:
    """config.json beside the weights, if any. Never required: shapes are read from tensors."""
    candidate = directory / "config.json"
    if not candidate.exists():
        return {}
    data = read_json_file(confined(directory, "config.json", what="config"))
    if not isinstance(data, dict):
        raise MalformedInput("config.json is not a JSON object", candidate)
    return data


def load_vocab(directory: Path) -> tuple[list[str] | None, Path | None]:
    """Token strings by id from HF tokenizer files, for aligning models whose vocabularies differ."""
    for name in TOKENIZER_FILES:
        candidate = directory / name
        if not candidate.exists():
            continue
        path = confined(directory, name, what="tokenizer")
        return _tokens_from(path, name), path
    return None, None


def read_vocab_file(path: str | Path) -> list[str]:
    """Token strings from a tokenizer file a user names (tokenizer.json, vocab.json or vocab.txt)."""
    path = Path(path)
    if not path.exists():
        raise InputNotFound("no such tokenizer file", path)
    limits.regular_file(path, "tokenizer file")
    kind = "vocab.txt" if path.suffix == ".txt" else ("tokenizer.json" if path.name.endswith("tokenizer.json") else "vocab.json")
    tokens = _tokens_from(path, kind)
    if not tokens:
        raise MalformedInput("holds no token vocabulary", path)
    return tokens


def _tokens_from(path: Path, name: str) -> list[str] | None:
    tokens = _parse_tokens(path, name)
    if tokens is not None:
        limits.check("vocab", len(tokens), path, "tokens in the vocabulary")
    return tokens


def _parse_tokens(path: Path, name: str) -> list[str] | None:
    if name == "vocab.txt":
        limits.regular_file(path, "vocabulary", "document_bytes")
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    data = read_json_file(path)
    model = data.get("model") if isinstance(data, dict) else None
    mapping = model.get("vocab") if name == "tokenizer.json" and isinstance(model, dict) else data
    if isinstance(mapping, list):  # unigram tokenizers: [[piece, score], ...]
        return [str(p[0]) if isinstance(p, list) and p else str(p) for p in mapping]
    if isinstance(mapping, dict) and all(isinstance(v, int) for v in mapping.values()):
        size = max(mapping.values(), default=-1) + 1
        limits.check("vocab", size, path, "token ids the vocabulary claims")
        tokens = [""] * size
        for token, idx in mapping.items():
            if idx >= 0:
                tokens[idx] = token
        return tokens
    return None


def open_source(path: str | Path) -> TensorSource:
    """Open a checkpoint file or directory for lazy, read-only access."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise InputNotFound("no such file or directory", path)
    if path.is_symlink() and not path.exists():
        raise InputNotFound("dangling symbolic link", path)
    path = resolve_hf_repository(path)
    if path.is_dir():
        limits.readable_dir(path)
    else:
        limits.regular_file(path, "checkpoint")
    fmt = detect_format(path)
    directory = path if path.is_dir() else path.parent
    config = load_config(directory)
    opener = FORMATS[fmt][0]
    source = opener(path, path, config)
    limits.check("tensors", len(source.infos()), path, "tensors in the checkpoint")
    if path.is_dir():
        compare_formats(source, path, config)
    if config:
        source.side_files.append(directory / "config.json")
    if source.format == "gguf":
        source.vocab_tokens = source.vocab()
    elif path.is_dir() or config:  # a bare file's neighbours are not assumed to belong to it
        source.vocab_tokens, vocab_file = load_vocab(directory)
        if vocab_file is not None:
            source.side_files.append(vocab_file)
    return source


__all__ = ["TensorInfo", "TensorSource", "open_source", "detect_format", "read_vocab_file", "resolve_hf_repository",
           "FORMATS"]
