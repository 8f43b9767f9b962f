"""The comparison report for people: a plain summary, every signal with its null, and plots.

Generic over the signals in the result: a signal with null values gets its own figure (its
per-layer-pair matrix, when the result has one, and its null histogram with the observed
values and the effect margin), so a new signal needs no change here.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..fingerprint.record import SIGMA_ROLES
from .render import Figure, Section, Table, figure_png, format_p, new_figure, write_report
from .wording import deciding_signal, null_size, p_value_note, p_with_null, verdict_words

# signal name -> the key of its matrix in result["matrices"] when it is not the signal's own name
MATRIX_KEYS = {"neuron_match": "mlp", "dense_moe_match": "mlp"}
# parent side -> words; None: the weights do not tell
DIRECTION_WORDS = {"a": "A looks like the parent, B the derivative", "b": "B looks like the parent, A the derivative",
                   None: "the weights do not tell which model came first"}


def _calibrated(result) -> list[dict]:
    """Signals with a null to be judged against: the ones the figures and the per-layer table show."""
    return [s for s in result["signals"] if s.get("null_values") and s.get("observed") is not None]


def _matrix(result, name):
    matrices = result.get("matrices") or {}
    m = matrices.get(name)
    if m is None:
        m = matrices.get(MATRIX_KEYS.get(name, ""))
    if m is None:
        return None
    return np.array([[np.nan if v is None else v for v in row] for row in m], dtype=float)


def _margin(signal) -> float | None:
    """Where the median mapped value must reach for the effect to count: null median + min_effect."""
    if signal.get("min_effect") is None or not signal.get("null_values"):
        return None
    return float(np.median(signal["null_values"])) + signal["min_effect"]


def _heatmap(ax, fig, arr, layer_map, name):
    finite = arr[np.isfinite(arr)]
    lo, hi = (0.0, 1.0) if finite.size == 0 or (finite.min() >= 0 and finite.max() <= 1) else (finite.min(), finite.max())
    im = ax.imshow(arr, vmin=lo, vmax=hi, cmap="viridis", aspect="auto")
    step = max(1, max(arr.shape) // 12)  # integer layer ticks, thinned for deep models
    ax.set_xticks(range(0, arr.shape[1], step))
    ax.set_yticks(range(0, arr.shape[0], step))
    if layer_map:
        ii, jj = zip(*layer_map)
        ax.scatter(jj, ii, s=min(120, 2400 / max(arr.shape)), marker="s", facecolors="none", edgecolors="red",
                   linewidths=1.5 if max(arr.shape) <= 16 else 0.8, label="layer map (pairs tested)")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=8, frameon=False)
    ax.set_title(f"{name}: every layer pair", fontsize=10)
    ax.set_xlabel("layer of B", fontsize=9)
    ax.set_ylabel("layer of A", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, label="similarity")


def _null_hist(ax, signal):
    from matplotlib.ticker import MaxNLocator  # matplotlib is imported only when a report is drawn
    null, observed = np.asarray(signal["null_values"], float), np.asarray(signal["observed"], float)
    name = signal["name"]
    ax.hist(null, bins=min(30, max(5, len(null) // 2)), color="0.65",
            label=f"null: {len(null)} non-corresponding layer pairs")
    med = float(np.median(null))
    ax.axvline(med, color="0.25", ls=":", lw=1.2, label=f"null median {med:.2f}")
    margin = _margin(signal)
    if margin is not None:
        ax.axvline(margin, color="C1", ls="--", lw=1.5,
                   label=f"margin: null median + {signal['min_effect']:g} = {margin:.2f}")
    for k, v in enumerate(observed):
        ax.axvline(v, color="C3", lw=1.4, alpha=0.85, label=f"observed: {len(observed)} mapped layers" if k == 0 else None)
    if observed.size:  # the rule compares the median mapped value with the margin: mark it above the axes
        ax.plot([np.median(observed)], [1.0], marker="v", color="C3", ms=9, clip_on=False, ls="",
                transform=ax.get_xaxis_transform(), label=f"observed median {np.median(observed):.2f}")
    lo = min([*null, *observed, margin if margin is not None else med])
    hi = max([*null, *observed, margin if margin is not None else med])
    pad = 0.05 * (hi - lo or 1.0)
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_title(f"{name}: mapped layers against the null", fontsize=10, pad=12)
    ax.set_xlabel(f"{name} of a layer pair", fontsize=9)
    ax.set_ylabel("number of layer pairs", fontsize=9)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=8, frameon=False, ncol=2)


def _signal_figure(result, signal) -> Figure:
    arr = _matrix(result, signal["name"])
    fig, axes = new_figure(10 if arr is not None else 6, 4.2, ncols=2 if arr is not None else 1,
                           gridspec_kw={"wspace": 0.35} if arr is not None else None)
    axes = np.atleast_1d(axes)
    if arr is not None:
        _heatmap(axes[0], fig, arr, result.get("layer_map") or [], signal["name"])
    _null_hist(axes[-1], signal)
    margin = _margin(signal)
    observed = signal["observed"]
    past = "" if margin is None else f" {sum(v >= margin for v in observed)} of {len(observed)} mapped layers lie past the margin."
    caption = (f"{signal['name']}: " + ("left, the similarity of every layer of A with every layer of B, red squares on "
                                        "the pairs the layer map tests; right, " if arr is not None else "")
               + "the values of the pairs that do not correspond (grey, the null) against the mapped pairs (red lines); "
               "the rule compares their median (red triangle) with the margin (orange dashes)."
               + past + f" p-value {p_with_null(signal.get('p_value'), null_size(signal))}.")
    alt = (f"{signal['name']}: null of {len(signal['null_values'])} values around {np.median(signal['null_values']):.2f}; "
           f"mapped layers at " + ", ".join(f"{v:.2f}" for v in observed[:12]) + ("..." if len(observed) > 12 else "")
           + ("" if margin is None else f"; margin {margin:.2f}"))
    return Figure(f"signal_{signal['name']}", figure_png(fig), caption, alt)


def _curves(result, fa, fb) -> tuple[dict, dict] | None:
    """Sigma-curves per role for A and B: from the signal's own record, else from the fingerprints."""
    sig = next((s for s in result["signals"] if s["name"] == "sigma_curves"), None)
    if sig and sig.get("curves"):
        return sig["curves"].get("a") or {}, sig["curves"].get("b") or {}
    if fa is None or fb is None:
        return None
    def read(fp):
        return {r: fp.sigma_curve(r).tolist() for r in SIGMA_ROLES}
    return read(fa), read(fb)


def _sigma_figure(curves, la: str, lb: str) -> Figure | None:
    ca, cb = curves
    roles = [r for r in dict.fromkeys([*ca, *cb]) if ca.get(r) or cb.get(r)]
    if not roles:
        return None
    fig, axes = new_figure(10, 2.9, ncols=len(roles), gridspec_kw={"wspace": 0.4})
    axes = np.atleast_1d(axes)
    for ax, role in zip(axes, roles):
        for curve, label, style in ((ca.get(role), f"A: {la}", "-o"), (cb.get(role), f"B: {lb}", "--s")):
            if curve:
                y = [np.nan if v is None else v for v in curve]
                ax.plot(np.linspace(0, 1, len(y)), y, style, ms=3, label=label)
        ax.set_title(f"std of {role}", fontsize=9)
        ax.set_xlabel("relative depth", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("std of the weights", fontsize=8)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=2, fontsize=8, frameon=False)
    return Figure("sigma_curves", figure_png(fig),
                  "Sigma-curves (HonestAGI): per-layer std of each projection. Shown for reference only: unrelated "
                  "models of one shape produce similar curves, and function-preserving rescaling moves them at will.",
                  f"Per-layer standard deviation of {', '.join(roles)} against relative depth, A solid, B dashed.")


def _side(side: dict, name: str) -> str:
    return f"{name} = {side.get('label') or name} ({side.get('family', '?')}, {side.get('layers', '?')} layers)"


def summary_section(result, up: str | None = None) -> Section:
    """The plain-language summary: what was compared, the verdict, what it means and does not mean.

    Args:
        result: the comparison document.
        up: relative target of the report this one belongs to ("../../report.{ext}"), linked at the end.
    Returns:
        The lead Section.
    """
    headline, means, not_means = verdict_words(result["verdict"])
    best = deciding_signal(result)
    paras = [f"Compared: {_side(result['a'], 'A')} and {_side(result['b'], 'B')}, from their weights alone. "
             f"Verdict: {result['verdict']}, {headline}.",
             f"What it means: {means}", f"What it does not mean: {not_means}",
             f"Why: {result['reason']}."]
    if best is not None and best.get("effect") is not None and best.get("observed"):
        med_null = float(np.median(best["null_values"])) if best.get("null_values") else None
        paras.append(
            f"Strongest signal: {best['name']}. On the {len(best['observed'])} corresponding layer pairs its median is "
            f"{np.median(best['observed']):.2f}" + ("" if med_null is None else f", against {med_null:.2f} for the layer "
                                                    "pairs that do not correspond")
            + f": an effect of {best['effect']:.2f}" + ("" if best.get("min_effect") is None else
                                                        f" (a derived verdict needs at least {best['min_effect']:g})")
            + f", p-value {p_with_null(best['p_value'], null_size(best))}.")
    direction = result.get("direction")
    if direction is not None:
        paras.append(f"Which came first: {DIRECTION_WORDS.get(direction.get('parent'), DIRECTION_WORDS[None])}"
                     + (f" ({direction['evidence']})." if direction.get("evidence") else "."))
    anchors = f"Shared anchor tokens: {result.get('shared_anchors', 'n/a')}."
    if result.get("anchor_note"):
        anchors += f" {result['anchor_note']}."
    paras.append(anchors)
    if up:
        paras.append(f"Part of a verification suite: [the suite's report]({up}) has every pair.")
    return Section(f"Summary: {result['verdict']}", "\n\n".join(paras), lead=True)


def _signals_section(result) -> Section:
    rows = []
    for s in result["signals"]:
        effect = "n/a" if s.get("effect") is None else (
            f"{s['effect']:.3f}" + ("" if s.get("min_effect") is None else f" (margin {s['min_effect']:g})"))
        rows.append([s["name"], "n/a" if s.get("statistic") is None else s["statistic"], format_p(s.get("p_value")),
                     "n/a" if null_size(s) is None else null_size(s), effect, "yes" if s.get("used") else "no"])
    text = ("Each signal with its statistic, its p-value, the number of values its null was built from, its effect (median "
            "similarity of the corresponding layer pairs minus the null's median) and whether the verdict used it.")
    items = []
    rule = result.get("decision_rule") or {}
    if rule:
        items.append(("Decision rule", f"derived needs a used signal with p <= {rule.get('alpha_derived', 'n/a')} (after "
                      f"correction for the number of signals) and an effect of at least its margin; independent needs every "
                      f"used p >= {rule.get('alpha_independent', 'n/a')} and at least {rule.get('min_shared_anchors', 'n/a')} "
                      "shared anchor tokens; anything else is inconclusive."))
    best = deciding_signal(result)
    note = p_value_note(null_size(best) if best else next((null_size(s) for s in _calibrated(result)), None))
    if note:
        items.append(("How to read the p-values", note))
    return Section("Signals", text, ["signal", "statistic", "p-value", "null size", "effect", "used"], rows, items=items)


def _signal_notes_section(result) -> Section:
    rows = [[s["name"], s.get("note") or "", s.get("null") or "none"] for s in result["signals"]]
    return Section("What each signal measures", "", ["signal", "what it measures", "its null"], rows)


def _layers_section(result, calibrated, figures) -> Section:
    layer_map = result.get("layer_map") or []
    headers = ["layer of A", "layer of B"] + [h for s in calibrated for h in (s["name"], "p")]
    rows = []
    for k, (i, j) in enumerate(layer_map):
        row = [i, j]
        for s in calibrated:
            obs, per = s.get("observed") or [], s.get("per_layer_p") or []
            row += [obs[k] if k < len(obs) else "n/a", format_p(per[k]) if k < len(per) else "n/a"]
        rows.append(row)
    text = ("Which layer of B each layer of A was matched with, and each calibrated signal's value and per-layer p-value "
            "there. The pairs off this map form the nulls.")
    if len(rows) > 16:
        return Section("Layer map and evidence per signal", text, figures=figures,
                       folded=Table(headers, rows, f"per-layer values ({len(rows)} mapped layers)"))
    return Section("Layer map and evidence per signal", text, headers, rows, figures)


def comparison_sections(result, fa=None, fb=None, up: str | None = None) -> list[Section]:
    """Every section of a comparison report.

    Args:
        result: the document `compare_fingerprints` returns.
        fa, fb: the two fingerprints, read for sigma-curves when the result does not carry them.
        up: relative target of the report this one belongs to, if any.

    Returns:
        Sections in reading order: summary, signals, layer map with one figure per calibrated signal, what each
        signal measures, sigma-curves.
    """
    la, lb = result["a"].get("label") or "A", result["b"].get("label") or "B"
    calibrated = _calibrated(result)
    sections = [summary_section(result, up), _signals_section(result),
                _layers_section(result, calibrated, [_signal_figure(result, s) for s in calibrated]),
                _signal_notes_section(result)]
    curves = _curves(result, fa, fb)
    sigma = _sigma_figure(curves, la, lb) if curves else None
    if sigma is not None:
        sections.append(Section("For reference: sigma-curves",
                                "Not evidence on its own, and never used by the verdict: shown because others publish it.",
                                figures=[sigma]))
    return sections


def write_comparison_report(directory: Path, result, fa=None, fb=None, up: str | None = None) -> None:
    """report.md, report.html and figures/ for one comparison.

    Args:
        directory: where to write.
        result: the comparison document.
        fa, fb: the fingerprints compared (optional; used for sigma-curves the result does not carry).
        up: relative target of the report this one belongs to ("../../report.{ext}" inside a suite bundle).
    """
    write_report(Path(directory), "provenance lineage comparison", comparison_sections(result, fa, fb, up))
