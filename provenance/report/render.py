"""Reports for people: Markdown and self-contained HTML from one list of sections, with plots.

A section holds a paragraph or more of text, an optional list of terms and their explanations,
an optional table, an optional full table folded away (a <details> element in both formats), and
figures. A cell may be a Link, and text may hold [words](target); a target names the page's own
format with {ext} ("comparisons/x/report.{ext}"), so Markdown links to Markdown and HTML to HTML.
"""
from __future__ import annotations

import base64
import html
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import write_bytes, write_text

# width the HTML page is laid out at; figures are drawn for it (inches at the saved dpi)
PAGE_WIDTH_PX = 1000
DPI = 110


@dataclass
class Figure:
    """A plot: PNG bytes, written under figures/ and shown with its caption (alt text for readers who cannot see it)."""

    name: str            # file stem under figures/
    png: bytes
    caption: str         # shown under the figure
    alt: str = ""        # what the image shows, for readers who cannot see it; the caption when empty


@dataclass(frozen=True)
class Link:
    """A link to another report of the bundle; the target's "{ext}" becomes md or html."""

    text: str
    target: str          # relative path; "{ext}" becomes md or html


@dataclass
class Table:
    """A table shown folded (<details>) under a section's main table."""

    headers: list[str]
    rows: list[list]
    summary: str = ""    # the <details> line when the table is folded


@dataclass
class Section:
    """One section of a report: title, paragraphs, an optional table, figures, a folded table and a term list."""

    title: str
    text: str = ""                     # paragraphs separated by a blank line
    headers: list[str] = field(default_factory=list)
    rows: list[list] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    folded: Table | None = None        # a long table, shown folded after the main one
    lead: bool = False                 # the plain-language summary: set apart at the top
    items: list[tuple[str, str]] = field(default_factory=list)  # 'term: explanation' list after the text


def figure_png(fig) -> bytes:
    """A matplotlib figure as PNG bytes (the figure is closed).

    Args:
        fig: the matplotlib Figure.
    Returns:
        The PNG file's bytes.
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    import matplotlib.pyplot as plt
    plt.close(fig)
    return buf.getvalue()


def new_figure(width=7.0, height=3.6, **kwargs):
    """A figure and its axes on the non-interactive backend.

    Args:
        width, height: inches.
        **kwargs: passed to plt.subplots (nrows, ncols, ...).
    Returns:
        (figure, axes), as plt.subplots returns them.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt.subplots(figsize=(width, height), **kwargs)


def format_p(p) -> str:
    """A p-value as a reader takes it in: '< 1e-12' below what a fitted tail can mean, else 2 digits.

    Args:
        p: the p-value, or None.
    Returns:
        The text ("n/a" for None).
    """
    if p is None:
        return "n/a"
    if p < 1e-12:
        return "< 1e-12"
    if p < 1e-3:
        return f"{p:.1e}"
    return f"{p:.2g}"


def _cell(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}"
    if value is None:
        return "n/a"
    return str(value)


def _md_escape(text: str) -> str:
    """Text from inputs (labels, paths, token strings) inert in Markdown: no raw HTML (Markdown passes
    <script> and <img> through to the page), no link, image or code syntax, no table cell break, one line."""
    text = re.sub(r"<(?=[A-Za-z/!?])", "&lt;", str(text))  # a tag can start only so ("p < 1e-12" stays)
    return re.sub(r"([\\`\[\]|])", r"\\\1", text).replace("\n", " ").replace("\r", " ")


def _md_cell(value) -> str:
    if isinstance(value, Link):
        return f"[{_md_escape(value.text)}]({value.target.replace('{ext}', 'md')})"
    return _md_escape(_cell(value))


def _html_cell(value) -> str:
    if isinstance(value, Link):
        return f"<a href='{html.escape(value.target.replace('{ext}', 'html'))}'>{html.escape(value.text)}</a>"
    return html.escape(_cell(value))


def _md_links(text: str) -> str:
    """Prose with the reports' own relative links kept as links and everything else escaped (no raw HTML,
    no link to a scheme or an absolute path)."""
    out, pos = [], 0
    for m in re.finditer(r"\[([^\]\n]*)\]\(([^)\s]*)\)", text):
        if not re.fullmatch(SAFE_TARGET, m.group(2)):
            continue
        out.append(_md_escape(text[pos:m.start()]))
        out.append(f"[{_md_escape(m.group(1))}]({m.group(2).replace('{ext}', 'md')})")
        pos = m.end()
    out.append(_md_escape(text[pos:]))
    return "".join(out)


def _md_table(headers, rows) -> list[str]:
    out = ["| " + " | ".join(_md_escape(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return out + [""]


def to_markdown(title: str, sections: list[Section]) -> str:
    """The report as Markdown, figures linked from figures/.

    Args:
        title: the report's title.
        sections: the sections in order.
    Returns:
        report.md's text.
    """
    out = [f"# {_md_escape(title)}", ""]
    for s in sections:
        out += [f"## {_md_escape(s.title)}", ""]
        if s.text:
            out += [_md_links(s.text), ""]
        for term, text in s.items:
            out += [f"- **{_md_escape(term)}**: {_md_links(text)}"]
        if s.items:
            out.append("")
        if s.headers:
            out += _md_table(s.headers, s.rows)
        if s.folded:
            out += ["<details>", f"<summary>{html.escape(s.folded.summary or 'full table')}</summary>", ""]
            out += _md_table(s.folded.headers, s.folded.rows)
            out += ["</details>", ""]
        for f in s.figures:
            out += [f"![{_md_escape(f.alt or f.caption)}](figures/{f.name}.png)", "", f"*{_md_escape(f.caption)}*", ""]
    return "\n".join(out)


# a link target the reports write themselves: a relative path (up to a bundle's root at most), no scheme
SAFE_TARGET = r"(?:\.\./)*(?:[A-Za-z0-9_][A-Za-z0-9._-]*/)*[A-Za-z0-9_][A-Za-z0-9._-]*(?:\.\{ext\})?"


def _html_text(text: str) -> str:
    """Escaped text in which [words](relative/target.{ext}) become links; anything else, such as a
    hostile label spelling a javascript: link, stays text."""
    out, pos = [], 0
    for m in re.finditer(r"\[([^\]]+)\]\((" + SAFE_TARGET + r")\)", text):
        out.append(html.escape(text[pos:m.start()]))
        out.append(f"<a href='{html.escape(m.group(2).replace('{ext}', 'html'))}'>{html.escape(m.group(1))}</a>")
        pos = m.end()
    out.append(html.escape(text[pos:]))
    return "".join(out)


def _html_table(headers, rows) -> list[str]:
    out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in headers) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{_html_cell(c)}</td>" for c in row) + "</tr>" for row in rows]
    return out + ["</table>"]


STYLE = ("body{font-family:sans-serif;max-width:%dpx;margin:2em auto;padding:0 1em;line-height:1.45}"
         "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:90%%}"
         "th{background:#f3f3f3}td:first-child{white-space:nowrap}img{max-width:100%%}figure{margin:1.5em 0}figcaption{font-size:90%%;color:#444}"
         ".lead{background:#f5f8ff;border-left:4px solid #3a6ee8;padding:.2em 1.2em;margin:1em 0}"
         "details{margin:1em 0}summary{cursor:pointer;color:#1a4fc4}" % PAGE_WIDTH_PX)


def to_html(title: str, sections: list[Section]) -> str:
    """The report as one self-contained HTML page (figures inlined), escaped throughout.

    Args:
        title: the report's title.
        sections: the sections in order.
    Returns:
        report.html's text.
    """
    e = html.escape
    out = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{e(title)}</title>",
           f"<style>{STYLE}</style></head><body>", f"<h1>{e(title)}</h1>"]
    for s in sections:
        out.append("<section class='lead'>" if s.lead else "<section>")
        out.append(f"<h2>{e(s.title)}</h2>")
        if s.text:
            out += [f"<p>{_html_text(p)}</p>" for p in s.text.split("\n\n")]
        if s.items:
            out.append("<ul>" + "".join(f"<li><b>{e(t)}</b>: {_html_text(x)}</li>" for t, x in s.items) + "</ul>")
        if s.headers:
            out += _html_table(s.headers, s.rows)
        if s.folded:
            out.append(f"<details><summary>{e(s.folded.summary or 'full table')}</summary>")
            out += _html_table(s.folded.headers, s.folded.rows)
            out.append("</details>")
        for f in s.figures:
            data = base64.b64encode(f.png).decode()
            out.append(f"<figure><img alt='{e(f.alt or f.caption)}' src='data:image/png;base64,{data}'>"
                       f"<figcaption>{e(f.caption)}</figcaption></figure>")
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out)


def write_report(directory: Path, title: str, sections: list[Section], stem: str = "report") -> None:
    """report.md with figures/*.png beside it, and a self-contained report.html; each written atomically.

    Args:
        directory: where the report goes (created if needed).
        title: the page's heading.
        sections: the content, in order.
        stem: file name of both documents, without extension.
    """
    directory = Path(directory)
    for s in sections:
        for f in s.figures:
            write_bytes(directory / "figures" / f"{f.name}.png", f.png)
    write_text(directory / f"{stem}.md", to_markdown(title, sections))
    write_text(directory / f"{stem}.html", to_html(title, sections))
