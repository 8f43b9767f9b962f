"""Nested results (JSON-like dicts and lists) compared: equal structure and strings, numbers within float
tolerance (synthetic inputs are the same numbers on every machine; products on another CPU differ in their
last bits)."""
from __future__ import annotations

import math

REL_TOL, ABS_TOL = 1e-4, 1e-6


def assert_same(fresh, before, where="result"):
    """Equal structure and strings; numbers equal within the tolerances above."""
    if isinstance(before, dict):
        assert isinstance(fresh, dict) and set(fresh) == set(before), f"{where}: keys differ"
        for k in before:
            assert_same(fresh[k], before[k], f"{where}.{k}")
    elif isinstance(before, list):
        assert isinstance(fresh, list) and len(fresh) == len(before), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(fresh, before)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(before, float) or (isinstance(before, int) and isinstance(fresh, float)):
        assert isinstance(fresh, (int, float)) and math.isclose(fresh, before, rel_tol=REL_TOL, abs_tol=ABS_TOL), \
            f"{where}: {fresh} != {before}"
    else:
        assert fresh == before, f"{where}: {fresh!r} != {before!r}"
