"""Where outputs may go: never over an input file, never inside an input's model directory.

A model given as a directory owns that directory (for a Hugging Face cache snapshot, its whole
repository folder). A model given as one file (.safetensors, .gguf, .onnx, .bin) owns only the
files it is read from: itself, and what the reader reads beside it (an ONNX external data file,
config.json and tokenizer files), so a fingerprint may be written next to it.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterable

from .errors import USAGE, ProvenanceError, UnsafeInput
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


class BadOutput(ProvenanceError):
    """An output the command could not write (a directory where a file goes, a file where a folder goes,
    a folder that refuses writing): a bad command line, refused before any work."""
    exit_code = USAGE


def check_writable(target: str | Path, directory: bool) -> None:
    """Refuse, before any work, an output that cannot be written where it is named.

    Args:
        target: the output file (directory=False) or folder (directory=True).
        directory: which of the two the command writes.
    Raises:
        BadOutput: naming the output and why.
    """
    target = Path(target)
    if target.is_dir() and not directory:
        raise BadOutput("output names an existing directory; name a file", target)
    if target.exists() and not target.is_dir() and directory:
        raise BadOutput("output folder names an existing file; name a folder", target)
    ancestor = target if directory and target.is_dir() else target.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        if ancestor.is_symlink():
            raise BadOutput(f"output path runs through a dangling link {ancestor}", target)
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise BadOutput(f"output path runs through {ancestor}, which is a file, not a folder", target)
    try:  # a real probe: permission bits say nothing for root, read-only mounts or full disks
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError as exc:
        raise BadOutput(f"cannot write in {ancestor} ({exc.strerror or type(exc).__name__})", target) from None


def refuse_outputs(targets: Iterable[str | Path | None], models: Iterable[str | Path], *,
                   directories: Iterable[str | Path | None] = ()) -> None:
    """Refuse, before any work, an output that cannot be written, or that would land over an input file or
    inside a model directory.

    Args:
        targets: output files (None entries are skipped).
        models: the inputs as the user named them.
        directories: output folders (reports, bundles; None entries are skipped).
    Raises:
        BadOutput: an output that cannot be written there.
        UnsafeInput: naming the output and the input it would overwrite or land in.
    """
    files, folders = [t for t in targets if t is not None], [t for t in directories if t is not None]
    for target in files:
        check_writable(target, directory=False)
    for target in folders:
        check_writable(target, directory=True)
    guards = [guarded(m) for m in models]
    for target in [*files, *folders]:
        where = Path(target).resolve()
        for directories, files in guards:
            for d in directories:
                if where == d or d in where.parents:
                    raise UnsafeInput(f"refusing to write inside the model directory {d}", target)
            for f in files:
                if where == f:
                    raise UnsafeInput(f"refusing to write over the input file {f}", target)
