"""Where outputs may go: never over an input file, never inside an input's model directory.

A model given as a directory owns that directory (for a Hugging Face cache snapshot, its whole
repository folder). A model given as one file (.safetensors, .gguf, .onnx, .bin) owns only the
files it is read from: itself, and what the reader reads beside it (an ONNX external data file,
config.json and tokenizer files), so a fingerprint may be written next to it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from .errors import ProvenanceError, UnsafeInput
from .io import open_source
from .io.base import confinement_root, hf_repository


def guarded(model: str | Path) -> tuple[list[Path], list[Path]]:
    """What writing must leave alone for one input.

    Args:
        model: a checkpoint file or directory as the user named it.
    Returns:
        (directories, files): resolved paths no output may be inside, and no output may replace.
    """
    path = Path(model)
    if path.is_dir():
        return sorted({path.resolve(), confinement_root(path)}), []
    files = {path.absolute(), path.resolve()}
    try:
        with open_source(path) as source:
            files.update(f.resolve() for f in [*source.files, *source.side_files])
    except ProvenanceError:
        pass  # an unreadable input is reported when it is read; guard the file itself
    repository = hf_repository(path.absolute().parent)  # a file inside a hub cache snapshot
    return ([repository] if repository is not None else []), sorted(files)


def refuse_outputs(targets: Iterable[str | Path | None], models: Iterable[str | Path]) -> None:
    """Refuse, before any work, an output that would land over an input file or inside a model directory.

    Args:
        targets: output files or directories (None entries are skipped).
        models: the inputs as the user named them.
    Raises:
        UnsafeInput: naming the output and the input it would overwrite or land in.
    """
    guards = [guarded(m) for m in models]
    for target in targets:
        if target is None:
            continue
        where = Path(target).resolve()
        for directories, files in guards:
            for d in directories:
                if where == d or d in where.parents:
                    raise UnsafeInput(f"refusing to write inside the model directory {d}", target)
            for f in files:
                if where == f:
                    raise UnsafeInput(f"refusing to write over the input file {f}", target)
