"""The regulator's side: ``simguard audit verify | head | report`` on a small history (SQLite),
pseudonyms in place of numbers, and a registered version's dossier with a failed target."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from audit_data import NUMBERS, history
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import load_settings
from streaming.blocklist.store import BlocklistStore

KEY = "regulator-test-key-not-for-production"
ENV = {"SIMGUARD_AUDIT__PSEUDONYM_KEY": KEY, "SIMGUARD_AUDIT__PSEUDONYM_KEY_ID": "k7"}
E164 = re.compile(r"\+\d{8,15}")


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f"home: {tmp_path / 'home'}\n")
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    return path


@pytest.fixture
def store(config: Path):
    s = BlocklistStore.open(load_settings(config).database_url)
    history(s)
    yield s
    s.close()


def run(config: Path, *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, ["--config", str(config), *args], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


def test_verify_and_head_on_the_command_line(config: Path, store: BlocklistStore) -> None:
    out = run(config, "audit", "verify")
    assert "audit log OK: 6 records" in out
    seq, digest = run(config, "audit", "head").split()
    assert seq == "6" and len(digest) == 64 and digest in out
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE audit_log SET actor = 'admin' WHERE seq = 4")
    broken = run(config, "audit", "verify", code=1)
    assert "audit record #4 was edited" in broken


def test_report_has_no_number_and_one_pseudonym_per_number(config: Path, store: BlocklistStore, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    printed = run(config, "audit", "report", "--from", "2026-11-01", "--to", "2026-11-30", "--out", str(out), "--json")
    html, text = out.read_text(), out.with_suffix(".json").read_text()
    assert str(out) in printed
    for number in NUMBERS:
        assert number not in html and number not in text and number.lstrip("+") not in html + text
    assert not E164.search(html) and not E164.search(text)
    assert KEY not in html + text + printed
    data = json.loads(text)
    assert html.count("data:image/png;base64,") == 4
    assert data["audit_log"]["verify"]["ok"] and data["audit_log"]["head_hash"] in html
    # the blocked number's pseudonym is the same in the decisions list and in its history
    settings = load_settings(config)
    from streaming.blocklist.pseudonym import Pseudonymizer

    assert KEY in settings.secret_values() and KEY not in repr(settings)  # masked like every secret
    name = Pseudonymizer(settings.audit.pseudonym_key, "k7")(NUMBERS[0])
    assert KEY not in repr(Pseudonymizer(settings.audit.pseudonym_key, "k7"))
    assert name.startswith("k7-")
    assert any(d["number"] == name and d["action"] == "block" for d in data["decisions"])
    assert [h["action"] for h in data["number_history"][name]] == ["review opened", "block", "unblock",
                                                                     "review overturned"]
    assert html.count(name) >= 4
    # counts from the log: 4 blocks (3 SIM, 1 spoofed-call rule), one analyst overturn, one expiry
    totals = {k: sum(v.get(k, 0) for v in data["per_day"].values())
              for k in ("blocks", "reviews", "block_overturns", "review_overturns", "expiries")}
    assert totals == {"blocks": 4, "reviews": 2, "block_overturns": 1, "review_overturns": 1, "expiries": 1}
    assert data["per_operator"]["vinaphone"]["blocks"] == 2
    # the console's appeals table (migration 0003) is there, with no appeal in it
    assert data["appeals"]["available"] is True and data["appeals"]["received"] == 0
    assert {t["trunk_id"]: t["calls"] for t in data["spoofed_calls_per_trunk"]} == {"GW-HK-1": 1, "GW-SG-2": 1}


def test_a_report_needs_the_pseudonym_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIMGUARD_AUDIT__PSEUDONYM_KEY", raising=False)
    path = tmp_path / "config.yaml"
    path.write_text(f"home: {tmp_path / 'home'}\n")
    result = CliRunner().invoke(app, ["--config", str(path), "audit", "report", "--from", "2026-11-01",
                                      "--to", "2026-11-02", "--out", str(tmp_path / "r.html")])
    assert result.exit_code != 0 and "no pseudonym key" in str(result.exception or result.output)


def test_show_and_audit_warn_about_rows_forged_outside_the_store(config: Path, store: BlocklistStore) -> None:
    number = NUMBERS[0]
    assert "WARNING" not in run(config, "blocklist", "show", number)
    # the forgery: one UPDATE rewrites an unblock's actor and note, another confirms a review
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE blocklist_entries SET actor = 'admin', note = 'routine' WHERE action = 'unblock' "
                             "AND decided_by = 'analyst'")
        conn.exec_driver_sql("UPDATE reviews SET status = 'confirmed' WHERE status = 'overturned'")
    shown = run(config, "blocklist", "show", number)
    assert "WARNING" in shown and "actor, note differ from audit log" in shown
    assert "review 1: status differ from audit log" in shown
    result = CliRunner().invoke(app, ["--config", str(config), "blocklist", "audit"], catch_exceptions=False)
    assert result.exit_code == 0 and "changed outside SIMGuard" in result.output
