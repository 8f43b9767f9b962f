"""Drift reports for people: error tables, an error plot per dtype and mode, verdict stability."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .render import Figure, Section, figure_png, new_figure, write_report


def _fmt(v):
    return "overflow" if v is None else v


def _error_figure(report) -> Figure:
    fig, ax = new_figure(9, 3.8)
    configs = []
    for r in report["rows"]:
        key = f"{r['backend']}/{r['dtype']}/{r['mode']}" + ("+det" if r["deterministic_algorithms"] else "")
        if key not in configs:
            configs.append(key)
    kernels = list(dict.fromkeys(r["kernel"] for r in report["rows"]))
    width = 0.8 / max(1, len(configs))
    for c, key in enumerate(configs):
        vals = []
        for k in kernels:
            match = [r for r in report["rows"] if r["kernel"] == k and
                     f"{r['backend']}/{r['dtype']}/{r['mode']}" + ("+det" if r["deterministic_algorithms"] else "") == key]
            vals.append(match[0]["median_rel_err"] if match and match[0]["median_rel_err"] else np.nan)
        ax.bar(np.arange(len(kernels)) + c * width, np.maximum(vals, 1e-12), width, label=key)
    ax.set_yscale("log")
    ax.set_xticks(np.arange(len(kernels)) + 0.4 - width / 2, kernels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("median relative error vs float64")
    ax.legend(fontsize=6, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.32))
    return Figure("drift_errors", figure_png(fig), "Median relative error of each kernel against the float64 golden run, "
                  "per backend, dtype and precision mode (emulated modes named cpu-emulated-*).")


def drift_sections(report) -> list[Section]:
    rows = [[r["kernel"], r["backend"], r["dtype"], r["mode"] + ("+det" if r["deterministic_algorithms"] else ""),
             "yes" if r["emulated"] else "no", _fmt(r["max_rel_err"]), _fmt(r["median_rel_err"]), _fmt(r["max_ulp"]),
             _fmt(r["cosine"]), "yes" if r["deterministic"] else "NO",
             "n/a" if r["slice_invariant"] is None else ("yes" if r["slice_invariant"] else "NO"), r["time_ms"]]
            for r in report["rows"]]
    errors = Section("Kernel error against the float64 golden run",
                     "Every kernel of the fingerprint and lineage pipeline, on real weights, per backend, dtype and mode. "
                     "Relative errors exclude the small-value domain (|golden| below 1e-3 of the tensor's largest value), "
                     "which is judged by absolute error. 'overflow' marks an output with NaN or Inf.",
                     ["kernel", "backend", "dtype", "mode", "emulated", "max rel err", "median rel err", "max ulp", "cosine",
                      "bitwise repeatable", "slice invariant", "time (ms)"], rows, [_error_figure(report)])
    vrows = [[" vs ".join(v["pair"]), v["verdict"], "yes" if v["stable"] else "FLIPPED: " + ", ".join(v["flipped_in"]),
              "n/a" if v["margin_to_drift"] is None else ("no measurable drift" if v.get("drift_at_floor") else v["margin_to_drift"]),
              v["max_effect_drift"], v["max_log10_p_drift"]]
             for v in report["verdicts"]]
    verdicts = Section("Effect on verdicts",
                       "Each pair fingerprinted and compared in float64 and in every configuration above (reordered "
                       "accumulation is emulated at kernel level only). Margin-to-drift: the distance of the deciding "
                       "statistic from its threshold divided by the largest change any configuration caused.",
                       ["pair", "verdict", "stable", "margin / drift", "max effect drift", "max log10 p drift"], vrows)
    return [errors, verdicts]


def comparison_sections(result) -> list[Section]:
    fig, ax = new_figure(9, 3.4)
    labels = [f"{r['kernel']}/{r['dtype']}/{r['mode']}" for r in result["rows"]]
    ratios = [r["ratio"] if r["ratio"] is not None else 1e6 for r in result["rows"]]
    colors = ["C2" if r["status"] == "pass" else "C1" if r["status"] == "warn" else "C3" for r in result["rows"]]
    ax.bar(range(len(ratios)), ratios, color=colors)
    ax.axhline(1, color="k", lw=0.8)
    ax.axhline(2, color="C3", lw=0.8, ls="--")
    ax.set_yscale("log")
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=6)
    ax.set_ylabel("error ratio vs reference")
    figure = Figure("drift_ratios", figure_png(fig), "Error of each kernel relative to the reference report "
                    "(<= 1 pass, 1-2 warn, above 2 fail).")
    rows = [[r["report"], r["kernel"], r["dtype"], f"{r['mode']} vs {r['reference_mode']}", f"{r['backend']} vs {r['reference_backend']}",
             _fmt(r["max_rel_err"]), _fmt(r["reference_max_rel_err"]), "overflow" if r["ratio"] is None else r["ratio"], r["status"]]
            for r in result["rows"]]
    vrows = [[v["report"], " vs ".join(v["pair"]), v["reference_verdict"], v["verdict"], "yes" if v["agree"] else "NO"]
             for v in result["verdicts"]]
    return [Section(f"Drift comparison: {result['status']}",
                    f"Reference: {result['reference']} ({result['reference_backend']}). Counts: {result['counts']}.",
                    ["report", "kernel", "dtype", "mode", "backend", "max rel err", "reference", "ratio", "status"], rows, [figure]),
            Section("Verdict agreement", "Every verdict, in every configuration of every report, must be the same.",
                    ["report", "pair", "reference verdict", "verdict", "agree"], vrows)]


def write_drift_report(directory: Path, report) -> None:
    write_report(Path(directory), "provenance drift report", drift_sections(report))


def write_drift_comparison(directory: Path, result) -> None:
    write_report(Path(directory), "provenance drift comparison", comparison_sections(result))
