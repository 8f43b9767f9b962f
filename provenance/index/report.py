"""The family-tree report: tree.json, tree.md and a picture (tree.png), written atomically."""
from __future__ import annotations

import io
from pathlib import Path

from ..atomic import write_bytes, write_json, write_text


def _layout(doc) -> dict[str, tuple[float, float]]:
    """Roots on the top row, each child one row below its attachment, siblings side by side."""
    children: dict[str, list[str]] = {}
    attached = set()
    for e in doc["edges"]:
        children.setdefault(e["a"], []).append(e["b"])
        attached.add(e["b"])
    names = [n["name"] for n in doc["nodes"]]
    pos, column = {}, [0]

    def place(name, depth):
        kids = sorted(children.get(name, []))
        start = column[0]
        for kid in kids:
            place(kid, depth + 1)
        if not kids:
            column[0] += 1
        pos[name] = ((start + column[0] - 1) / 2 if kids else start, -depth)

    for name in names:
        if name not in attached:
            place(name, 0)
    return pos


def tree_figure(doc) -> bytes:
    """PNG bytes of the forest: solid arrows where structure gives the direction, plain lines otherwise.

    Args:
        doc: the index_tree document.
    Returns:
        The PNG file's bytes.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    pos = _layout(doc)
    roles = {n["name"]: n["role"] for n in doc["nodes"]}
    width = max(6.0, 0.55 * (max((x for x, _ in pos.values()), default=0) + 1))
    depth = max((-y for _, y in pos.values()), default=0)
    fig, ax = plt.subplots(figsize=(min(width, 60), 2.2 + 1.6 * depth))
    for e in doc["edges"]:
        (xa, ya), (xb, yb) = pos[e["a"]], pos[e["b"]]
        if e["parent"] is not None:
            src, dst = (pos[e["parent"]], pos[e["b"] if e["parent"] == e["a"] else e["a"]])
            ax.annotate("", xy=dst, xytext=src, arrowprops={"arrowstyle": "-|>", "color": "tab:red", "lw": 1.2,
                                                             "shrinkA": 8, "shrinkB": 8})
        else:
            ax.plot([xa, xb], [ya, yb], color="0.5", lw=1.0, zorder=1)
    parents = {e["a"] for e in doc["edges"]}
    for name, (x, y) in pos.items():
        ax.scatter([x], [y], s=60, zorder=2, color="tab:blue" if roles.get(name) == "base" else "tab:gray")
        if name in parents:  # above the node, clear of the edges leaving it
            ax.text(x, y + 0.12, name, ha="center", va="bottom", fontsize=7)
        else:
            ax.text(x, y - 0.12, name, rotation=60, ha="right", va="top", fontsize=7)
    ax.set_title(f"lineage forest: {len(doc['nodes'])} models, {len(doc['edges'])} edges "
                 "(blue: declared base; red arrow: structural direction parent -> child)", fontsize=9)
    ax.axis("off")
    ax.set_ylim(-depth - 1.6, 0.7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def tree_markdown(doc) -> str:
    """The forest as Markdown: what was compared, and one table row per edge.

    Args:
        doc: the index_tree document.
    Returns:
        tree.md's text (it shows tree.png).
    """
    lines = [f"# Lineage forest ({len(doc['nodes'])} models)", "",
             f"{doc['compared']} pairs compared ({doc['pairs_rule']}); {doc['derived_pairs']} derived after Holm's "
             f"correction over the compared pairs; {len(doc['edges'])} edges in the forest.", "",
             "Attachment order: " + "; then ".join(doc["attach_order"]) + ".", "", "![forest](tree.png)", "",
             "| relative | model | direction | strength | corrected p | attached by |", "|---|---|---|---|---|---|"]
    for e in doc["edges"]:
        arrow = f"{e['parent']} is the parent" if e["parent"] else "undetermined"
        p = "n/a" if e["p_value_corrected"] is None else f"{e['p_value_corrected']:.2g}"
        lines.append(f"| {e['a']} | {e['b']} | {arrow} | {e['strength']:.3f} | {p} | {e['attached_by']} |")
    return "\n".join(lines) + "\n"


def write_tree_report(directory: Path, doc: dict) -> None:
    """tree.json, tree.png and tree.md, each written atomically.

    Args:
        directory: where to write.
        doc: the index_tree document.
    """
    directory = Path(directory)
    write_json(directory / "tree.json", doc)
    write_bytes(directory / "tree.png", tree_figure(doc))
    write_text(directory / "tree.md", tree_markdown(doc))
