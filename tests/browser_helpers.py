"""What the browser tests share: a uvicorn server for an app, Debian's Chromium driven by
Playwright (nothing is downloaded), the analyst's and the regulator's sign-in, and the regulator's
checks (every plot of the report drawn, the regulator's pages walked, no number anywhere)."""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from pipeline.broker import free_port
from streaming.blocklist.models import Appeal, Detection, Entry, Review

DOCS = Path(__file__).resolve().parents[1] / "docs"
#: an E.164 number as the run writes them
E164 = re.compile(r"\+\d{8,15}")




@contextmanager
def serving(app) -> Iterator[str]:
    """``app`` under uvicorn on 127.0.0.1 and a free port; yields the base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def page():
    """A page of headless Chromium (Debian's), 1366x900."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: make setup installs it (deploy/ensure-tools.sh)"
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=args)
        context = browser.new_context(viewport={"width": 1366, "height": 900})
        yield context.new_page()
        context.close()
        browser.close()


def sign_in(page, base: str, name: str, password: str) -> None:
    """An analyst signs in from the queue's login redirect and lands on the queue."""
    page.goto(f"{base}/queue")
    assert "/login" in page.url
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(f"{base}/queue")


# -- the regulator -----------------------------------------------------------------------------


def run_numbers(engine: sa.Engine) -> set[str]:
    """Every number the database holds: flagged, reviewed, appealed, and the callees and IMEIs of
    the evidence calls (the evidence's string values of 8 to 15 digits)."""
    found: set[str] = set()
    with engine.connect() as conn:
        for col in (Entry.number, Review.number, Detection.number, Appeal.number):
            found.update(conn.scalars(sa.select(col).distinct()))
        for evidence in conn.scalars(sa.select(Detection.evidence)):
            # string values only (a feature's value such as 0.33333333333 is no number)
            found.update(re.findall(r'"(\+?\d{8,15})"', json.dumps(evidence)))
    return {n for n in found if n}


def report_plots(page, report: Path) -> list[str]:
    """Open the report's HTML file (no server) and check that every plot loaded and is drawn at a
    real size; returns each plot's tag and alt text (``IMG pr curve ...``, ``SVG``)."""
    page.goto(report.as_uri())
    plots = page.locator("img, svg")
    seen = []
    for i in range(plots.count()):
        plot = plots.nth(i)
        assert plot.evaluate("e => e.tagName != 'IMG' || (e.complete && e.naturalWidth > 0 && e.naturalHeight > 0)"), i
        box = plot.bounding_box()
        assert box and box["width"] > 100 and box["height"] > 100, i
        seen.append(plot.evaluate("e => (e.tagName + ' ' + (e.getAttribute('alt') || '')).trim()"))
    return seen


def regulator_pages(page, base: str, *, name: str, password: str, first: str, last: str, dossier: str
                    ) -> tuple[dict[str, str], str, list[str]]:
    """A regulator signs in and walks overview -> decisions (on to the first page with an unblock)
    -> that unblock's pseudonym (its history) -> overview -> the dossier whose link reads
    ``dossier``. Returns every page's HTML, the unblocked number's pseudonym and the events of its
    history."""
    pages: dict[str, str] = {}
    page.goto(f"{base}/regulator?from={first}&to={last}")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    page.click("button:has-text('Sign in')")
    page.wait_for_selector("p.verify")
    assert page.locator("p.verify").inner_text().startswith("verify: OK")
    pages["overview"] = page.content()
    page.click("text=Decisions in the period")
    page.wait_for_selector("table.decisions")
    # oldest first, a page at a time: on to the first page with an unblock
    while not page.locator("table.decisions tr", has_text="unblock").count():
        page.click("p.pager >> text=next")
        page.wait_for_selector("table.decisions")
    pages["decisions"] = page.content()
    unblock = page.locator("table.decisions tr", has_text="unblock").first
    pseudonym = unblock.locator("a.pseudonym").inner_text()
    unblock.locator("a.pseudonym").click()
    page.wait_for_selector("table.history")
    pages["history"] = page.content()
    events = page.locator("table.history tr td:nth-child(2)").all_inner_texts()
    page.click("text=Overview")
    page.click(f"a:has-text('{dossier}')")
    page.wait_for_selector("table.targets")
    pages["dossier"] = page.content()
    return pages, pseudonym, events


def assert_no_numbers(seen: dict[str, str], held: set[str]) -> None:
    """No E.164 number at all, and none of ``held`` with or without its ``+``, in any of ``seen``."""
    for where, content in seen.items():
        assert not E164.search(content), (where, E164.search(content))
        leaked = [n for n in held if n.lstrip("+") in content]
        assert not leaked, (where, leaked[:3])

