"""Drift reports for people: a plain summary, one row per kernel with its worst error per dtype (the
full table folded away), an error plot, verdict stability; and the comparison of reports from
different machines as a table and one ratio plot with the pass/warn/fail bands."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .render import Figure, Section, Table, figure_png, new_figure, write_report

# drift compare's bands: (upper limit of the ratio, status, colour); above the last, fail
BANDS = ((1.0, "pass", "#d8efd8"), (2.0, "warn", "#fbe7c6"), (float("inf"), "fail", "#f6d0d0"))
STATUS_COLOURS = {"pass": "C2", "warn": "C1", "fail": "C3"}
DET_WORDS = {False: "off", True: "on"}


def _fmt(v):
    return "overflow" if v is None else v


def _config(r) -> str:
    return f"{r['backend']}/{r['dtype']}/{r['mode']}" + ("+det" if r["deterministic_algorithms"] else "")


def _worst(rows) -> float | None | str:
    """The largest max relative error of the rows; 'overflow' when any overflowed; None when there are none."""
    if not rows:
        return None
    if any(r["max_rel_err"] is None for r in rows):
        return "overflow"
    return max(r["max_rel_err"] for r in rows)


def _all(rows, key) -> str:
    values = [r[key] for r in rows if r[key] is not None]
    return "n/a" if not values else ("yes" if all(values) else "NO")


def kernel_summary(report) -> tuple[list[str], list[list]]:
    """One row per kernel: its worst max relative error per measured dtype, the worst emulated mode,
    and whether it was bitwise repeatable and slice invariant everywhere.

    Args:
        report: the drift document.
    Returns:
        (headers, rows) of the table.
    """
    measured = [r for r in report["rows"] if not r["emulated"]]
    emulated = [r for r in report["rows"] if r["emulated"]]
    dtypes = list(dict.fromkeys(r["dtype"] for r in measured))
    headers = ["kernel"] + [f"worst {d}" for d in dtypes] + (["worst emulated mode"] if emulated else []) + \
              ["bitwise repeatable", "slice invariant"]
    rows = []
    for k in dict.fromkeys(r["kernel"] for r in report["rows"]):
        mine = [r for r in report["rows"] if r["kernel"] == k]
        row = [k] + [_fmt(_worst([r for r in mine if not r["emulated"] and r["dtype"] == d])) if any(
            not r["emulated"] and r["dtype"] == d for r in mine) else "n/a" for d in dtypes]
        if emulated:
            em = [r for r in mine if r["emulated"]]
            worst = max(em, key=lambda r: float("inf") if r["max_rel_err"] is None else r["max_rel_err"], default=None)
            row.append("n/a" if worst is None else f"{_cell_num(worst['max_rel_err'])} ({worst['mode']})")
        rows.append(row + [_all(mine, "deterministic"), _all(mine, "slice_invariant")])
    return headers, rows


def _times(v: float) -> str:
    """A ratio as a reader says it: 1,768 rather than 1.77e+03."""
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


def _cell_num(v) -> str:
    return "overflow" if v is None else f"{v:.3g}"


def _full_table(report) -> Table:
    rows = [[r["kernel"], r["backend"], r["dtype"], r["mode"] + ("+det" if r["deterministic_algorithms"] else ""),
             "yes" if r["emulated"] else "no", _fmt(r["max_rel_err"]), _fmt(r["median_rel_err"]), _fmt(r["max_ulp"]),
             _fmt(r["cosine"]), "yes" if r["deterministic"] else "NO",
             "n/a" if r["slice_invariant"] is None else ("yes" if r["slice_invariant"] else "NO"), r["time_ms"]]
            for r in report["rows"]]
    return Table(["kernel", "backend", "dtype", "mode", "emulated", "max rel err", "median rel err", "max ulp", "cosine",
                  "bitwise repeatable", "slice invariant", "time (ms)"], rows,
                 f"every configuration ({len(rows)} rows; also in the drift JSON document)")


def _error_figure(report) -> Figure:
    configs = list(dict.fromkeys(_config(r) for r in report["rows"]))
    kernels = list(dict.fromkeys(r["kernel"] for r in report["rows"]))
    index = {(r["kernel"], _config(r)): r for r in report["rows"]}
    fig, ax = new_figure(8, 4.2)
    width = 0.8 / max(1, len(configs))
    for c, key in enumerate(configs):
        vals = [index[(k, key)]["median_rel_err"] if (k, key) in index and index[(k, key)]["median_rel_err"] else np.nan
                for k in kernels]
        ax.bar(np.arange(len(kernels)) + c * width, np.maximum(vals, 1e-12), width, label=key)
    ax.set_yscale("log")
    ax.set_xticks(np.arange(len(kernels)) + 0.4 - width / 2, kernels, rotation=30, ha="right", fontsize=8)
    ax.set_xlabel("kernel", fontsize=9)
    ax.set_ylabel("median relative error vs float64", fontsize=9)
    ax.set_title("Kernel error against the float64 golden run", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, title="backend/dtype/mode",
              title_fontsize=7)
    return Figure("drift_errors", figure_png(fig),
                  "Median relative error of each kernel against the float64 golden run, per backend, dtype and precision "
                  "mode (+det: deterministic algorithms on; cpu-emulated-*: modes emulated on the CPU). Lower is better; "
                  "a missing bar is an exact result, an overflow (see the table) or a mode that does not apply to the kernel.",
                  f"Bar chart on a log scale of the median relative error of {len(kernels)} kernels in {len(configs)} "
                  "configurations.")


def drift_summary_section(report) -> Section:
    """The plain-language summary of one drift report.

    Args:
        report: the drift document.
    Returns:
        The lead Section.
    """
    rows = report["rows"]
    backends = sorted({r["backend"] for r in rows if not r["emulated"]})
    dtypes = list(dict.fromkeys(r["dtype"] for r in rows if not r["emulated"]))
    emulated = sorted({r["mode"] for r in rows if r["emulated"]})
    kernels = list(dict.fromkeys(r["kernel"] for r in rows))
    fp32 = [r for r in rows if not r["emulated"] and r["dtype"] == "fp32" and r["max_rel_err"] is not None]
    paras = [f"Measured: {len(kernels)} kernels of the fingerprint and comparison pipeline, on real weights, on "
             f"{', '.join(backends)} in {', '.join(dtypes)}" + (f", with {', '.join(emulated)} emulated on the CPU" if emulated
                                                                 else "") + ", each against a float64 run on the CPU."]
    if fp32:
        worst = max(fp32, key=lambda r: r["max_rel_err"])
        paras.append(f"In fp32 the largest relative error is {worst['max_rel_err']:.2g} ({worst['kernel']}).")
    verdicts = report.get("verdicts") or []
    if verdicts:
        flipped = [v for v in verdicts if not v["stable"]]
        margins = [v["margin_to_drift"] for v in verdicts if v["margin_to_drift"] and not v.get("drift_at_floor")]
        if flipped:
            paras.append(f"Result: {len(flipped)} of {len(verdicts)} verdicts CHANGE under reduced precision: "
                         + "; ".join(f"{' vs '.join(v['pair'])} in {', '.join(v['flipped_in'])}" for v in flipped) + ".")
        else:
            paras.append(f"Result: all {len(verdicts)} verdicts between the models stay the same in every configuration."
                         + (f" The closest one would need {min(margins):,.0f} times the drift measured here to move."
                            if margins else ""))
        paras.append("What it means: rounding on this machine, in the precisions tested, does not decide the verdicts; "
                     "another party re-running the comparison on similar hardware should reach the same ones."
                     if not flipped else
                     "What it means: the changed verdicts depend on the precision they were computed in; trust them only "
                     "from a float32 or float64 run.")
    paras.append("What it does not mean: it says nothing about whether the models share lineage (that is the comparison "
                 "report's job), nor about hardware that was not measured; CPU-emulated modes approximate an accelerator's "
                 "rounding, they do not reproduce it.")
    return Section("Summary", "\n\n".join(paras), lead=True)


def drift_sections(report, full_table: bool = True) -> list[Section]:
    """The kernel and verdict sections of a drift report (without its summary).

    Args:
        report: the drift document.
        full_table: fold every configuration's row under the per-kernel summary.
    Returns:
        Sections in reading order.
    """
    headers, rows = kernel_summary(report)
    errors = Section("Drift: kernel error against the float64 golden run",
                     "Each kernel's largest relative error over every configuration of each dtype. Relative errors exclude "
                     "the small-value domain (|golden| below 1e-3 of the tensor's largest value), which is judged by absolute "
                     "error; 'overflow' marks an output with NaN or Inf.", headers, rows, [_error_figure(report)],
                     folded=_full_table(report) if full_table else None)
    vrows = [[" vs ".join(v["pair"]), v["verdict"], "yes" if v["stable"] else "FLIPPED: " + ", ".join(v["flipped_in"]),
              "n/a" if v["margin_to_drift"] is None else ("no measurable drift" if v.get("drift_at_floor") else
                                                          _times(v["margin_to_drift"])),
              v["max_effect_drift"], v["max_log10_p_drift"]]
             for v in report["verdicts"]]
    verdicts = Section("Drift: effect on verdicts",
                       "Each pair fingerprinted and compared in float64 and in every configuration above (reordered "
                       "accumulation is emulated at kernel level only). Margin / drift: how far the deciding statistic is "
                       "from its threshold, divided by the largest change any configuration caused; above 1, no "
                       "configuration measured could move the verdict.",
                       ["pair", "verdict", "stable", "margin / drift", "max effect drift", "max log10 p drift"], vrows)
    return [errors, verdicts]


# ---- drift compare ---------------------------------------------------------------------------

def _short_names(names: list[str]) -> dict[str, str]:
    """File names without their folders, unless two reports share one."""
    base = {n: Path(n).name for n in names}
    return base if len(set(base.values())) == len(base) else {n: n for n in names}


def merged_rows(result) -> list[dict]:
    """drift compare's rows, with the deterministic-algorithms on and off rows of one kernel merged when
    they measured the same thing, and labelled when they differ.

    Args:
        result: the drift-compare document.
    Returns:
        Rows as in the document, each with a "det" label ("off", "on", or "off and on (same result)" when merged).
    """
    groups: dict[tuple, list] = {}
    for r in result["rows"]:
        key = (r["report"], r["kernel"], r["dtype"], r["mode"], r["reference_mode"], r["backend"])
        groups.setdefault(key, []).append(r)
    out = []
    for rows in groups.values():
        same = len({(r["max_rel_err"], r["reference_max_rel_err"], r["ratio"], r["status"]) for r in rows}) == 1
        if same:
            det = " and ".join(DET_WORDS[r["deterministic_algorithms"]] for r in rows)
            out.append({**rows[0], "det": det + (" (same result)" if len(rows) > 1 else "")})
        else:
            out += [{**r, "det": DET_WORDS[r["deterministic_algorithms"]]} for r in rows]
    return out


def _ratio_figure(result, rows, short) -> Figure:
    from matplotlib.lines import Line2D  # matplotlib is imported only when a report is drawn
    from matplotlib.ticker import NullFormatter
    kernels = list(dict.fromkeys(r["kernel"] for r in rows))
    series = list(dict.fromkeys((r["report"], r["dtype"], r["mode"], r["det"]) for r in rows))
    values = [r["ratio"] for r in rows if r["ratio"]]
    hi = max([4.0] + [v * 1.5 for v in values])
    lo = min([0.25] + [v / 1.5 for v in values])
    fig, ax = new_figure(9, 0.45 * len(kernels) + 1.6)
    start = lo
    for limit, name, colour in BANDS:
        ax.axvspan(start, min(limit, hi), color=colour, zorder=0)
        ax.text(np.sqrt(start * min(limit, hi)), 1.01, name, ha="center", va="bottom", fontsize=8,
                transform=ax.get_xaxis_transform())
        start = limit
    markers = "os^Dv<>P"
    offsets = np.linspace(-0.25, 0.25, len(series)) if len(series) > 1 else [0.0]
    handles = []
    for (rep, dtype, mode, det), off, m in zip(series, offsets, markers * len(series)):
        pts = [(r["ratio"] if r["ratio"] is not None else hi, kernels.index(r["kernel"]) + off, r["status"])
               for r in rows if (r["report"], r["dtype"], r["mode"], r["det"]) == (rep, dtype, mode, det)]
        x, y, status = zip(*pts)
        ax.scatter(x, y, marker=m, c=[STATUS_COLOURS[s] for s in status], edgecolors="k", linewidths=0.5, zorder=3)
        # the legend names the series by shape; the colour is the status, read against the bands
        handles.append(Line2D([], [], ls="", marker=m, mfc="white", mec="k",
                              label=f"{short[rep]}: {dtype}/{mode}, deterministic algorithms {det}"))
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ticks = [t for t in (0.125, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128) if lo <= t <= hi]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(-0.6, len(kernels) - 0.1)
    ax.set_yticks(range(len(kernels)), kernels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"error ratio against the reference {short[result['reference']]} (max relative error, this / reference)",
                  fontsize=9)
    ax.set_title("Kernel error relative to the reference report", fontsize=10, pad=18)
    ax.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False)
    return Figure("drift_ratios", figure_png(fig),
                  "Each kernel's largest error against the shared float64 golden run, divided by the same kernel's error "
                  "in the reference report: at most 1 passes (green), 1 to 2 warns (amber), above 2 fails (red). Errors "
                  "below one unit of the dtype's precision count as equal; an overflow on one side only is drawn at the "
                  "right edge.",
                  f"Dot plot of error ratios for {len(kernels)} kernels on a log scale, with pass, warn and fail bands.")


def comparison_summary_section(result, short, shown: int) -> Section:
    """The plain-language summary of a drift comparison: what was compared, the result, what it means
    and does not mean.

    Args:
        result: the drift-compare document.
        short: report name -> the short name shown.
        shown: how many rows the kernel table shows (after merging).
    Returns:
        The lead Section.
    """
    others = [n for n in result["reports"] if n != result["reference"]]
    agree = all(v["agree"] for v in result["verdicts"])
    c = result["counts"]
    meaning = {
        "pass": "on every kernel compared, the other machine's rounding error is no larger than the reference's, and "
                "every verdict is the same.",
        "warn": "every verdict is the same, but some kernels round up to twice as much as on the reference: listed as "
                "warn below.",
        "fail": "at least one kernel rounds more than twice as much as on the reference, or a verdict differs, or no "
                "kernel could be compared: see the rows marked fail and the verdict table.",
    }
    paras = [f"Compared: drift report {', '.join(short[n] for n in others)} against the reference {short[result['reference']]} "
             f"({result['reference_backend']}), kernel by kernel, each measured against the same float64 golden run.",
             f"Result: {result['status']}. Of {len(result['rows'])} kernel measurements, {c.get('pass', 0)} pass, "
             f"{c.get('warn', 0)} warn and {c.get('fail', 0)} fail"
             + (f" (shown as {shown} rows below: where deterministic algorithms off and on gave the same "
                "numbers, they share one)" if shown < len(result["rows"]) else "")
             + f"; {len(result['verdicts'])} verdicts compared, " + ("all agree." if agree else "SOME DISAGREE."),
             f"What it means: {meaning.get(result['status'], result['status'])}",
             "What it does not mean: a pass does not claim bit-identical results (errors below one unit of the dtype's "
             "precision count as equal), and says nothing about kernels, dtypes or modes missing from either report."]
    return Section("Summary", "\n\n".join(paras), lead=True)


def comparison_sections(result) -> list[Section]:
    """Every section of a drift-compare report: summary, per-kernel table with its plot, verdict agreement.

    Args:
        result: the drift-compare document.
    Returns:
        Sections in reading order.
    """
    short = _short_names(result["reports"])
    rows = merged_rows(result)
    several = len(result["reports"]) > 2
    headers = (["report"] if several else []) + ["kernel", "dtype", "mode", "deterministic algorithms",
                                                   "max rel err", "reference", "ratio", "status"]
    table = [([short[r["report"]]] if several else []) +
             [r["kernel"], r["dtype"], r["mode"] if r["mode"] == r["reference_mode"] else f"{r['mode']} vs {r['reference_mode']}",
              r["det"], _fmt(r["max_rel_err"]), _fmt(r["reference_max_rel_err"]),
              "overflow" if r["ratio"] is None else r["ratio"], r["status"]] for r in rows]
    text = (f"Backend {rows[0]['backend']} against the reference's {rows[0]['reference_backend']}. " if rows else "") + \
           ("Each configuration is measured with deterministic algorithms off and on; where both gave the same numbers "
            "they share a row.")
    figures = [_ratio_figure(result, rows, short)] if rows else []
    vrows = [([short[v["report"]]] if several else []) + [" vs ".join(v["pair"]), v["reference_verdict"], v["verdict"],
                                                           "yes" if v["agree"] else "NO"] for v in result["verdicts"]]
    return [comparison_summary_section(result, short, len(rows)),
            Section("Kernel error against the reference", text, headers, table, figures),
            Section("Verdict agreement", "Every verdict, in every configuration of every report, must be the same.",
                    (["report"] if several else []) + ["pair", "reference verdict", "verdict", "agree"], vrows)]


def write_drift_report(directory: Path, report) -> None:
    """report.md, report.html and figures/ for one drift report.

    Args:
        directory: where to write.
        report: the drift document.
    """
    write_report(Path(directory), "provenance drift report", [drift_summary_section(report)] + drift_sections(report))


def write_drift_comparison(directory: Path, result) -> None:
    """report.md, report.html and figures/ for a comparison of drift reports.

    Args:
        directory: where to write.
        result: the drift-compare document.
    """
    write_report(Path(directory), "provenance drift comparison", comparison_sections(result))
