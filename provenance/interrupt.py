"""Ctrl-C for the command line: exit 130, one line, no partial output, at any moment.

The handler is installed before anything heavy is imported (the `provenance` script and `python -m
provenance` start here), so an interrupt during start-up ends the same way as one during a kernel or
while a report is written. It raises nothing into the running code: a KeyboardInterrupt unwinding
through a native callback or a finally block can end in a crash instead of exit 130.
"""
from __future__ import annotations

import os
import signal

INTERRUPTED = 130  # errors.INTERRUPTED, repeated so this module imports nothing
LINE = b"provenance: interrupted; no partial output was written\n"


def _interrupted(signum, frame) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
    import sys
    atomic = sys.modules.get("provenance.atomic")  # nothing was written unless it was imported
    if atomic is not None:
        atomic.discard_outputs()
    os.write(2, LINE)
    os._exit(INTERRUPTED)


def install() -> None:
    """Route SIGINT to the clean exit (command-line processes only, never a library user's process)."""
    signal.signal(signal.SIGINT, _interrupted)


def entry() -> None:
    """The `provenance` script: install the handler, then run the command line."""
    install()
    from .cli import main
    code = main()
    # The command has finished and written what it writes: a Ctrl-C now changes nothing. Python restores the
    # default disposition while it shuts down, which would end the process by the signal instead of its code.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise SystemExit(code)
