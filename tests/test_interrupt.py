"""Ctrl-C at several moments of a real process: exit 130, one line on stderr, no partial output."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

# moments after start: during imports, while reading, while computing, while writing (on a slow machine
# the last ones land earlier in the run; every one must end the same way unless the command finished first)
DELAYS = (0.3, 1.0, 2.0, 3.5)


def _files(root):
    return sorted(os.path.relpath(os.path.join(d, n), root) for d, ds, fs in os.walk(root) for n in ds + fs)


@pytest.mark.parametrize("delay", DELAYS)
@pytest.mark.parametrize("command", ["fingerprint", "compare"])
def test_sigint_exits_130_with_one_line_and_no_partial_output(tmp_path, zoo, command, delay):
    out = tmp_path / "out"
    argv = (["fingerprint", str(zoo("base-s0")), "-o", str(out / "fp.safetensors")] if command == "fingerprint" else
            ["compare", str(zoo("base-s0")), str(zoo("base-s1")), "--report", str(out / "report")])
    proc = subprocess.Popen([sys.executable, "-m", "provenance", "--quiet", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    text = err.decode()
    if proc.returncode == 0:  # finished before the signal: complete output, and nothing to test here
        assert out.exists()
        return
    assert proc.returncode == 130, text
    assert text == "provenance: interrupted; no partial output was written\n", text
    assert not out.exists() or _files(out) == [], _files(out)
