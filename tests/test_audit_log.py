"""The tamper-evident audit log (streaming.blocklist.audit) on SQLite and PostgreSQL: every
store write appends a chained record, the log rebuilds the state tables, and an edit, a deletion,
a reordering or an insertion made through SQL is named by ``verify`` and ``simguard audit verify``."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
import sqlalchemy as sa
from audit_data import NOW, history

from streaming.blocklist import audit
from streaming.blocklist.models import AllowlistEntry, AuditRecord, Review, State
from streaming.blocklist.store import BlocklistStore


@pytest.fixture
def store(db_url: str):
    s = BlocklistStore.open(db_url)
    history(s)
    yield s
    s.close()


def sql(store: BlocklistStore, *statements: str, **params) -> None:
    with store.engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement), params)


def test_every_state_change_is_one_chained_record(store: BlocklistStore) -> None:
    rows = list(audit.records(store.engine))
    assert [r.kind for r in rows] == ["model_decisions", "model_decisions", "model_decisions", "unblock",
                                      "allowlist", "expiry"]
    assert [r.seq for r in rows] == list(range(1, 7))
    assert rows[0].prev_hash == audit.GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(rows))
    assert rows[3].actor == "lan" and rows[3].content["reason"] == "subscriber appeal #42"
    result = audit.verify(store.engine)
    assert result.ok and result.records == 6 and (result.head_seq, result.head_hash) == audit.head(store.engine)
    assert audit.verify(store.engine, expected_head=rows[2].hash).ok  # an older kept head is still in the chain


def test_state_and_reviews_are_rebuilt_from_the_log_alone(store: BlocklistStore) -> None:
    replayed = audit.replay(audit.records(store.engine))
    with store.engine.connect() as conn:
        active = {(n, s): v for n, s, v in conn.execute(
            sa.select(State.number, State.scope, State.block_entry_id).where(State.active.is_(True)))}
        reviews = {r.id: r for r in conn.execute(sa.select(Review))}
        allowlist = {tuple(r) for r in conn.execute(sa.select(AllowlistEntry.number, AllowlistEntry.source))}
    assert active and {k: e["version"] for k, e in replayed.active.items()} == active
    assert set(replayed.reviews) == set(reviews)
    for rid, row in reviews.items():
        logged = replayed.reviews[rid]
        assert (logged["status"], logged["detections"], logged["score"], logged["resolved_by"]) == (
            row.status, row.detections, row.score, row.resolved_by)
    assert replayed.allowlist == allowlist
    assert any(r["status"] == "overturned" for r in replayed.reviews.values())
    # a forged review (the sqlite3 UPDATE) now disagrees with the log, and the log holds
    sql(store, "UPDATE reviews SET status = 'confirmed', resolved_by = 'mallory'")
    with store.engine.connect() as conn:
        forged = {r.id: r.status for r in conn.execute(sa.select(Review))}
    assert {rid: r["status"] for rid, r in audit.replay(audit.records(store.engine)).reviews.items()} != forged
    assert audit.verify(store.engine).ok
    found = audit.disagreements(store.engine)
    assert found and all(line.startswith("review ") and "status, resolved_by differ" in line for line in found)


def test_untouched_tables_agree_with_the_log(store: BlocklistStore) -> None:
    assert audit.disagreements(store.engine) == []


def test_an_edited_record_is_named(store: BlocklistStore) -> None:
    # the forgery, on the log itself: rewrite the unblock's actor and note
    sql(store, "UPDATE audit_log SET actor = 'admin' WHERE seq = 4")
    result = audit.verify(store.engine)
    assert not result.ok and result.seq == 4 and "#4 was edited" in result.problem


def test_a_deleted_record_is_named(store: BlocklistStore) -> None:
    sql(store, "DELETE FROM audit_log WHERE seq = 3")
    result = audit.verify(store.engine)
    assert not result.ok and result.seq == 3 and "#3 was deleted" in result.problem


def test_reordered_records_are_named(store: BlocklistStore) -> None:
    sql(store, "UPDATE audit_log SET seq = 100 WHERE seq = 2", "UPDATE audit_log SET seq = 2 WHERE seq = 3",
        "UPDATE audit_log SET seq = 3 WHERE seq = 100")
    result = audit.verify(store.engine)
    assert not result.ok and result.seq == 2 and "#2 was reordered" in result.problem


def test_an_inserted_record_is_named_even_with_a_valid_hash(store: BlocklistStore) -> None:
    # a careful forger: makes room at #3 and writes a record whose own hash and link are right
    with store.engine.connect() as conn:
        prev = conn.execute(sa.select(AuditRecord.hash).where(AuditRecord.seq == 2)).scalar_one()
    at = NOW + dt.timedelta(hours=1)
    content = {"entries": [], "reviews": [], "note": "forged"}
    digest = audit.record_hash(seq=3, at=at, kind="unblock", actor="mallory", content=content, prev_hash=prev)
    sql(store, "UPDATE audit_log SET seq = seq + 1000 WHERE seq >= 3",
        "UPDATE audit_log SET seq = seq - 999 WHERE seq >= 1000")
    with store.engine.begin() as conn:
        conn.execute(sa.insert(AuditRecord).values(seq=3, at=at, kind="unblock", actor="mallory", content=content,
                                                   prev_hash=prev, hash=digest))
    result = audit.verify(store.engine)
    assert not result.ok and result.seq == 3 and "#3 was inserted" in result.problem


def test_a_rewritten_chain_is_caught_against_a_kept_head(store: BlocklistStore) -> None:
    _, kept = audit.head(store.engine)
    sql(store, "DELETE FROM audit_log WHERE seq = 6")  # dropping the newest record leaves a valid chain
    assert audit.verify(store.engine).ok
    result = audit.verify(store.engine, expected_head=kept)
    assert not result.ok and "chain was rewritten" in result.problem


def test_retention_expires_a_logged_prefix_and_the_rest_still_verifies(store: BlocklistStore) -> None:
    # records 1-4 are older than 400 days on this clock; 5 and 6 are newer
    now = NOW + dt.timedelta(days=401, hours=12)
    assert audit.expire_records(store.engine, retention_days=400, now=now) == 4
    rows = list(audit.records(store.engine))
    assert [r.seq for r in rows] == [5, 6, 7] and rows[-1].kind == "audit_expiry"
    assert rows[-1].content["through_seq"] == 4 and rows[-1].content["deleted"] == 4
    result = audit.verify(store.engine)
    assert result.ok and result.anchor_seq == 4 and result.records == 3
    sql(store, "DELETE FROM audit_log WHERE seq = 5")
    result = audit.verify(store.engine)
    assert not result.ok and result.seq == 5 and "#5 was deleted" in result.problem
