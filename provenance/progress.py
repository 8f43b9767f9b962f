"""Progress lines on stderr for long runs; silent when asked to be."""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, label: str, enabled: bool = True):
        self.total, self.label, self.enabled = total, label, enabled
        self.done = 0
        self.start = time.monotonic()

    def step(self, what: str) -> None:
        self.done += 1
        if self.enabled:
            elapsed = time.monotonic() - self.start
            print(f"[{self.label} {self.done}/{self.total} {elapsed:6.1f}s] {what}", file=sys.stderr, flush=True)
