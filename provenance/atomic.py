"""Write outputs so that a reader never sees half a file.

Data goes to a temporary file in the destination directory, is flushed to disk,
and is renamed over the target: an interrupted run leaves the old file or none.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


# What this process is writing and has written, so an interrupt can take it all back (discard_outputs).
_LIVE: set[Path] = set()      # temporaries not yet renamed into place
_CREATED: list[Path] = []     # files and folders that did not exist before this process wrote them


def _make_parents(directory: Path) -> None:
    missing = []
    for d in [directory, *directory.parents]:
        if d.exists():
            break
        missing.append(d)
    directory.mkdir(parents=True, exist_ok=True)
    _CREATED.extend(reversed(missing))


def discard_outputs() -> None:
    """Remove every temporary in flight and every file and folder this process created: an interrupted
    command leaves no partial output (files it replaced keep their new, complete content)."""
    for tmp in list(_LIVE):
        with contextlib.suppress(OSError):
            tmp.unlink()
    for path in reversed(_CREATED):
        with contextlib.suppress(OSError):
            path.rmdir() if path.is_dir() and not path.is_symlink() else path.unlink()


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it into place on success."""
    target = Path(target)
    _make_parents(target.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    _LIVE.add(tmp_path)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp's 0600 would hide reports meant to be shared
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        existed = target.exists()
        os.replace(tmp_path, target)
        if not existed:
            _CREATED.append(target)
    except BaseException:  # KeyboardInterrupt included: leave nothing behind
        tmp_path.unlink(missing_ok=True)
        raise
    finally:
        _LIVE.discard(tmp_path)


def write_bytes(target: str | os.PathLike, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text(target: str | os.PathLike, text: str) -> None:
    write_bytes(target, text.encode("utf-8"))


def write_json(target: str | os.PathLike, obj: Any) -> None:
    write_text(target, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")
