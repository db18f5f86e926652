"""``simguard blocklist ...`` and ``simguard serve --help`` through the real command group, with the
database under a temporary home (unit tier: no Kafka)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
from factories import fixed_policy
from typer.testing import CliRunner

from pipeline.cli import app
from streaming.blocklist.export import read_snapshot_version
from streaming.blocklist.store import BlocklistStore
from streaming.policy import StaticAllowlist, decide_sims

PAST = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)  # blocks issued then have lapsed by now
T = pd.Timestamp("2019-12-31T18:00", tz="UTC")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def config(tmp_path: Path, home: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f"home: {home}\n")
    return path


def run(config: Path, *args: str) -> str:
    result = CliRunner().invoke(app, ["--config", str(config), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def seed(home: Path) -> BlocklistStore:
    store = BlocklistStore.open(f"sqlite:///{home / 'simguard.db'}")
    frame = pd.DataFrame(
        {
            "number": ["+84961000001", "+84912345678", "+84961000003"],
            "fraud_type": ["spam_robocall", "wangiri", "simbox"],
            "score": [0.99, 0.95, 0.8],
            "operator": "viettel",
            "reasons": [["called 212 distinct numbers in 24h"]] * 3,
            "model_name": "simguard-spam-sim",
            "model_version": "7",
            "window_end": T,
        }
    )
    decisions = decide_sims(frame, policy=fixed_policy(), allowlist=StaticAllowlist(), batch_key="s:1")
    store.apply_decisions(decisions, now=PAST)
    return store


def test_export_show_expire_audit(config: Path, home: Path, tmp_path: Path) -> None:
    store = seed(home)
    store.close()
    out = tmp_path / "snap" / "viettel.csv"
    assert "2 blocks in force at version 2 for viettel" in run(
        config, "blocklist", "export", "--operator", "viettel", "--out", str(out)
    )
    assert read_snapshot_version(out) == 2
    snap = pd.read_csv(out, comment="#", dtype=str)
    assert list(snap["number"]) == ["+84912345678", "+84961000001"]
    assert list(snap["enforce"]) == ["reject_incoming_calls", "bar_outgoing_calls"]
    assert snap.loc[1, "reasons"] == "called 212 distinct numbers in 24h"

    shown = run(config, "blocklist", "show", "+84961000001")
    assert "BLOCKED" in shown and "called 212 distinct numbers in 24h" in shown and "spam_robocall" in shown
    assert "review" in run(config, "blocklist", "show", "+84961000003")
    assert "always allowed: emergency" in run(config, "blocklist", "show", "113")

    # both blocks lapsed long ago: expiry lifts them, and the next export is empty at version 4
    assert "2 blocks expired (versions 3..4)" in run(config, "blocklist", "expire")
    assert "0 blocks in force at version 4" in run(
        config, "blocklist", "export", "--operator", "mobifone", "--out", str(out)
    )
    assert "not blocked" in run(config, "blocklist", "show", "+84961000001")
    assert run(config, "blocklist", "audit") == (
        "simguard-spam-sim v7: blocked 2, overturned 0, lifted for the allowlist 0, expired 2; "
        "reviews open 1, confirmed 0, overturned 0\n"
    )


def test_load_businesses_lifts_blocks_and_unknown_operator_is_one_line(
    config: Path, home: Path, tmp_path: Path
) -> None:
    seed(home).close()
    path = tmp_path / "registered.csv"
    path.write_text("a_number,name\n+84961000001,call centre\n")
    assert "1 added, 0 removed, 1 blocks lifted" in run(config, "blocklist", "load-businesses", str(path))
    assert "allowlisted: registered_business" in run(config, "blocklist", "show", "+84961000001")
    result = CliRunner().invoke(
        app, ["--config", str(config), "blocklist", "export", "--operator", "acme", "--out", str(tmp_path / "x.csv")]
    )
    assert result.exit_code != 0 and "unknown operator 'acme'" in str(result.exception)


def test_serve_is_registered() -> None:
    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0 and "/blocklist" in result.output


HOSTILE = "[/oops] \x1b[2J\x1b]0;pwned\x07[red]BLOCKED[/red]\r\u202eevil"


def seed_hostile(home: Path) -> None:
    """Values a person or a CDR could have written: markup, escape codes, a CR, a bidi override."""
    from streaming.policy import decide_calls

    store = BlocklistStore.open(f"sqlite:///{home / 'simguard.db'}")
    frame = pd.DataFrame(
        {
            "number": ["+84961000001", "+84961000002"],
            "fraud_type": "spam_robocall",
            "score": 0.99,
            "operator": "viettel",
            "reasons": [[HOSTILE], ["@SUM(1+1)*cmd|' /C calc'!A0"]],
            "model_name": "=HYPERLINK(\"http://evil\")",
            "model_version": "-7",
            "window_end": T,
        }
    )
    store.apply_decisions(
        decide_sims(frame, policy=fixed_policy(), allowlist=StaticAllowlist(), batch_key="s:1"), now=PAST
    )
    calls = pd.DataFrame(
        {
            "cli": ["+84961000001"],
            "in_trunk_type": ["international_gateway"],
            "in_trunk_id": [HOSTILE],
            "operator": ["mobifone"],
            "score": [0.95],
            "reasons": [["domestic CLI on an international gateway"]],
            "model_version": ["2"],
            "start_time": [T],
        }
    )
    store.apply_decisions(
        decide_calls(calls, policy=fixed_policy(), allowlist=StaticAllowlist(), batch_key="c:1"), now=PAST
    )
    store.unblock("+84961000001", analyst="lan", reason=HOSTILE, request_id="r1", scope="all", now=PAST)
    store.close()


def test_show_prints_data_as_text_not_markup_or_escape_codes(config: Path, home: Path) -> None:
    seed_hostile(home)
    shown = run(config, "blocklist", "show", "+84961000001")
    assert "\x1b" not in shown and "\r" not in shown and "\u202e" not in shown and "\x07" not in shown
    # the markup is shown as the text it is, on the note, the reasons and the trunk id
    text = "[/oops] [2J]0;pwned[red]BLOCKED[/red] evil"
    assert f"lan at 2020-01-01 00:00:00Z: {text}" in shown  # the note
    assert f"why: {text}" in shown and f"reasons: {text}" in shown and f"on international_gateway/{text}" in shown
    # a number given on the command line is data too
    assert "[/x]" in run(config, "blocklist", "show", "[/x]")


def test_export_neutralises_formulas_and_is_not_world_readable(config: Path, home: Path, tmp_path: Path) -> None:
    import csv
    import stat

    seed_hostile(home)
    out = tmp_path / "snap" / "viettel.csv"
    run(config, "blocklist", "export", "--operator", "viettel", "--out", str(out))
    with out.open(encoding="utf-8") as fh:
        fh.readline()
        rows = {r["number"]: r for r in csv.DictReader(fh) if r["scope"] == "all"}
    row = rows["+84961000002"]  # E.164 stays as it is
    assert row["model_name"] == "'=HYPERLINK(\"http://evil\")"
    assert row["reasons"] == "'@SUM(1+1)*cmd|' /C calc'!A0"
    assert row["model_version"] == "-7"  # a plain number is no formula
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert stat.S_IMODE((home / "simguard.db").stat().st_mode) == 0o600
