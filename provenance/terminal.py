"""The lines the command line prints on stderr, and text from inputs made safe for them.

A path or a label can carry a newline (one error would span lines) or an ANSI escape (it would
rewrite the user's terminal): no newline, no escape sequence, no invalid UTF-8. Every message the
command line and its sub-apps (drift compare, claim, index) print goes through say(); the top-level
--quiet and --debug options are kept in STATE, which every sub-app reads.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from .errors import CHECK_FAILED

PROG = "provenance"
STATE = {"debug": False, "quiet": False}  # set by the top-level options before a command runs


def escape_terminal(text: object) -> str:
    """`text` with control characters shown as escapes (\\n, \\x1b, ...) and undecodable bytes as \\udcXX
    surrogates replaced by \\xNN, so the result is one printable line.

    Args:
        text: any object; str() is taken.
    Returns:
        The escaped, single-line text.
    """
    out = []
    for ch in str(text):
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # a byte of a non-UTF-8 file name (surrogateescape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x20 or 0x7F <= code < 0xA0 or code in (0x2028, 0x2029):
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(ch, f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"))
        else:
            out.append(ch)
    return "".join(out)


def display_path(path: os.PathLike | str) -> str:
    """A path for a message: escaped, whatever bytes its name holds."""
    return escape_terminal(os.fspath(path))


def progress_wanted() -> bool:
    """Whether progress goes to stderr: unless the top-level --quiet was given."""
    return not STATE["quiet"]


def say(text: object) -> None:
    """Print a line for the person at the terminal, on stderr (stdout may be JSON), as one escaped line.

    Args:
        text: the message; newlines and escape sequences from inputs (paths, labels) are shown escaped.
    """
    print(f"{PROG}: {escape_terminal(text)}", file=sys.stderr, flush=True)


def print_written(output: Path | None, report: Path | None) -> None:
    """Say which output file and which report were written.

    Args:
        output: the JSON document written, or None.
        report: the report folder written (report.html and report.md), or None.
    """
    if output is not None:
        say(f"wrote {output}")
    if report is not None:
        say(f"wrote {report / 'report.html'} and {report / 'report.md'}")


def check_failed(why: str) -> int:
    """Say why a requested check failed.

    Args:
        why: the reason, without the exit code.
    Returns:
        The exit code for a failed check.
    """
    say(f"{why}: exit {CHECK_FAILED}")
    return CHECK_FAILED
