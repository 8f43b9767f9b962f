"""Reports for people: Markdown and self-contained HTML from one list of sections, with plots."""
from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import write_bytes, write_text


@dataclass
class Figure:
    name: str            # file stem under figures/
    png: bytes
    caption: str


@dataclass
class Section:
    title: str
    text: str = ""
    headers: list[str] = field(default_factory=list)
    rows: list[list] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)


def figure_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt
    plt.close(fig)
    return buf.getvalue()


def new_figure(width=7.0, height=3.6):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt.subplots(figsize=(width, height))


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def to_markdown(title: str, sections: list[Section]) -> str:
    out = [f"# {title}", ""]
    for s in sections:
        out += [f"## {s.title}", ""]
        if s.text:
            out += [s.text, ""]
        if s.headers:
            out.append("| " + " | ".join(s.headers) + " |")
            out.append("|" + "---|" * len(s.headers))
            out += ["| " + " | ".join(_cell(c).replace("|", "\\|") for c in row) + " |" for row in s.rows]
            out.append("")
        for f in s.figures:
            out += [f"![{f.caption}](figures/{f.name}.png)", "", f"*{f.caption}*", ""]
    return "\n".join(out)


def to_html(title: str, sections: list[Section]) -> str:
    e = html.escape
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>",
           "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto;padding:0 1em}"
           "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:90%}"
           "th{background:#f3f3f3}img{max-width:100%}</style></head><body>", f"<h1>{e(title)}</h1>"]
    for s in sections:
        out.append(f"<h2>{e(s.title)}</h2>")
        if s.text:
            out += [f"<p>{e(p)}</p>" for p in s.text.split("\n\n")]
        if s.headers:
            out.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in s.headers) + "</tr>")
            out += ["<tr>" + "".join(f"<td>{e(_cell(c))}</td>" for c in row) + "</tr>" for row in s.rows]
            out.append("</table>")
        for f in s.figures:
            data = base64.b64encode(f.png).decode()
            out.append(f"<figure><img alt='{e(f.caption)}' src='data:image/png;base64,{data}'><figcaption>{e(f.caption)}</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out)


def write_report(directory: Path, title: str, sections: list[Section], stem: str = "report") -> None:
    """report.md with figures/*.png beside it, and a self-contained report.html; each written atomically."""
    for s in sections:
        for f in s.figures:
            write_bytes(directory / "figures" / f"{f.name}.png", f.png)
    write_text(directory / f"{stem}.md", to_markdown(title, sections))
    write_text(directory / f"{stem}.html", to_html(title, sections))
