"""The regulator's report and console pages in headless Chromium (the console's browser set-up),
on a database the store populated as the stream and the console would: every plot of the
report drawn, no number of the run anywhere (HTML, JSON, console pages), and one pseudonym for
one number on every page. The report's screenshot goes to docs/."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from browser_helpers import (  # noqa: F401  (page is a fixture)
    DOCS,
    assert_no_numbers,
    page,
    regulator_pages,
    report_plots,
    run_numbers,
    serving,
)
from regulator_data import regulated
from typer.testing import CliRunner

from console.accounts import add_user
from console.actions import ConsoleStore
from console.app import create_app
from console.settings import ConsoleSettings
from pipeline.cli import app as cli
from pipeline.config import load_settings
from streaming.blocklist.pseudonym import Pseudonymizer

pytestmark = pytest.mark.slow

KEY = "audit-browser-test-key"
PASSWORD = "regulator password 42"


@pytest.fixture
def regulator_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SIMGUARD_AUDIT__PSEUDONYM_KEY", KEY)
    monkeypatch.setenv("SIMGUARD_AUDIT__PSEUDONYM_KEY_ID", "k5")
    config = tmp_path / "config.yaml"
    config.write_text(f"home: {tmp_path / 'home'}\n")
    settings = load_settings(config)
    store = ConsoleStore.open(settings.database_url).configure(
        policy=ConsoleStore.policy, clearance_hours=72, appeal_due_hours=24
    )
    numbers = regulated(store)
    add_user(store.engine, "reg", "regulator", PASSWORD)
    yield config, settings, store, numbers
    store.close()


def test_report_and_regulator_pages_in_the_browser(regulator_run, page, tmp_path: Path) -> None:  # noqa: F811
    config, settings, store, numbers = regulator_run
    out = tmp_path / "audit" / "report.html"
    today = dt.datetime.now(dt.UTC).date().isoformat()
    result = CliRunner().invoke(cli, ["--config", str(config), "audit", "report", "--from", "2026-11-01", "--to",
                                      today, "--out", str(out), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    html, text = out.read_text(), out.with_suffix(".json").read_text()
    data = json.loads(text)

    # the report, from the file with no server: every plot loaded and drawn at a real size
    plots = report_plots(page, out)
    assert len(plots) == 4  # blocks per day, overturn rate, appeal decisions, test metrics
    page.screenshot(path=str(DOCS / "audit_report.png"), full_page=False)

    # the regulator's console pages on the same database and key
    app = create_app(store, ConsoleSettings(), secret_key="r" * 48, operator_tokens={}, audit=settings.audit)
    with serving(app) as base:
        pages, name, history_events = regulator_pages(page, base, name="reg", password=PASSWORD, first="2026-11-01",
                                                      last=today, dossier="simguard-spam-sim v7")
        assert page.locator("table.targets tr", has_text="test FPR <= 0.100%").locator("td.fail").inner_text() == "fail"

    # one pseudonym, one number: the console's link and the report name the overturned block alike
    expected = Pseudonymizer(settings.audit.pseudonym_key, "k5")
    assert name == expected(numbers["blocks"][0]) != expected(numbers["blocks"][1])
    assert name in html and name in pages["overview"] + pages["decisions"]
    assert history_events == [h["action"] for h in data["number_history"][name]]
    assert any(d["number"] == name and d["action"] == "unblock" and d["actor"] == "lan" for d in data["decisions"])

    # no number of the run anywhere the regulator looks
    held = run_numbers(store.engine)
    assert len(held) > 50  # flagged numbers and the evidence's callees
    assert_no_numbers({"report.html": html, "report.json": text, **pages}, held)
