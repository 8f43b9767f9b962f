"""Compare drift reports made on different machines (an NPU box, a GPU box, a laptop).

As msprobe's benchmark-ratio method: each kernel's error against the shared float64 golden on
one machine, divided by the same kernel's error on the reference machine (the first report):
<= 1 pass, 1-2 warn, above 2 fail. Errors below one unit of the dtype's precision count as
equal. Verdicts must agree. Reports computed from different inputs are refused, except zoo models
rebuilt from the same recipe: their bytes differ across CPU instruction sets, and the result says so.
"""
from __future__ import annotations

from ..backends import backend_rank
from ..errors import BackendUnavailable, IncompatibleInputs, MalformedInput
from ..precision import MissingPrecisionRow, dtype_row, mode_class
from ..schemas import SCHEMA_VERSIONS, tool_record

STATUS = ((1.0, "pass"), (2.0, "warn"))


def _primary_backend(report, name: str) -> str:
    """The backend a report stands for: of those it measured, the one of highest rank (an accelerator
    before the CPU every machine has). A backend this install has no adapter for cannot be ranked."""
    present = sorted({r["backend"] for r in report["rows"] if not r["emulated"]})
    if not present:
        raise MalformedInput("drift report has no measured (non-emulated) rows", name)
    try:
        return max(present, key=backend_rank)
    except BackendUnavailable as exc:
        raise IncompatibleInputs(f"measured on a backend this install cannot rank: {exc}", name) from None


def _floor(dtype: str, name: str) -> float:
    """The dtype row's floor; a dtype the precision table has no row for is named with its report."""
    try:
        return dtype_row(dtype).floor
    except MissingPrecisionRow as exc:
        raise MissingPrecisionRow(str(exc), name) from None


def _key(row) -> tuple:
    return (row["kernel"], row["dtype"], mode_class(row["mode"]), row["deterministic_algorithms"])


def _status(ratio: float) -> str:
    for limit, name in STATUS:
        if ratio <= limit:
            return name
    return "fail"


def cpu_capability(report: dict) -> str:
    """The instruction set torch dispatched to where the report was made (its golden run is always on the CPU).

    Args:
        report: a drift report.
    Returns:
        The CPU capability ("AVX512", "AVX2", ...), or "unknown".
    """
    ident = (report.get("golden") or {}).get("identity") or (report.get("identity") or {}).get("cpu") or {}
    return str(ident.get("cpu_capability") or "unknown")


def _recipes(inputs: dict) -> list | None:
    """Each model's label and zoo recipe, in order; None when any model has no recipe."""
    out = [(m.get("label"), m.get("recipe")) for m in inputs["models"]]
    return None if any(r is None for _, r in out) else out


def check_same_inputs(reports: list[dict], names: list[str]) -> str | None:
    """Refuse reports measured on different inputs.

    Args:
        reports: drift reports; the first is the reference.
        names: a name for each report, used in messages.
    Returns:
        None when every report read byte-identical inputs; a note when some read models rebuilt from the same
        zoo recipes (other bytes: training on another instruction set rounds differently).
    Raises:
        IncompatibleInputs: the models or the kernel inputs differ and no shared recipe explains it.
    """
    ref = reports[0]["inputs"]
    ref_cap = cpu_capability(reports[0])
    notes = []
    for report, name in zip(reports[1:], names[1:]):
        inputs = report["inputs"]
        cap = cpu_capability(report)
        caps = f"{names[0]}: {ref_cap}, {name}: {cap}"
        if [m["content_hash"] for m in inputs["models"]] == [m["content_hash"] for m in ref["models"]]:
            if inputs["kernel_inputs_sha256"] != ref["kernel_inputs_sha256"]:
                raise IncompatibleInputs(f"{name} was measured on other kernel inputs than {names[0]}")
            continue
        recipes = _recipes(inputs)
        if recipes is None or recipes != _recipes(ref):
            differ = f" (and the CPU capabilities differ: {caps})" if cap != ref_cap else ""
            raise IncompatibleInputs(f"{name} was measured on other models than {names[0]}{differ}")
        where = (f"on machines whose CPU capabilities differ ({caps})" if cap != ref_cap
                 else f"on machines of the same CPU capability ({cap}) whose bits still differ")
        notes.append(f"inputs rebuilt from the same zoo recipes {where}: kernel errors are compared on "
                     "equivalent, not identical, weights")
    return "; ".join(notes) or None


def compare_reports(reports: list[dict], names: list[str]) -> dict:
    """Compare drift reports from different machines against the first.

    Each report stands for its highest-ranked measured backend; rows are matched by kernel, dtype, mode
    class and determinism setting, and each error is divided by the reference's (both floored at the
    dtype row's floor): at most 1 pass, up to 2 warn, above fail. Verdicts must agree.

    Args:
        reports: drift report documents; the first is the reference.
        names: a name for each report (file names), used in rows and messages.
    Returns:
        The drift-compare document (docs/SCHEMAS.md), with status pass, warn or fail.
    Raises:
        MalformedInput: fewer than two reports, another schema, or a report with no measured rows.
        IncompatibleInputs: the reports were measured on different inputs, or on a backend with no row in this
            install's backend registry.
        MissingPrecisionRow: a row's dtype has no row in the precision table.
    """
    if len(reports) < 2:
        raise MalformedInput("drift compare needs at least two reports")
    for report, name in zip(reports, names):
        if str(report.get("schema_version", "")).split(".")[0] != SCHEMA_VERSIONS["drift"].split(".")[0]:
            raise MalformedInput(f"not a drift report of schema {SCHEMA_VERSIONS['drift']}", name)
    inputs_note = check_same_inputs(reports, names)
    ref_backend = _primary_backend(reports[0], names[0])
    ref_rows = {_key(r): r for r in reports[0]["rows"] if r["backend"] == ref_backend and not r["emulated"]}
    rows = []
    for report, name in zip(reports[1:], names[1:]):
        backend = _primary_backend(report, name)
        for r in report["rows"]:
            if r["backend"] != backend or r["emulated"] or _key(r) not in ref_rows:
                continue
            ref = ref_rows[_key(r)]
            floor = _floor(r["dtype"], name)
            if r["max_rel_err"] is None or ref["max_rel_err"] is None:  # an overflow on one side or both
                ratio = 1.0 if r["max_rel_err"] is ref["max_rel_err"] else (float("inf") if r["max_rel_err"] is None else 0.0)
            else:
                ratio = max(r["max_rel_err"], floor) / max(ref["max_rel_err"], floor)
            rows.append({"report": name, "kernel": r["kernel"], "dtype": r["dtype"], "mode": r["mode"],
                         "reference_mode": ref["mode"], "deterministic_algorithms": r["deterministic_algorithms"],
                         "backend": backend, "reference_backend": ref_backend,
                         "max_rel_err": r["max_rel_err"], "reference_max_rel_err": ref["max_rel_err"],
                         "ratio": ratio if ratio != float("inf") else None, "status": _status(ratio),
                         "deterministic": r["deterministic"], "reference_deterministic": ref["deterministic"]})
    verdicts = []
    ref_verdicts = {tuple(v["pair"]): v for v in reports[0]["verdicts"]}
    for report, name in zip(reports[1:], names[1:]):
        for v in report["verdicts"]:
            ref = ref_verdicts.get(tuple(v["pair"]))
            if ref is None:
                continue
            seen = {ref["verdict"], v["verdict"], *ref["verdicts_by_config"].values(), *v["verdicts_by_config"].values()}
            verdicts.append({"report": name, "pair": v["pair"], "reference_verdict": ref["verdict"], "verdict": v["verdict"],
                             "agree": len(seen) == 1, "margin_to_drift": v["margin_to_drift"],
                             "reference_margin_to_drift": ref["margin_to_drift"]})
    counts = {s: sum(r["status"] == s for r in rows) for s in ("pass", "warn", "fail")}
    failed = counts["fail"] > 0 or not all(v["agree"] for v in verdicts) or not rows
    return {"schema_version": SCHEMA_VERSIONS["drift_compare"], "tool": tool_record(), "reports": names, "reference": names[0],
            "inputs_note": inputs_note, "cpu_capabilities": {n: cpu_capability(r) for r, n in zip(reports, names)},
            "reference_backend": ref_backend, "rows": rows, "verdicts": verdicts, "counts": counts,
            "status": "fail" if failed else ("warn" if counts["warn"] else "pass")}
