"""The analyst console and the regulator's report on a real stream run's database (the session's
``reference`` run of ``tests/stream_run.py``: simulated CDRs through Kafka, the champions ``simguard
train`` registered, ``run_stream`` deciding blocks), not on one filled through the store by hand.

Each test works on a copy of the run's SQLite file (the e2e tests compare other runs with the
original). The copy also gets the registrations ``simguard train`` recorded in its own database
(dossiers and champion moves): in the demo, training and streaming share one database, here the
stream run has its own. The console publishes under a fresh blocklist topic prefix on the
session's broker, through ``simguard blocklist publish`` (the distribution round an operator
runs, or ``simguard serve``'s loop).

- #15: an analyst signs in, opens the top of the blocks queue (a SIM the run blocked), sees the
  reasons, the evidence CDRs (calls of that SIM in the streamed CDRs) and the chart, and overturns
  with a comment; the unblock reaches the operator's Kafka topic and ``GET /blocklist``, and the
  history names the analyst.
- #16: ``simguard audit report`` of the run opens in Chromium with every plot drawn (the
  versions' PR and ROC curves from the run's MLflow included); no E.164 number of the run (the
  streamed CDRs' callers and callees, every number in the database) appears in the HTML, the
  JSON or the regulator's console pages, and one pseudonym names one number on every page.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa
from browser_helpers import (  # noqa: F401  (page is a fixture)
    assert_no_numbers,
    page,
    regulator_pages,
    report_plots,
    run_numbers,
    serving,
    sign_in,
)
from sqlalchemy.orm import Session

from console.app import create_app
from features.numbering import load_numbering_plan
from pipeline.cli.console import open_console_store
from pipeline.config import PROJECT_ROOT, load_settings
from streaming.blocklist.dossiers import record_champion_move, store_dossier
from streaming.blocklist.models import AuditRecord, ModelDossier
from streaming.blocklist.pseudonym import Pseudonymizer
from streaming.blocklist.service import create_app as create_service

pytestmark = [pytest.mark.spark, pytest.mark.kafka, pytest.mark.slow]

SIMGUARD = str(Path(sys.executable).with_name("simguard"))
ANALYST, ANALYST_PASSWORD = "lan", "analyst password 42"
REGULATOR, REGULATOR_PASSWORD = "reg", "regulator password 42"
TOKEN = "operator-care-token-0123456789"
KEY, KEY_ID = "stream-run-pseudonym-key", "k9"
COMMENT = "Called the subscriber: a shop's line, not a robocaller"


def _simguard(env: dict[str, str], *args: str) -> str:
    out = subprocess.run([SIMGUARD, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def _copy_sqlite(url: str, to: Path) -> str:
    """A consistent copy of a SQLite database (the backup API: WAL content included)."""
    source = sqlite3.connect(url.removeprefix("sqlite:///"))
    target = sqlite3.connect(to)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()
    return f"sqlite:///{to}"


def _add_registrations(training_url: str, run_url: str) -> int:
    """Record into the run's database, in their order, the champion moves and dossiers ``simguard
    train`` recorded into its own (as when both share one database); returns the dossiers added."""
    training, run = sa.create_engine(training_url), sa.create_engine(run_url)
    added = 0
    try:
        with Session(training) as session:
            dossiers = {(d.registered_name, d.version): d for d in session.scalars(sa.select(ModelDossier))}
            for record in session.scalars(sa.select(AuditRecord).order_by(AuditRecord.seq)):
                c = record.content
                if record.kind == "champion_alias":
                    record_champion_move(run, registered_name=c["registered_name"], alias=c["alias"],
                                         version=c["version"], previous=c["previous_version"], actor=record.actor,
                                         at=record.at)
                elif record.kind == "model_registered":
                    d = dossiers[(c["registered_name"], c["version"])]
                    store_dossier(run, dict(d.content), d.markdown, actor=record.actor, at=record.at)
                    added += 1
        return added
    finally:
        training.dispose()
        run.dispose()


@pytest.fixture
def run_copy(world: dict[str, Any], reference: dict[str, Any], tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The reference run's database copied (with the training's registrations) and its blocks in
    force; the run's settings pointed at the copy, with a fresh blocklist topic prefix, no webhook
    (the reference run's receiver is the e2e tests'), an API token per operator and a pseudonym key."""
    entries = reference["store"]["entries"]
    lifted = set(entries.loc[entries["action"] == "unblock", "lifts_entry_id"])
    blocks = entries[(entries["action"] == "block") & ~entries["id"].isin(lifted)]  # in force
    operators = load_numbering_plan().operators
    env = {k: v for k, v in reference["env"].items() if not k.endswith("__webhook_url")}
    url = _copy_sqlite(reference["env"]["SIMGUARD_DATABASE__URL"], tmp_path / "blocklist.db")
    env.update({
        "SIMGUARD_DATABASE__URL": url,
        "SIMGUARD_KAFKA__TOPICS__BLOCKLIST_PREFIX": f"console.blocklist.{uuid.uuid4().hex[:8]}",
        "SIMGUARD_AUDIT__PSEUDONYM_KEY": KEY,
        "SIMGUARD_AUDIT__PSEUDONYM_KEY_ID": KEY_ID,
        **{f"SIMGUARD_BLOCKLIST__OPERATORS__{op}__api_token": f"{TOKEN}-{op}" for op in operators},
    })  # fmt: skip
    dossiers = _add_registrations(world["settings"].database_url, url)
    assert dossiers >= 2, "simguard train recorded no dossier of the two champions"
    settings = load_settings(PROJECT_ROOT / "configs" / "default.yaml", environ=env)
    assert settings.database_url == url
    yield {"env": env, "url": url, "settings": settings, "blocks": blocks}


def _console(settings: Any) -> tuple[Any, Any]:
    """The console as ``simguard console`` builds it, on the run's settings."""
    store = open_console_store(settings)
    tokens = {op: c.api_token.get_secret_value() for op, c in settings.blocklist.operators.items() if c.api_token}
    app = create_app(store, settings.console, secret_key="s" * 48, operator_tokens=tokens, audit=settings.audit)
    return store, app


def _listed(value: Any) -> list[str]:
    return json.loads(value) if isinstance(value, str) else list(value)


def _streamed_cdrs(world: dict[str, Any]) -> pd.DataFrame:
    return pd.concat(pd.read_parquet(p, columns=["a_number", "b_number", "start_time"])
                     for p in sorted((world["replay_dir"] / "cdrs").glob("day=*/*.parquet")))


def _topic_records(bootstrap: str, topic: str) -> list[tuple[str, dict[str, Any]]]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap.split(","), auto_offset_reset="earliest", enable_auto_commit=False,
        group_id=None, consumer_timeout_ms=5000,
    )  # fmt: skip
    try:
        return [(m.key.decode(), json.loads(m.value)) for m in consumer]
    finally:
        consumer.close()


def test_analyst_overturns_the_top_block_of_a_stream_run(
    world: dict[str, Any], reference: dict[str, Any], run_copy: dict[str, Any], kafka_bootstrap: str,
    page, tmp_path: Path,  # noqa: F811
) -> None:
    env, settings, blocks = run_copy["env"], run_copy["settings"], run_copy["blocks"]
    detections = reference["store"]["detections"]
    password = tmp_path / "password"
    password.write_text(ANALYST_PASSWORD + "\n")
    _simguard(env, "users", "add", ANALYST, "--role", "analyst", "--password-file", str(password))
    # the blocks in force, as the queue ranks them: by score, then by version
    ranked = blocks.sort_values(["score", "id"], ascending=[False, True], kind="stable")
    assert len(ranked) >= 20
    store, app = _console(settings)
    try:
        with serving(app) as base:
            sign_in(page, base, ANALYST, ANALYST_PASSWORD)
            page.click("nav >> text=Blocks")
            page.wait_for_selector("table.queue")
            # the top of the blocks queue of the run's highest-scored SIM block's fraud type (a
            # spoofed call presenting an unallocated or Do-Not-Originate number scores 1.0 and
            # may top the whole queue)
            entry = ranked[ranked["scope"] == "all"].iloc[0]
            page.goto(f"{base}/queue?kind=blocks&fraud_type={entry['fraud_type']}")
            page.wait_for_selector("table.queue")
            top = page.locator("a.flag").first
            number = top.inner_text()
            assert (number, entry["decided_by"]) == (entry["number"], "model")
            top.click()
            page.wait_for_selector("h2:has-text('Decisions')")

            # the reasons the run gave: those of one of its detections of this SIM (the page shows
            # the top-scored window of the latest decision), each with its value
            shown = page.locator("ul.reasons li").all_inner_texts()
            given = [_listed(r) for r in detections.loc[detections["number"] == number, "reasons"]]
            assert shown and any(len(r) == len(shown) and all(map(str.startswith, shown, r)) for r in given), (
                shown, given[:3])
            assert page.locator("ul.reasons b.percentile").count() >= 1  # placed among the version's windows
            # the evidence: calls this SIM made in the streamed CDRs
            calls = page.locator("table.calls tr")
            assert calls.count() > 1
            mine = _streamed_cdrs(world)
            callees = set(mine.loc[mine["a_number"] == number, "b_number"])
            shown_callees = page.locator("table.calls tr td:nth-child(2)").all_inner_texts()
            assert len(shown_callees) == calls.count() - 1
            assert set(shown_callees) <= callees, sorted(set(shown_callees) - callees)[:5]
            # and the chart of them, drawn
            chart = page.locator("img.chart")
            assert chart.is_visible()
            assert chart.evaluate("img => img.complete && img.naturalWidth > 0 && img.naturalHeight > 0")

            before = store.head_version()
            page.fill("form.decide textarea[name=comment]", COMMENT)
            page.click("button[value=overturn]")
            page.wait_for_selector("text=cleared until")
            [unblock] = store.entries_since(before)
            assert (unblock.number, unblock.action, unblock.actor) == (number, "unblock", ANALYST)
            history = page.locator("table.history")
            assert history.locator("tr", has_text="overturn").locator("td", has_text=ANALYST).count() == 1
            assert history.locator("td", has_text=COMMENT).count() >= 1
    finally:
        store.close()

    # the distribution round publishes it on every operator's topic under the fresh prefix
    out = _simguard(env, "blocklist", "publish")
    assert f"every operator's topic holds the blocklist up to version {unblock.version}" in out, out
    # the operator: the number's home operator, which lifts the bar on its outgoing calls; a
    # foreign number (a Wangiri CLI can top the queue) has none, and every operator stops
    # rejecting its calls
    home = load_numbering_plan().classify(number).operator
    operator = home if home is not None else sorted(settings.blocklist.operators)[0]
    assert operator in settings.blocklist.operators, number
    records = _topic_records(kafka_bootstrap, f"{env['SIMGUARD_KAFKA__TOPICS__BLOCKLIST_PREFIX']}.{operator}")
    last = [v for k, v in records if k == f"all|{number}"][-1]
    assert (last["action"], last["decided_by"], last["note"], last["version"], last["enforce"]) == (
        "unblock", "analyst", COMMENT, unblock.version,
        "bar_outgoing_calls" if home is not None else "reject_incoming_calls")

    # ... and the operator's GET /blocklist hands it out
    service = open_console_store(settings)
    try:
        with serving(create_service(store=service, blocklist=settings.blocklist)) as api:
            got = httpx.get(f"{api}/blocklist", params={"since": before},
                            headers={"authorization": f"Bearer {TOKEN}-{operator}"})
        assert got.status_code == 200, got.text
        entries = got.json()["entries"]
        assert [(e["number"], e["action"], e["version"]) for e in entries] == [(number, "unblock", unblock.version)]
        assert not service.is_blocked(number)
    finally:
        service.close()


def test_audit_report_and_regulator_pages_of_a_stream_run(
    world: dict[str, Any], run_copy: dict[str, Any], page, tmp_path: Path  # noqa: F811
) -> None:
    env, settings, blocks = run_copy["env"], run_copy["settings"], run_copy["blocks"]
    # an analyst overturned one of the run's blocks and confirmed another (the console's actions)
    sims = blocks[blocks["scope"] == "all"].sort_values(["score", "id"], ascending=[False, True], kind="stable")
    overturned, confirmed = str(sims["number"].iloc[0]), str(sims["number"].iloc[1])
    store = open_console_store(settings)
    try:
        store.decide(overturned, "overturn", comment=f"called {overturned} back: a shop", actor=ANALYST,
                     request_id="stream-run-1")
        store.decide(confirmed, "confirm", comment="robocalls confirmed", actor=ANALYST, request_id="stream-run-2")
    finally:
        store.close()
    password = tmp_path / "password"
    password.write_text(REGULATOR_PASSWORD + "\n")
    _simguard(env, "users", "add", REGULATOR, "--role", "regulator", "--password-file", str(password))

    # the report of the whole run: from the day its first block was decided to today
    first = pd.Timestamp(blocks["created_at"].min()).date().isoformat()
    today = dt.datetime.now(dt.UTC).date().isoformat()
    out = tmp_path / "audit" / "report.html"
    _simguard(env, "audit", "report", "--from", first, "--to", today, "--out", str(out), "--json")
    html, text = out.read_text(), out.with_suffix(".json").read_text()
    data = json.loads(text)

    # both champions' dossiers, and their PR and ROC curves from the run's MLflow, drawn with the rest
    versions = {f"{world[k][0].name} v{world[k][0].version}" for k in ("spam", "spoof")}
    assert {f"{d['registered_name']} v{d['version']}" for d in data["dossiers"]} == versions
    assert not data["versions_without_dossier"]
    assert "No PR or ROC plot found" not in html
    plots = report_plots(page, out)
    for v in versions:
        assert f"IMG PR curve {v}" in plots and f"IMG ROC curve {v}" in plots, (v, plots)
    assert len(plots) >= 4 + 2 * len(versions), plots

    # the regulator's console pages on the same database and key
    store, app = _console(settings)
    try:
        with serving(app) as base:
            pages, name, events = regulator_pages(page, base, name=REGULATOR, password=REGULATOR_PASSWORD,
                                                  first=first, last=today, dossier=sorted(versions)[0])
            assert page.locator("table.targets tr").count() > 1
    finally:
        store.close()

    # one pseudonym, one number: the console's link and the report name the overturned block alike
    pseudonym = Pseudonymizer(settings.audit.pseudonym_key, KEY_ID)
    assert name == pseudonym(overturned) != pseudonym(confirmed)
    assert name in html and name in pages["overview"] + pages["decisions"] and name in pages["history"]
    assert events == [h["action"] for h in data["number_history"][name]]
    assert any(d["number"] == name and d["action"] == "unblock" and d["actor"] == ANALYST for d in data["decisions"])

    # no E.164 number of the run anywhere the regulator looks: the streamed CDRs' callers and
    # callees, and every number the database holds (short codes such as 113 are not E.164 numbers)
    cdrs = _streamed_cdrs(world)
    held = set(cdrs["a_number"]) | set(cdrs["b_number"]) | run_numbers(sa.create_engine(run_copy["url"]))
    held = {n for n in held if len(n.lstrip("+")) >= 8}
    assert overturned in held and len(held) > 1000
    assert_no_numbers({"report.html": html, "report.json": text, **pages}, held)
