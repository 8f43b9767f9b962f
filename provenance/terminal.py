"""Text from inputs, made safe for a terminal line: no newline, no escape sequence, no invalid UTF-8.

A path or a label can carry a newline (one error would span lines) or an ANSI escape (it would
rewrite the user's terminal). Every message the command line prints passes through here.
"""
from __future__ import annotations

import os


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
