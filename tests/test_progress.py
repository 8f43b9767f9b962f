"""Progress on stderr: live bars on a terminal, one line per phase start and end in logs."""
import io
import re

import pytest

from provenance import progress
from provenance.progress import Progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


LINE = re.compile(r"^\[\s*(\d+\.\d)s\] (.*)$")


@pytest.fixture(autouse=True)
def no_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("TERM", "xterm")


def _lines(stream):
    return [LINE.match(line).groups() for line in stream.getvalue().splitlines()]


def test_logs_get_one_line_per_phase_start_and_end_and_nothing_per_step():
    log = io.StringIO()
    with Progress(3, "outer", stream=log) as outer:
        for name in ("a", "b", "c"):
            outer.step(name)
        with Progress(2, "inner", stream=log) as inner:
            inner.step("x")
            inner.step("y")
    lines = _lines(log)
    assert [text for _, text in lines] == [
        "outer: started (3 steps)", "inner: started (2 steps)",
        lines[2][1], lines[3][1]]
    assert re.fullmatch(r"inner: done in \d+\.\d s \(2/2 steps\)", lines[2][1])
    assert re.fullmatch(r"outer: done in \d+\.\d s \(3/3 steps\)", lines[3][1])
    clock = [float(t) for t, _ in lines]
    assert clock == sorted(clock)  # one run clock: never backwards between phases


def test_a_later_phase_never_restarts_the_clock():
    log = io.StringIO()
    with Progress(1, "first", stream=log) as p:
        p.step("only")
    start_of_first = float(_lines(log)[0][0])
    with Progress(1, "second", stream=log):
        pass
    assert float(_lines(log)[2][0]) >= start_of_first and progress._CLOCK["start"] is not None


def test_byte_counts_give_a_rate_at_the_end():
    log = io.StringIO()
    with Progress(2, "read", stream=log, total_bytes=4_000_000) as p:
        p.step("shard 1")
        p.advance(2_000_000)
        p.step("shard 2")
        p.advance(2_000_000)
    started, done = [text for _, text in _lines(log)]
    assert started == "read: started (2 steps, 4.0 MB)"
    assert re.fullmatch(r"read: done in \d+\.\d s \(2/2 steps, 4\.0 MB at [\d.]+ [kMGT]?B/s\)", done)


def test_a_phase_ends_when_it_goes_out_of_scope():
    log = io.StringIO()

    def work():
        tracker = Progress(1, "scoped", stream=log)
        tracker.step("one")
    work()
    assert [text.split(" in ")[0] for _, text in _lines(log)] == ["scoped: started (1 step)", "scoped: done"]


def test_an_error_says_the_phase_stopped():
    log = io.StringIO()
    with pytest.raises(KeyError):
        with Progress(2, "fragile", stream=log) as p:
            p.step("one")
            raise KeyError("x")
    assert _lines(log)[-1][1].startswith("fragile stopped by KeyError: done in")


def test_disabled_prints_nothing():
    log = Terminal()
    with Progress(2, "quiet", enabled=False, stream=log) as p:
        p.step("a")
        p.advance(10)
    assert log.getvalue() == ""


def test_terminal_gets_a_live_bar_with_eta_and_the_end_line(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    tty = Terminal()
    with Progress(4, "fingerprint m", stream=tty, total_bytes=8_000) as p:
        p.step("layer 0")
        p.advance(4_000)
        p._bars.refresh()
        live = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", tty.getvalue())
        p.step("layer 1")
        p.advance(4_000)
    assert "fingerprint m: layer 0" in live and "eta" in live and "/s" in live and "4.0 kB/8.0 kB" in live
    assert "started" not in tty.getvalue()  # the bar replaces the start line
    assert "fingerprint m: done in" in tty.getvalue()
    assert progress._LIVE["bars"] is None  # the live display is gone once no phase is open


def test_ci_logs_are_not_live_even_on_a_terminal(monkeypatch):
    monkeypatch.setenv("CI", "true")
    tty = Terminal()
    with Progress(1, "ci", stream=tty) as p:
        p.step("one")
    assert [text.split(" in ")[0] for _, text in _lines(tty)] == ["ci: started (1 step)", "ci: done"]
