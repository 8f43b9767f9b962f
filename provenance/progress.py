"""Progress of long runs on stderr, through rich; silent when asked to be.

A phase is one `Progress`: `step(message)` says the next item starts (so the one before it is done),
`advance(nbytes)` counts bytes of a streaming read, and the phase ends at `finish()`, at the end of a
`with` block, or when the object goes out of scope. Interactive terminals get live bars with an ETA
(bytes/s when byte counts are given); logs (stderr not a terminal, or CI set) get one line when a
phase starts and one when it ends. Every line shows the time since the run's first phase began, one
monotonic clock for the whole process, so it never jumps backwards between phases.
"""
from __future__ import annotations

import os
import sys
import time

from rich.console import Console
from rich.table import Column
from rich.progress import BarColumn, ProgressColumn, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress
from rich.text import Text

_CLOCK: dict = {"start": None}  # the run's monotonic start, set by its first phase
_LIVE: dict = {"bars": None, "phases": 0}  # one live display shared by nested phases


def _elapsed() -> float:
    if _CLOCK["start"] is None:
        _CLOCK["start"] = time.monotonic()
    return time.monotonic() - _CLOCK["start"]


def interactive(stream=None) -> bool:
    """Live bars only on a terminal that is not a CI log."""
    stream = stream or sys.stderr
    if os.environ.get("CI", "").lower() not in ("", "0", "false") or os.environ.get("TERM") == "dumb":
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


class _CountColumn(ProgressColumn):
    """Items done of total, and bytes with their rate where the phase counts bytes."""

    def render(self, task) -> Text:
        text = f"{task.fields['done']}/{task.fields['items']}"
        if task.fields.get("bytes_total"):
            rate = task.fields["bytes"] / max(task.elapsed or 0.0, 1e-9)
            text += f"  {_size(task.fields['bytes'])}/{_size(task.fields['bytes_total'])}  {_size(rate)}/s"
        return Text(text, style="progress.download")


class _ClockColumn(ProgressColumn):
    def render(self, task) -> Text:
        return Text(f"{_elapsed():7.1f}s", style="progress.elapsed")


def _bars(stream) -> RichProgress:
    if _LIVE["bars"] is None:
        _LIVE["bars"] = RichProgress(_ClockColumn(), TextColumn("{task.description}", table_column=Column(width=36, no_wrap=True, overflow="ellipsis")), BarColumn(), TaskProgressColumn(),
                                     _CountColumn(), TextColumn("eta"), TimeRemainingColumn(),
                                     console=Console(file=stream or sys.stderr), transient=True)
        _LIVE["bars"].start()
    _LIVE["phases"] += 1
    return _LIVE["bars"]


def _release() -> None:
    _LIVE["phases"] -= 1
    if _LIVE["phases"] == 0 and _LIVE["bars"] is not None:
        _LIVE["bars"].stop()
        _LIVE["bars"] = None


class Progress:
    """One phase of a long run.

    Args:
        total: number of items (steps) in the phase.
        label: what the phase does, e.g. "fingerprint base-s0".
        enabled: False prints nothing (--quiet).
        total_bytes: bytes the phase will read, when known; `advance(nbytes)` then drives the bar and its rate.
        stream: where lines go (default: stderr); decides whether bars are live.
    """

    def __init__(self, total: int, label: str, enabled: bool = True, *, total_bytes: int | None = None, stream=None):
        self.total, self.label, self.enabled = total, label, enabled
        self.total_bytes, self.bytes = total_bytes, 0
        self.done = 0
        self.stream = stream
        self.start = time.monotonic()
        self._clock_at_start = _elapsed()
        self._finished = not enabled
        self._task = None
        self._live = enabled and interactive(stream)
        if self._live:
            self._bars = _bars(stream)
            self._task = self._bars.add_task(label, total=total_bytes or total or None, done=0, items=total,
                                             bytes=0, bytes_total=total_bytes)
        elif enabled:
            size = f", {_size(total_bytes)}" if total_bytes else ""
            self._line(f"{label}: started ({total} step{'s' if total != 1 else ''}{size})")

    def _line(self, text: str) -> None:
        stream = self.stream or sys.stderr
        if self._live:
            self._bars.console.print(f"[{_elapsed():7.1f}s] {text}", highlight=False, markup=False)
        else:
            print(f"[{_elapsed():7.1f}s] {text}", file=stream, flush=True)

    def step(self, what: str = "") -> None:
        """The next item starts; `what` names it on the live bar."""
        self.done += 1
        if self._task is not None:
            description = f"{self.label}: {what}" if what else self.label
            update = {"done": self.done, "description": description}
            if not self.total_bytes:
                update["completed"] = self.done - 1  # the item just named is under way, not done
            self._bars.update(self._task, **update)

    def advance(self, nbytes: int) -> None:
        """`nbytes` more bytes were read."""
        self.bytes += nbytes
        if self._task is not None and self.total_bytes:
            self._bars.update(self._task, completed=self.bytes, bytes=self.bytes)

    def finish(self) -> None:
        """End the phase: one line with its duration (and its byte rate). Later calls do nothing."""
        if self._finished:
            return
        self._finished = True
        seconds = time.monotonic() - self.start
        rate = f", {_size(self.bytes)} at {_size(self.bytes / max(seconds, 1e-9))}/s" if self.bytes else ""
        text = f"{self.label}: done in {seconds:.1f} s ({self.done}/{self.total} steps{rate})"
        self._line(text)
        if self._task is not None:
            self._bars.remove_task(self._task)
            self._task = None
            _release()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is not None and not self._finished:
            self.label += f" stopped by {exc_type.__name__}"
        self.finish()

    def __del__(self) -> None:
        try:
            self.finish()
        except Exception:  # interpreter shutdown: streams may be gone
            pass
