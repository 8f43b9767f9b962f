"""The claim report for people: verdict, every check with its strength, and the replay against its envelope."""
from __future__ import annotations

from pathlib import Path

from ..report.render import Figure, Section, figure_png, new_figure, write_report

STRENGTH_ORDER = {"strong": 0, "weak": 1, "none": 2}
DRAW_FLOOR = 1e-3


def claim_sections(result: dict, title: str | None = None) -> list[Section]:
    """Report sections for one verified claim.

    Args:
        result: the claim document.
        title: the heading, default "Claim: <label>".
    Returns:
        The checks table (contradictions first, then by strength), and the replay section when a replay ran.
    """
    c = result["claim"]
    head = Section(title or f"Claim: {c['label']}",
                   f"Verdict: **{result['verdict']}**.\n\n{result['statement']}\n\n"
                   f"Claimed: {c['origin']}{' from ' + c['parent'] if c['parent'] else ''}, {c['vendor']} {c['chip']}, "
                   f"{c['framework']}, {c['dtype']}.",
                   ["check", "result", "strength", "detail"],
                   [[k["name"], k["result"], k["strength"], k["detail"]]
                    for k in sorted(result["checks"], key=lambda k: (k["result"] != "contradicts", STRENGTH_ORDER[k["strength"]]))])
    sections = [head]
    replay = next((k for k in result["checks"] if k["name"] == "replay" and "per_tensor" in k.get("data", {})), None)
    if replay:
        sections.append(replay_section(replay["data"], c["label"]))
    return sections


def replay_section(data: dict, label: str) -> Section:
    """The replay's worst tensors and its figure.

    Args:
        data: the replay check's data.
        label: the model's label.
    Returns:
        A report Section.
    """
    worst = sorted(data["per_tensor"].items(), key=lambda kv: -kv[1]["ratio"])[:8]
    return Section(f"Replay of {label}: distance against its envelope",
                   f"{data['steps']} steps replayed on {data['cpu_capability']}; envelope {data['envelope']:.3g} from "
                   f"{', '.join(data['modes'])}; distance {data['distance']:.3g} = {data['ratio']:.3g} envelopes; "
                   f"the segment moved the weights by {data['movement']:.3g}.",
                   ["tensor", "distance", "envelope", "envelopes"],
                   [[n, r["distance"], r["envelope"], r["ratio"]] for n, r in worst],
                   [replay_figure({label: data}, f"replay-{_stem(label)}")])


def _stem(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in text)[:60]


def replay_figure(runs: dict[str, dict], name: str) -> Figure:
    """Per-tensor distance in envelope units for each run, log scale, with the acceptance line.

    Args:
        runs: label -> replay check data.
        name: the figure's file stem.
    Returns:
        The Figure.
    """
    from .replay import SLACK, STRONG
    fig, ax = new_figure(7.5, 3.6)
    for label, data in runs.items():
        # bit-identical tensors (ratio 0) are drawn at the axis floor rather than dropped by the log scale
        ratios = sorted((max(r["ratio"], DRAW_FLOOR) for r in data["per_tensor"].values()), reverse=True)
        ax.plot(range(len(ratios)), ratios, marker=".", lw=1, label=f"{label} (overall {data['ratio']:.3g})")
    ax.axhline(1.0, color="grey", ls=":", lw=1, label="envelope")
    ax.axhline(SLACK, color="red", ls="--", lw=1, label=f"overall acceptance ({SLACK:g} envelopes)")
    ax.axhline(STRONG, color="darkred", ls="-.", lw=1, label=f"per-tensor limit ({STRONG:g})")
    ax.set_yscale("log")
    ax.set_xlabel("tensors, sorted by distance")
    ax.set_ylabel("distance / envelope")
    ax.legend(fontsize=7)
    return Figure(name, figure_png(fig), "Replay distance to the claimed end in units of the calibrated envelope, per tensor "
                  f"(bit-identical tensors drawn at {DRAW_FLOOR:g})")


def write_claim_report(directory: Path, result: dict) -> None:
    """report.md, report.html and figures/ for one verified claim.

    Args:
        directory: where to write.
        result: the claim document.
    """
    write_report(Path(directory), f"Platform claim: {result['claim']['label']}", claim_sections(result))
