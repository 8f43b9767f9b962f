"""The comparison report for people: verdict, signals with their nulls, and plots."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .render import Figure, Section, figure_png, new_figure, write_report

SIGMA_ROLES = ("attn.q", "attn.k", "attn.v", "attn.o")


def _sigma_figure(fa, fb, la: str, lb: str) -> Figure:
    fig, axes = new_figure(9, 2.6)
    fig.clf()
    axes = fig.subplots(1, 4)
    for ax, role in zip(axes, SIGMA_ROLES):
        for fp, label, style in ((fa, la, "-o"), (fb, lb, "--s")):
            y = [l["sigma"].get(role, np.nan) for l in fp.doc["layers"]]
            ax.plot(np.linspace(0, 1, len(y)), y, style, ms=3, label=label)
        ax.set_title(f"std({role})", fontsize=9)
        ax.set_xlabel("relative depth", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7)
    return Figure("sigma_curves", figure_png(fig), "Sigma-curves (HonestAGI): per-layer std of Q/K/V/O. Weak evidence: "
                  "unrelated models of one shape produce similar curves and rescaling moves them at will.")


def _heatmaps(result) -> Figure:
    fig, _ = new_figure(9.5, 3.6)
    fig.clf()
    axes = fig.subplots(1, 2, gridspec_kw={"wspace": 0.45})
    for ax, key, title in zip(axes, ("attention_cka", "mlp"), ("attention CKA", "MLP neuron match")):
        m = result["matrices"].get(key)
        if m is None:
            ax.set_axis_off()
            continue
        arr = np.array([[np.nan if v is None else v for v in row] for row in m], dtype=float)
        im = ax.imshow(arr, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        step = max(1, max(arr.shape) // 12)  # integer layer ticks, thinned for deep models
        ax.set_xticks(range(0, arr.shape[1], step))
        ax.set_yticks(range(0, arr.shape[0], step))
        for i, j in result["layer_map"]:
            ax.plot(j, i, "r+", ms=8)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("layer of B", fontsize=8)
        ax.set_ylabel("layer of A", fontsize=8)
        fig.colorbar(im, ax=ax, fraction=0.046)
    return Figure("layer_similarity", figure_png(fig), "Per-layer-pair similarity; red crosses mark the layer map. "
                  "Off-map pairs form each signal's null.")


def _null_figure(result, tests) -> Figure:
    fig, _ = new_figure(8, 3.0)
    fig.clf()
    axes = fig.subplots(1, max(1, len(tests)))
    axes = np.atleast_1d(axes)
    for ax, (name, null, observed) in zip(axes, tests):
        if null:
            ax.hist(null, bins=min(30, max(5, len(null) // 2)), color="0.7", label="null: non-corresponding layers")
        for k, v in enumerate(observed):
            ax.axvline(v, color="C3", lw=1.2, label="observed (layer map)" if k == 0 else None)
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7)
    return Figure("null_distributions", figure_png(fig), "Each calibrated signal's null distribution, with the "
                  "observed values on the mapped layers marked.")


def comparison_sections(result, fa, fb) -> list[Section]:
    la, lb = result["a"]["label"] or "A", result["b"]["label"] or "B"
    p = result["p_value"]
    summary = Section(
        f"Verdict: {result['verdict']}",
        f"A = {la} ({result['a']['family']}, {result['a']['layers']} layers), B = {lb} "
        f"({result['b']['family']}, {result['b']['layers']} layers). Combined p-value for derivation: "
        f"{'n/a' if p is None else f'{p:.3g}'}. {result['reason']}. Shared anchor tokens: {result['shared_anchors']}."
        + (f" {result['anchor_note']}." if result["anchor_note"] else "")
        + " A consistent result is evidence, not proof; distillation leaves no trace in weights.")
    rows = [[s["name"], "n/a" if s["statistic"] is None else s["statistic"], "n/a" if s["p_value"] is None else s["p_value"],
             "n/a" if s.get("effect") is None else s["effect"], "yes" if s["used"] else "no", s["null"], s["note"]]
            for s in result["signals"]]
    signals = Section("Signals", "Each signal with its statistic, its null, its p-value and whether the verdict used it.",
                      ["signal", "statistic", "p-value", "effect", "used", "null", "note"], rows)
    tests = [(s["name"], s["null_values"], s["observed"]) for s in result["signals"] if s["p_value"] is not None]
    figures = [_sigma_figure(fa, fb, la, lb), _heatmaps(result)]
    if tests:
        figures.append(_null_figure(result, tests))
    layer_map = Section("Layer map", "Layers of A and the layers of B they correspond to.", ["layer of A", "layer of B"],
                        [list(x) for x in result["layer_map"]], figures)
    return [summary, signals, layer_map]


def write_comparison_report(directory: Path, result, fa, fb) -> None:
    write_report(Path(directory), "provenance lineage comparison", comparison_sections(result, fa, fb))
