"""The blocklist store on SQLite in a temporary folder and on the session's PostgreSQL server
(``db_url`` in conftest.py). No Spark, no Kafka."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from factories import fixed_policy

from streaming.blocklist.errors import BlocklistError
from streaming.blocklist.migrate import VERSION_TABLE, current_revision, downgrade, head_revision, upgrade
from streaming.blocklist.models import Base, Delivery, Detection
from streaming.blocklist.sink import BlocklistSink
from streaming.blocklist.store import BlocklistStore, read_numbers
from streaming.policy import Decision, StaticAllowlist, decide_calls, decide_sims

NOW = dt.datetime(2026, 11, 2, 7, 0, tzinfo=dt.UTC)
T = pd.Timestamp("2026-11-02T06:00", tz="UTC")
POLICY = fixed_policy()
WEBHOOKS = ("viettel", "vinaphone")


@pytest.fixture
def store(db_url: str):
    s = BlocklistStore.open(db_url, webhook_operators=WEBHOOKS)
    yield s
    s.close()


def sims(rows: list[tuple[str, str, float]], *, window_end: pd.Timestamp = T) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["number", "fraud_type", "score"])
    frame["operator"] = "viettel"
    frame["reasons"] = [["called 212 distinct numbers in 24h"]] * len(frame)
    frame["model_name"] = "simguard-spam-sim"
    frame["model_version"] = "7"
    frame["window_end"] = window_end
    return frame


def decide(store: BlocklistStore, rows: list[tuple[str, str, float]], *, batch: str, **kw) -> list[Decision]:
    frame = sims(rows, **kw)
    return decide_sims(frame, policy=POLICY, allowlist=store.allowlist_for(frame["number"]), batch_key=batch)


def count(store: BlocklistStore, model: type) -> int:
    with store.engine.connect() as conn:
        return int(conn.scalar(sa.select(sa.func.count()).select_from(model)))


def test_the_postgresql_cases_run_on_a_real_server(postgres_url: str) -> None:
    """`make test` runs every ``db_url`` test on PostgreSQL too: a real server, with the
    advisory locks the migrations take and the row locks the writers take."""
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert conn.scalar(sa.text("select version()")).startswith("PostgreSQL")
            assert conn.scalar(sa.text("select pg_try_advisory_lock(4242)")) is True
            with engine.connect() as other:  # another session cannot take it meanwhile
                assert other.scalar(sa.text("select pg_try_advisory_lock(4242)")) is False
            conn.execute(sa.text("select pg_advisory_unlock(4242)"))
    finally:
        engine.dispose()


def test_migrations_create_exactly_the_models(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    upgrade(db_url)
    upgrade(db_url)  # on every start: a no-op the second time
    engine = sa.create_engine(db_url)
    try:
        assert current_revision(engine) == head_revision()
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True, "version_table": VERSION_TABLE})
            assert compare_metadata(ctx, Base.metadata) == []
        downgrade(db_url)
        assert set(sa.inspect(engine).get_table_names()) <= {VERSION_TABLE}
    finally:
        engine.dispose()


def test_processes_starting_together_migrate_once(db_url: str, tmp_path: Path) -> None:
    """Every command migrates on start, so ``serve``, ``stream`` and ``console`` started together
    on an empty database all run ``upgrade``: each must succeed and leave one schema at head
    (PostgreSQL: the migrations' advisory lock; SQLite: the write lock)."""
    import subprocess
    import sys
    import time

    go = tmp_path / "go"
    code = (
        "import pathlib, sys, time\n"
        "from streaming.blocklist.migrate import upgrade\n"
        "pathlib.Path(sys.argv[3]).touch()\n"
        "while not pathlib.Path(sys.argv[2]).exists(): time.sleep(0.005)\n"
        "upgrade(sys.argv[1])\n"
    )
    ready = [tmp_path / f"ready-{i}" for i in range(4)]
    procs = [
        subprocess.Popen([sys.executable, "-c", code, db_url, str(go), str(r)], stderr=subprocess.PIPE, text=True)
        for r in ready
    ]
    deadline = time.monotonic() + 120
    while not all(r.exists() for r in ready) and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()  # all four imported: they migrate at the same moment
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, "\n".join(errors)
    engine = sa.create_engine(db_url)
    try:
        assert current_revision(engine) == head_revision()
        with engine.connect() as conn:
            assert conn.scalar(sa.select(sa.func.count()).select_from(sa.table(VERSION_TABLE))) == 1
    finally:
        engine.dispose()


def test_a_new_sqlite_file_opens_while_another_connection_writes(tmp_path: Path) -> None:
    """A connection to a new database file waits for another's write lock instead of failing at
    once: the file is made in WAL mode, so no opener has to switch it (SQLite refuses that switch
    at once while another connection holds the lock: the flaky failure of the test above)."""
    import sqlite3

    from streaming.blocklist.db import DB_FILE_MODE, make_engine

    path = tmp_path / "state" / "blocklist.db"
    engine = make_engine(f"sqlite:///{path}")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process's writer, before anyone switched the file
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        holder.rollback()
        holder.close()
        engine.dispose()
    assert path.stat().st_mode & 0o777 == DB_FILE_MODE
    assert sorted(p.name for p in path.parent.iterdir()) == ["blocklist.db"]


def test_block_is_a_version_with_state_and_outbox_rows(store: BlocklistStore) -> None:
    result = store.apply_decisions(decide(store, [("+84961000001", "spam_robocall", 0.99)], batch="sim:1"), now=NOW)
    [entry] = result.entries
    assert entry.version == 1 and entry.action == "block" and entry.decided_by == "model"
    assert entry.model_name == "simguard-spam-sim" and entry.model_version == "7"
    assert entry.expires_at == NOW + dt.timedelta(hours=POLICY.spam_robocall.ttl_hours)
    assert store.is_blocked("+84961000001", now=NOW)
    assert count(store, Delivery) == len(WEBHOOKS)
    assert store.head_version() == 1


def test_applying_the_same_decisions_again_changes_nothing(store: BlocklistStore) -> None:
    rows = [("+84961000001", "spam_robocall", 0.99), ("+84961000002", "simbox", 0.8), ("113", "simbox", 0.99)]
    decisions = decide(store, rows, batch="sim:5")
    first = store.apply_decisions(decisions, now=NOW)
    assert len(first.entries) == 1 and first.reviews_opened == 1 and first.allowed == 1
    before = (store.head_version(), count(store, Delivery), count(store, Detection), store.counts())
    # a replayed micro-batch: same keys, later wall clock
    again = store.apply_decisions(decide(store, rows, batch="sim:5"), now=NOW + dt.timedelta(minutes=5))
    assert again.entries == [] and again.replayed == 3 and again.reviews_updated == 0
    assert (store.head_version(), count(store, Delivery), count(store, Detection), store.counts()) == before


def test_an_active_block_is_not_versioned_again_nor_extended(store: BlocklistStore) -> None:
    store.apply_decisions(decide(store, [("+84961000001", "spam_robocall", 0.99)], batch="sim:1"), now=NOW)
    later = NOW + dt.timedelta(hours=6)
    second = store.apply_decisions(
        decide(store, [("+84961000001", "spam_robocall", 0.999)], batch="sim:2", window_end=T + pd.Timedelta(hours=6)),
        now=later,
    )
    assert second.entries == [] and second.already_blocked == 1
    state = store.state("+84961000001")
    assert state is not None and state.version == 1
    assert state.expires_at == NOW + dt.timedelta(hours=POLICY.spam_robocall.ttl_hours)
    outcomes = [d.outcome for d in store.history("+84961000001").detections]
    assert outcomes == ["blocked", "already_blocked"]


def test_allowlist_wins_inside_the_store_even_over_a_stale_decision(store: BlocklistStore) -> None:
    store.unblock("+84961000009", analyst="lan", reason="appeal upheld", request_id="req-1", now=NOW)
    # the policy ran with an allowlist that did not know yet
    stale = decide_sims(
        sims([("+84961000009", "spam_robocall", 0.999)]), policy=POLICY, allowlist=StaticAllowlist(), batch_key="s:1"
    )
    assert stale[0].action == "block"
    result = store.apply_decisions(stale, now=NOW)
    assert result.entries == [] and result.allowed == 1
    assert not store.is_blocked("+84961000009", now=NOW)
    [det] = store.history("+84961000009").detections
    assert det.outcome == "allowed" and det.why == "allowlisted: cleared by an analyst"


def test_registered_businesses_are_never_blocked_and_loading_lifts_their_blocks(
    store: BlocklistStore, tmp_path: Path
) -> None:
    call_centre = "+842439123456"
    store.apply_decisions(decide(store, [(call_centre, "spam_robocall", 0.99)], batch="s:1"), now=NOW)
    assert store.is_blocked(call_centre, now=NOW)
    path = tmp_path / "registered_businesses.parquet"
    pd.DataFrame({"a_number": [call_centre, "+842439123457"], "name": ["call centre", "taxi"]}).to_parquet(path)
    sync = store.sync_registered_businesses(read_numbers(path), now=NOW)
    assert (sync.added, sync.removed) == (2, 0)
    [lift] = sync.entries
    assert lift.action == "unblock" and lift.lifts_version == 1 and lift.decided_by == "system"
    assert not store.is_blocked(call_centre, now=NOW)
    again = store.apply_decisions(decide(store, [(call_centre, "spam_robocall", 0.999)], batch="s:2"), now=NOW)
    assert again.entries == [] and again.allowed == 1
    csv = tmp_path / "businesses.csv"
    csv.write_text("number\n+842439123457\n")
    assert store.sync_registered_businesses(read_numbers(csv), now=NOW).removed == 1
    bad = tmp_path / "msisdn.csv"
    bad.write_text("msisdn\n+84961000001\n")
    with pytest.raises(BlocklistError, match="no 'a_number' or 'number' column"):
        read_numbers(bad)


def test_review_queue_keeps_one_open_flag_per_number(store: BlocklistStore) -> None:
    first = store.apply_decisions(decide(store, [("+84961000002", "simbox", 0.8)], batch="s:1"), now=NOW)
    second = store.apply_decisions(
        decide(store, [("+84961000002", "simbox", 0.9)], batch="s:2", window_end=T + pd.Timedelta(hours=6)), now=NOW
    )
    assert (first.reviews_opened, second.reviews_updated) == (1, 1)
    [review] = store.open_reviews()
    assert review.status == "open" and review.detections == 2 and review.score == pytest.approx(0.9)
    assert review.model_version == "7" and review.reasons == ["called 212 distinct numbers in 24h"]
    assert store.head_version() == 0  # a review is not a block


def test_expiry_writes_an_unblock_that_goes_to_every_webhook(store: BlocklistStore) -> None:
    store.apply_decisions(decide(store, [("+88212345678", "wangiri", 0.95)], batch="s:1"), now=NOW)
    assert store.expire(NOW + dt.timedelta(hours=167)) == []
    [unblock] = store.expire(NOW + dt.timedelta(hours=168))
    assert unblock.action == "unblock" and unblock.lifts_version == 1 and unblock.actor == "expiry"
    assert unblock.version == 2 and not store.is_blocked("+88212345678", now=NOW + dt.timedelta(hours=168))
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(Delivery.entry_id, Delivery.operator).order_by(Delivery.entry_id)).all()
    assert sorted(rows) == sorted((v, op) for v in (1, 2) for op in WEBHOOKS)
    assert store.expire(NOW + dt.timedelta(hours=200)) == []
    # still flagged after the lapse: a new version with the new evidence
    again = store.apply_decisions(decide(store, [("+88212345678", "wangiri", 0.97)], batch="s:9"), now=NOW)
    assert [e.version for e in again.entries] == [3]


def test_a_lapsed_block_not_yet_expired_is_closed_before_the_new_one(store: BlocklistStore) -> None:
    store.apply_decisions(decide(store, [("+88212345678", "wangiri", 0.95)], batch="s:1"), now=NOW)
    later = NOW + dt.timedelta(hours=200)
    result = store.apply_decisions(decide(store, [("+88212345678", "wangiri", 0.95)], batch="s:2"), now=later)
    assert [(e.version, e.action, e.lifts_version) for e in result.entries] == [(2, "unblock", 1), (3, "block", None)]


def test_analyst_unblock_lifts_clears_overturns_and_is_idempotent(store: BlocklistStore) -> None:
    number = "+84961000001"
    # flagged for review first, then blocked by a later window: the review stays open
    store.apply_decisions(decide(store, [(number, "simbox", 0.8)], batch="s:0"), now=NOW)
    store.apply_decisions(decide(store, [(number, "spam_robocall", 0.99)], batch="s:1"), now=NOW)
    calls = pd.DataFrame(
        {
            "cli": [number],
            "in_trunk_type": ["international_gateway"],
            "in_trunk_id": ["GW-1"],
            "operator": ["mobifone"],
            "score": [0.95],
            "reasons": [["domestic CLI on an international gateway"]],
            "model_version": ["2"],
            "start_time": [T],
        }
    )
    store.apply_decisions(decide_calls(calls, policy=POLICY, allowlist=StaticAllowlist(), batch_key="c:1"), now=NOW)
    res = store.unblock(number, analyst="lan", reason="subscriber appeal #42", request_id="appeal-42", now=NOW)
    assert [(e.scope, e.action, e.decided_by, e.actor) for e in res.entries] == [
        ("all", "unblock", "analyst", "lan"),
        ("trunk:international_gateway", "unblock", "analyst", "lan"),
    ]
    assert res.cleared and res.reviews_overturned == 1 and not res.replayed
    head = store.head_version()
    again = store.unblock(number, analyst="lan", reason="subscriber appeal #42", request_id="appeal-42", now=NOW)
    assert again.replayed and [e.version for e in again.entries] == [e.version for e in res.entries]
    assert store.head_version() == head
    with pytest.raises(BlocklistError, match="already used"):
        store.unblock("+84961000002", analyst="lan", reason="x", request_id="appeal-42", now=NOW)
    # the model cannot block a cleared number again
    assert store.apply_decisions(decide(store, [(number, "spam_robocall", 0.999)], batch="s:3"), now=NOW).entries == []
    audit = {r["model_version"]: r for r in store.model_audit()}
    assert audit["7"]["blocked"] == 1 and audit["7"]["overturned"] == 1 and audit["7"]["reviews_overturned"] == 1
    assert audit["2"]["blocked"] == 1 and audit["2"]["overturned"] == 1


def test_spoofed_calls_count_against_their_trunk_once(store: BlocklistStore) -> None:
    frame = pd.DataFrame(
        {
            "record_id": ["r1", "r2", "r3"],
            "cli": ["+84912345678"] * 3,
            "in_trunk_type": ["international_gateway"] * 3,
            "in_trunk_id": ["GW-HK-1", "GW-HK-1", "GW-SG-2"],
            "operator": ["mobifone"] * 3,
            "score": [0.95, 0.7, 0.99],
            "reasons": [["x"]] * 3,
            "model_version": ["2"] * 3,
            "start_time": [T] * 3,
        }
    )
    decisions = decide_calls(frame, policy=POLICY, allowlist=StaticAllowlist(), batch_key="calls:1")
    result = store.apply_decisions(decisions, now=NOW)
    assert [(e.scope, e.number) for e in result.entries] == [("trunk:international_gateway", "+84912345678")]
    assert not store.is_blocked("+84912345678", "all", now=NOW)  # the victim's own line
    assert store.apply_decisions(decisions, now=NOW).replayed == 3
    counts = {(t.operator, t.trunk_id): (t.blocked_calls, t.review_calls) for t in store.trunk_counts()}
    assert counts == {("mobifone", "GW-HK-1"): (1, 1), ("mobifone", "GW-SG-2"): (1, 0)}
    wrong = Decision(**{**decisions[0].__dict__, "scope": "all", "idempotency_key": "k"})
    with pytest.raises(BlocklistError, match="trunk-scoped"):
        store.apply_decisions([wrong], now=NOW)


def test_versions_are_contiguous_and_in_commit_order_under_concurrent_writers(store: BlocklistStore) -> None:
    errors: list[BaseException] = []

    def writer(worker: int) -> None:
        try:
            for i in range(8):
                number = f"+8496{worker:02d}{i:05d}"
                store.apply_decisions(decide(store, [(number, "spam_robocall", 0.99)], batch=f"w{worker}:{i}"), now=NOW)
                if i % 3 == 0:
                    store.unblock(number, analyst="lan", reason="test", request_id=f"w{worker}-{i}", now=NOW)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    versions = [e.version for e in store.entries_since(0, limit=1000)]
    assert versions == list(range(1, 4 * 8 + 4 * 3 + 1))


def test_snapshot_at_a_version_is_what_operators_held_then(store: BlocklistStore) -> None:
    store.apply_decisions(
        decide(store, [("+84961000001", "spam_robocall", 0.99), ("+84961000002", "spam_robocall", 0.99)], batch="s:1"),
        now=NOW,
    )
    store.unblock("+84961000001", analyst="lan", reason="appeal", request_id="r1", now=NOW)
    version, now_blocked = store.snapshot()
    assert version == 3 and [e.number for e in now_blocked] == ["+84961000002"]
    version, then_blocked = store.snapshot(at_version=2)
    assert version == 2 and [e.number for e in then_blocked] == ["+84961000001", "+84961000002"]


def test_sink_accepts_the_streaming_jobs_columns(store: BlocklistStore) -> None:
    sink = BlocklistSink(store=store, policy=POLICY)
    assert sink.min_score("sim") == min(POLICY.simbox.review_above, POLICY.spam_robocall.review_above)
    assert sink.min_score("call") == POLICY.spoofed_call.review_above
    frame = sims([("+84961000001", "spam_robocall", 0.99), ("+84961000002", "simbox", 0.8)]).rename(
        columns={"number": "entity"}
    )
    frame["model_version"] = 7
    counts = sink.apply(frame.drop(columns=["operator"]), kind="sim", query="sim@q1", batch_id=12)
    assert counts == {"block:spam_robocall": 1, "review:simbox": 1}
    [entry] = store.entries_since(0)
    assert entry.number == "+84961000001" and entry.model_version == "7" and entry.reported_by is None
    assert entry.idempotency_key.startswith("sim@q1:12:")
    assert sink.apply(frame.drop(columns=["operator"]), kind="sim", query="sim@q1", batch_id=12) == counts
    assert store.head_version() == 1  # the replay changed nothing
