"""The second hostile corpus, each case in its own process: its documented exit code, at most 3 lines on
stderr, no traceback, peak memory under 2 GB, done within 60 s (a hang guard), nothing executed, nothing
written into the inputs, and never exit 70."""
from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from .hostile_corpus2 import CASES

PEAK_RSS_KB = 2 << 20       # 2 GB
HANG_GUARD_S = 60


def _tree(root: Path) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            out[p] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def test_second_corpus_covers_every_group():
    groups = {c[1] for c in CASES}
    assert {"reader", "document", "limits", "special", "pickle", "degenerate", "output", "terminal", "fuzz"} <= groups
    names = [c[0] for c in CASES]
    assert len(names) == len(set(names)) and len(names) >= 50


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_hostile_case(case, tmp_path):
    name, group, builder, code = case
    argv = builder(tmp_path)
    before = _tree(tmp_path / "in") if (tmp_path / "in").exists() else {}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "provenance", "--quiet", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    try:
        out, err = proc.communicate(timeout=HANG_GUARD_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"{name}: still running after {HANG_GUARD_S} s")
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # largest child so far: a bound on this one
    text = err.decode("utf-8", "replace")
    assert proc.returncode != 70, text
    assert proc.returncode == code, text
    assert text.count("\n") <= 3 and "Traceback" not in text, text
    assert "\x1b" not in text and all(line.startswith("provenance: ") for line in text.splitlines()), text
    if code != 0:
        assert text.startswith("provenance: error: "), text
    assert peak_kb < PEAK_RSS_KB, f"{name}: peak {peak_kb} kB"
    assert not (tmp_path / "in" / "CODE_RAN").exists()
    if before:
        assert _tree(tmp_path / "in") == before  # nothing written into an input, not even a temporary
    if code != 0:
        assert not (tmp_path / "out").exists() or not any(
            p.name.endswith((".safetensors", ".part", ".md", ".html")) and p.is_file() for p in (tmp_path / "out").rglob("*"))


def test_report_strings_from_inputs_are_escaped(tmp_path, zoo):
    from provenance.cli import main
    label = "<script>alert(1)</script><img src=x onerror=alert(2)>[link](javascript:alert(3))"
    for name in ("a", "b"):
        assert main(["--quiet", "fingerprint", str(zoo("base-s0")), "-o", str(tmp_path / f"{name}.safetensors"),
                     "--label", label]) == 0
    assert main(["--quiet", "compare", str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors"),
                 "--report", str(tmp_path / "rep")]) == 0
    md, page = (tmp_path / "rep" / "report.md").read_text(), (tmp_path / "rep" / "report.html").read_text()
    assert "alert" in md and "alert" in page  # the label is shown...
    for text in (md, page):  # ...and inert
        assert "<script>alert" not in text and "<img src=x" not in text
    assert not re.search(r"(?<!\\)\]\(javascript:", md)  # Markdown: the link syntax is escaped
    assert "href='javascript" not in page and 'href="javascript' not in page  # HTML: shown as text, never a link
