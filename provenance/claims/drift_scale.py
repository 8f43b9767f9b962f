"""Measured drift reports widen the reference-output envelope to the hardware they were measured on.

A drift report (`provenance drift --output`) holds every kernel's error against a float64 golden on
each backend of one machine. As msprobe's benchmark-ratio method, a device's error divided by the
CPU's error for the same kernel, dtype and mode says how much wider that device's envelope is than
this CPU's; the largest such ratio (at least 1) scales the envelope measured here.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import MalformedInput
from ..io.base import read_json_file
from ..precision import dtype_row
from ..schemas import SCHEMA_VERSIONS

# claimed output mode -> (drift report dtype, precision modes that stand for it)
MODE_ROWS = {"fp32": ("fp32", ("ieee",)), "tf32": ("fp32", ("tf32",)), "hf32": ("fp32", ("hf32",)),
             "bf16": ("bf16", ("ieee",)), "fp16": ("fp16", ("ieee",))}


def _rows(path: Path) -> list[dict]:
    doc = read_json_file(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list):
        raise MalformedInput("not a drift report (no rows)", path)
    major = str(doc.get("schema_version", "")).split(".")[0]
    if major != SCHEMA_VERSIONS["drift"].split(".")[0]:
        raise MalformedInput(f"drift report schema {doc.get('schema_version')!r}, expected {SCHEMA_VERSIONS['drift']}", path)
    for row in doc["rows"]:
        if not isinstance(row, dict) or not {"kernel", "backend", "dtype", "mode", "max_rel_err", "emulated"} <= set(row):
            raise MalformedInput("a drift report row lacks kernel, backend, dtype, mode, max_rel_err or emulated", path)
    return doc["rows"]


def envelope_scale(paths: list[Path], mode: str) -> tuple[float, list[dict]]:
    """(scale >= 1, per device and kernel: the ratio of its error to the CPU's) from measured drift reports.

    Args:
        paths: drift report JSON files.
        mode: the claimed output mode.
    Returns:
        The largest device/CPU error ratio over every report and kernel (1.0 when none is larger), and the rows used.
    """
    dtype, modes = MODE_ROWS[mode]
    floor = dtype_row(dtype).floor
    scale, used = 1.0, []
    for path in paths:
        rows = [r for r in _rows(path) if not r["emulated"] and r["dtype"] == dtype]
        cpu = {r["kernel"]: r["max_rel_err"] for r in rows if r["backend"] == "cpu" and r["mode"] == "ieee"}
        for r in rows:
            if r["backend"] == "cpu" or r["mode"] not in modes or r["kernel"] not in cpu:
                continue
            if r["max_rel_err"] is None or cpu[r["kernel"]] is None:
                continue  # an overflow says nothing about the envelope's width
            ratio = max(r["max_rel_err"], floor) / max(cpu[r["kernel"]], floor)
            used.append({"report": str(path), "backend": r["backend"], "kernel": r["kernel"], "mode": r["mode"], "ratio": ratio})
            scale = max(scale, ratio)
    return scale, used
