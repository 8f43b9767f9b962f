"""Errors that end a command, each with its documented exit code.

Every error the program raises on purpose is a ProvenanceError: the CLI prints
its message on one line and exits with its code. Anything else is a bug and
exits with INTERNAL (a traceback only with --debug).
"""
from __future__ import annotations

# Exit codes, documented in README.md ("Exit codes"). Keep the two in step.
OK = 0
CHECK_FAILED = 1      # a requested check failed: --fail-on matched, drift compare found a failure
USAGE = 2             # bad command line (typer's own code for usage errors)
NOT_FOUND = 3         # an input path does not exist
MALFORMED = 4         # an input is corrupt, truncated or inconsistent
UNSAFE = 5            # an input tried something dangerous: pickled code, a path leaving its directory
UNSUPPORTED = 6       # a format, family or dtype the tool does not handle
BACKEND_UNAVAILABLE = 7
INCOMPATIBLE = 8      # inputs that cannot be compared (different inputs behind two drift reports)
INTERNAL = 70
INTERRUPTED = 130


class ProvenanceError(Exception):
    exit_code = INTERNAL

    def __init__(self, message: str, path: object | None = None):
        self.path = None if path is None else str(path)
        text = " ".join(str(message).split())  # one line, whatever the cause carried
        super().__init__(f"{self.path}: {text}" if self.path else text)


class InputNotFound(ProvenanceError):
    exit_code = NOT_FOUND


class MalformedInput(ProvenanceError):
    exit_code = MALFORMED


class UnsafeInput(ProvenanceError):
    exit_code = UNSAFE


class Unsupported(ProvenanceError):
    exit_code = UNSUPPORTED


class BackendUnavailable(ProvenanceError):
    exit_code = BACKEND_UNAVAILABLE


class IncompatibleInputs(ProvenanceError):
    exit_code = INCOMPATIBLE


class CheckFailed(ProvenanceError):
    exit_code = CHECK_FAILED


EXIT_CODES = {
    "ok": OK, "check_failed": CHECK_FAILED, "usage": USAGE, "not_found": NOT_FOUND,
    "malformed": MALFORMED, "unsafe": UNSAFE, "unsupported": UNSUPPORTED,
    "backend_unavailable": BACKEND_UNAVAILABLE, "incompatible": INCOMPATIBLE,
    "internal": INTERNAL, "interrupted": INTERRUPTED,
}
