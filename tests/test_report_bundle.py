"""The demo's evidence bundle as a reader meets it: Markdown links resolve, every image has alt text,
the plain summary comes first; and, in headless Chromium, every image loads and every link resolves.

The browser tests need Debian's Chromium (`apt-get install chromium`) and the playwright package
(`pip install playwright`), which drives that Chromium and never downloads a browser of its own.
Without either they are skipped, with the reason.
"""
import json
import os
import re
import shutil
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

# a fresh profile, nothing fetched in the background, no sandbox (CI runs as root in a container)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    from provenance.suite import run_demo
    out = tmp_path_factory.mktemp("demo") / "bundle"
    run_demo(out, progress=False)
    return out


def _pages(bundle: Path) -> list[Path]:
    pair = sorted((bundle / "comparisons").iterdir())[0]
    return [bundle / "report.html", pair / "report.html"]


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.links, self.sections = [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a)
        elif tag == "a":
            self.links.append(a.get("href", ""))
        elif tag == "section":
            self.sections.append(a.get("class", ""))


def test_markdown_links_and_images_resolve(bundle):
    for md in [bundle / "report.md", *sorted(bundle.glob("comparisons/*/report.md"))]:
        targets = re.findall(r"\]\(([^)\s]+)\)", md.read_text())
        assert targets, md
        for t in targets:
            assert (md.parent / t).is_file(), f"{md}: link to {t} resolves to nothing"
    suite_links = set(re.findall(r"\]\((comparisons/[^)]+)\)", (bundle / "report.md").read_text()))
    pairs = {f"comparisons/{p.name}/report.md" for p in (bundle / "comparisons").iterdir()}
    assert suite_links == pairs  # every pair's report is linked, and nothing else under comparisons/


def test_html_summary_first_alt_text_and_relative_links(bundle):
    for page in _pages(bundle):
        c = _Collect()
        c.feed(page.read_text())
        assert c.sections[0] == "lead", f"{page}: the plain-language summary is not first"
        assert c.images and all(i.get("alt", "").strip() for i in c.images), f"{page}: an image without alt text"
        for href in c.links:
            assert not urlparse(href).scheme and (page.parent / href).is_file(), f"{page}: link {href} resolves to nothing"
    text = (bundle / "report.html").read_text()
    assert "comparisons/base-s0__base-s1/report.html" in text  # HTML links to HTML, not to Markdown
    assert "2.45e-50" not in text and "(null of " in text


def _chromium() -> str | None:
    return os.environ.get("PROVENANCE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser_page():
    chromium = _chromium()
    if chromium is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium)")
    sync = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    with sync.sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        context = p.chromium.launch_persistent_context(profile, executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            yield context.new_page()
        finally:
            context.close()


def test_every_image_loads_and_every_link_resolves_in_chromium(browser_page, bundle):
    for page in _pages(bundle):
        browser_page.goto(page.as_uri(), wait_until="load")
        images = browser_page.evaluate(
            "Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth}))")
        assert images, f"{page}: no images"
        for img in images:
            assert img["complete"] and img["width"] > 0, f"{page}: image '{img['alt'][:60]}' did not load"
        links = browser_page.evaluate("Array.from(document.links).map(a => a.href)")
        assert links, f"{page}: no links"  # the suite links to each pair, each pair back to the suite
        for href in links:
            url = urlparse(href)
            assert url.scheme == "file" and Path(unquote(url.path)).is_file(), f"{page}: link {href} resolves to nothing"


def test_suite_report_reads_without_a_statistician(bundle):
    import json
    md = (bundle / "report.md").read_text()
    assert md.index("## Summary") < md.index("## Backends")
    header = next(line for line in md.splitlines() if line.startswith("| A | B | verdict"))
    assert "effect" in header and "| reason |" in header and "| p-value |" in header
    assert not re.search(r"\d\.?\d*e-(1[3-9]|[2-9]\d)", md), "a p-value smaller than a fitted tail can mean"
    assert "How to read the p-values" in md
    drift = json.loads((bundle / "drift.json").read_text())
    kernels = {r["kernel"] for r in drift["rows"]}
    visible, folded = md.split("<details>", 1)
    kernel_rows = [line for line in visible.split("## Drift: kernel error", 1)[1].splitlines() if line.startswith("| ")]
    assert len(kernel_rows) == 1 + len(kernels)  # header + one row per kernel
    assert f"every configuration ({len(drift['rows'])} rows" in folded


def test_the_demo_runs_an_honest_claim_and_its_spoofs(bundle):
    pytest.importorskip("transformers")
    suite = json.loads((bundle / "suite.json").read_text())
    claims = suite["claims"]
    assert "honest" in claims and len(claims) >= 4
    assert all(c["verdict"] == c["expected"] for c in claims.values())
    assert claims["honest"]["verdict"] == "consistent"
    assert all(c["verdict"] == "inconsistent" for n, c in claims.items() if n != "honest")
    assert "Platform claims" in (bundle / "report.md").read_text()
