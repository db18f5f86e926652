"""The analyst console in a real browser: Debian's Chromium driven by Playwright (nothing is
downloaded), against a console served by uvicorn on a database the store populated as the stream
would. Screenshots of the queue and a flag's page go to docs/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from browser_helpers import DOCS, page, serving, sign_in  # noqa: F401  (page is a fixture)
from console_data import populate
from pydantic import SecretStr

from console.accounts import add_user
from console.actions import ConsoleStore
from console.app import create_app
from console.settings import ConsoleSettings
from streaming.blocklist.service import create_app as create_service
from streaming.blocklist.settings import BlocklistSettings, OperatorSettings

pytestmark = pytest.mark.slow

PASSWORD = "analyst password 42"
OPERATOR_TOKEN = "viettel-care-token-0123456789"


@pytest.fixture
def console(tmp_path: Path) -> Iterator[tuple[str, ConsoleStore, dict]]:
    store = ConsoleStore.open(f"sqlite:///{tmp_path / 'blocklist.db'}")
    numbers = populate(store)
    add_user(store.engine, "lan", "analyst", PASSWORD)
    app = create_app(store, ConsoleSettings(), secret_key="s" * 48, operator_tokens={"viettel": OPERATOR_TOKEN})
    with serving(app) as base:
        yield base, store, numbers
    store.close()


def test_analyst_overturns_the_top_block_in_the_browser(console, page) -> None:  # noqa: F811
    base, store, numbers = console
    sign_in(page, base, "lan", PASSWORD)
    # the count's own pill: "oldest open: 4h 4m" beside it also contains "open: 4" at some hours
    assert page.locator("span.pill.open").inner_text() == "open: 4"
    page.screenshot(path=str(DOCS / "console-queue.png"), full_page=True)
    page.click("nav >> text=Blocks")
    top = page.locator("a.flag").first
    number = top.inner_text()
    assert number == numbers["blocks"][0]  # the highest score
    top.click()
    page.wait_for_selector("h2:has-text('Decisions')")
    reason = page.locator("ul.reasons li", has_text="called 198 distinct numbers in 24h")
    assert reason.is_visible()
    # the value and where it sits among the windows the model version was validated on
    assert reason.locator("b.percentile").inner_text() == "p99"
    assert page.locator("table.calls tr").count() == 25  # header + 24 calls of the evidence
    chart = page.locator("img.chart")
    assert chart.is_visible() and chart.evaluate("img => img.naturalWidth") > 0
    page.screenshot(path=str(DOCS / "console-flag.png"), full_page=True)
    before = store.head_version()
    page.fill("form.decide textarea[name=comment]", "Called the subscriber: a family phone, not a robocaller")
    page.click("button[value=overturn]")
    page.wait_for_selector("text=cleared until")
    # the unblock is a version like any other, which the operator's API hands out
    [unblock] = store.entries_since(before)
    assert (unblock.number, unblock.action, unblock.actor) == (number, "unblock", "lan")
    bl = BlocklistSettings(operators={"viettel": OperatorSettings(api_token=SecretStr(OPERATOR_TOKEN))})
    with serving(create_service(store=store, blocklist=bl)) as api:
        got = httpx.get(
            f"{api}/blocklist", params={"since": before}, headers={"authorization": f"Bearer {OPERATOR_TOKEN}"}
        ).json()
    assert [(e["number"], e["action"], e["version"]) for e in got["entries"]] == [(number, "unblock", unblock.version)]
    history = page.locator("table.history")
    assert history.locator("tr", has_text="overturn").locator("td", has_text="lan").count() == 1
    assert history.locator("td", has_text="Called the subscriber").count() >= 1


def test_an_appeal_filed_through_the_api_is_decided_in_the_browser(console, page) -> None:  # noqa: F811
    base, store, numbers = console
    number = numbers["blocks"][1]
    r = httpx.post(
        f"{base}/api/appeals",
        json={"number": number, "reason": "my shop's line", "request_id": "t-1"},
        headers={"authorization": f"Bearer {OPERATOR_TOKEN}"},
    )
    assert r.status_code == 201
    appeal_id = r.json()["id"]
    sign_in(page, base, "lan", PASSWORD)
    page.click(f"table.appeals a[href='/appeals/{appeal_id}']")
    page.fill("textarea[name=comment]", "a registered shop; overturned")
    page.click("button[value=overturn]")
    page.wait_for_selector("p.status >> text=overturned")
    out = httpx.get(f"{base}/api/appeals/{appeal_id}", headers={"authorization": f"Bearer {OPERATOR_TOKEN}"}).json()
    assert out["status"] == "overturned" and out["unblock_version"] == store.head_version()
    assert not store.is_blocked(number)
