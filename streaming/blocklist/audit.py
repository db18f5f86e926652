"""The tamper-evident audit log: every state change, hash-chained in the database.

Each record (``audit_log``) holds ``seq``, ``at``, ``kind``, ``actor``, ``content`` (JSON), the
previous record's hash and its own hash: SHA-256 over the canonical JSON form (sorted keys, no
whitespace) of all of these but the hash itself. Records are appended in the same transaction as
the change they describe, under the store's write lock, so ``seq`` is gap-free and commits in
order.

:func:`verify` walks the chain and names the first record that was edited, deleted, reordered or
inserted; checked against a kept :func:`head` it also catches a rewrite of the whole chain.
Retention (:func:`expire_records`) deletes a prefix of old records and appends an
``audit_expiry`` record naming the last deleted record's seq and hash: the anchor the remaining
chain is verified from.

Kinds written by the store: ``model_decisions`` (blocks, reviews, spoofed calls per trunk),
``expiry``, ``unblock``, ``allowlist``; by the pipeline: ``champion_alias``,
``model_registered``; here: ``audit_expiry``. Blocklist state and reviews can be rebuilt from the
log alone (:func:`replay`).

The analyst console appends in the transaction of each action (``console_decision``,
``console_manual_block``, ``console_allowlist``, ``console_note``, ``appeal_filed``,
``appeal_decided``) and logs sign-ins (``console_login``) with :func:`record_event`. Entries,
reviews and appeals are logged as snapshots under ``entries``, ``reviews`` and ``appeals``
(:func:`entry_content`, :func:`review_content`, :func:`appeal_content`): the last snapshot is the
state, and the report counts confirmations, overturns and appeals from them.
"""

from __future__ import annotations

__all__ = [
    "GENESIS",
    "Replay",
    "Verification",
    "appeal_content",
    "append",
    "entry_content",
    "expire_records",
    "head",
    "record_event",
    "records",
    "replay",
    "review_content",
    "verify",
]

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from streaming.blocklist.db import as_utc, utcnow, writer
from streaming.blocklist.errors import BlocklistError
from streaming.blocklist.models import AuditRecord, Entry, EntrySequence, Review

#: the predecessor of record 1
GENESIS = "0" * 64
EXPIRY_KIND = "audit_expiry"
#: how far from its place a moved record is looked for when telling a reorder from an edit
_MOVE_SEARCH = 8


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else as_utc(value).isoformat(timespec="microseconds")


def record_hash(*, seq: int, at: dt.datetime, kind: str, actor: str, content: Any, prev_hash: str) -> str:
    body = {"seq": seq, "at": _iso(at), "kind": kind, "actor": actor, "content": content, "prev_hash": prev_hash}
    return hashlib.sha256(canonical(body)).hexdigest()


def _hash_of(row: AuditRecord, *, seq: int | None = None) -> str:
    return record_hash(
        seq=row.seq if seq is None else seq,
        at=row.at,
        kind=row.kind,
        actor=row.actor,
        content=row.content,
        prev_hash=row.prev_hash,
    )


# -- writing -------------------------------------------------------------------------------------


def lock(session: Session) -> None:
    """Take the store's write lock (the no-op update every store writer starts with)."""
    session.execute(sa.update(EntrySequence).where(EntrySequence.name == "entry").values(value=EntrySequence.value))


def append(
    session: Session, *, kind: str, actor: str, content: dict[str, Any], at: dt.datetime | None = None
) -> AuditRecord:
    """Append one record in ``session``'s transaction; the caller holds the write lock."""
    at = as_utc(at or utcnow())
    last = session.execute(
        sa.select(AuditRecord.seq, AuditRecord.hash).order_by(AuditRecord.seq.desc()).limit(1)
    ).first()
    seq, prev = (int(last[0]) + 1, last[1]) if last else (1, GENESIS)
    # round-trip through JSON so the hash is over exactly what the database gives back
    content = json.loads(canonical(content))
    row = AuditRecord(seq=seq, at=at, kind=kind, actor=(actor or "unknown")[:128], content=content, prev_hash=prev)
    row.hash = _hash_of(row)
    session.add(row)
    session.flush()
    return row


def record_event(
    engine: sa.Engine, *, kind: str, actor: str, content: dict[str, Any], at: dt.datetime | None = None
) -> str:
    """Append one record in its own transaction (for writers outside the store); its hash."""
    with Session(writer(engine), expire_on_commit=False) as session, session.begin():
        lock(session)
        return append(session, kind=kind, actor=actor, content=content, at=at).hash


def entry_content(e: Entry) -> dict[str, Any]:
    return {
        "version": e.id, "number": e.number, "scope": e.scope, "action": e.action, "fraud_type": e.fraud_type,
        "score": e.score, "reasons": list(e.reasons or ()), "model_name": e.model_name,
        "model_version": e.model_version, "decided_by": e.decided_by, "actor": e.actor, "note": e.note,
        "reported_by": e.reported_by, "lifts_version": e.lifts_entry_id, "created_at": _iso(e.created_at),
        "expires_at": _iso(e.expires_at),
    }


def review_content(r: Review) -> dict[str, Any]:
    """A review as it stands after the change (the last snapshot in the log is its state)."""
    return {
        "id": r.id, "number": r.number, "scope": r.scope, "fraud_type": r.fraud_type, "score": r.score,
        "reasons": list(r.reasons or ()), "model_name": r.model_name, "model_version": r.model_version,
        "reported_by": r.reported_by, "status": r.status, "detections": r.detections,
        "created_at": _iso(r.created_at), "last_seen_at": _iso(r.last_seen_at), "resolved_at": _iso(r.resolved_at),
        "resolved_by": r.resolved_by, "resolution_note": r.resolution_note, "entry_id": r.entry_id,
    }


def appeal_content(a: Any) -> dict[str, Any]:
    """An appeal (``models.Appeal``) as it stands after the change."""
    return {
        "id": a.id, "number": a.number, "operator": a.operator, "request_id": a.request_id, "reason": a.reason,
        "filed_by": a.filed_by, "status": a.status, "created_at": _iso(a.created_at), "due_at": _iso(a.due_at),
        "decided_by": a.decided_by, "decided_at": _iso(a.decided_at), "outcome_comment": a.outcome_comment,
        "entry_id": a.entry_id,
    }


def expire_records(engine: sa.Engine, *, retention_days: int, now: dt.datetime | None = None) -> int:
    """Delete the records older than ``retention_days`` (a prefix of the chain) and log it."""
    if retention_days < 1:
        raise BlocklistError(f"audit retention must be at least one day, not {retention_days}")
    now = as_utc(now or utcnow())
    cutoff = now - dt.timedelta(days=retention_days)
    with Session(writer(engine), expire_on_commit=False) as session, session.begin():
        lock(session)
        last = session.execute(
            sa.select(AuditRecord.seq, AuditRecord.hash).where(AuditRecord.at < cutoff)
            .order_by(AuditRecord.seq.desc()).limit(1)
        ).first()
        if last is None:
            return 0
        through_seq, through_hash = int(last[0]), last[1]
        deleted = session.execute(sa.delete(AuditRecord).where(AuditRecord.seq <= through_seq)).rowcount
        append(
            session,
            kind=EXPIRY_KIND,
            actor="retention",
            content={"through_seq": through_seq, "through_hash": through_hash, "deleted": deleted,
                     "cutoff": _iso(cutoff), "retention_days": retention_days},
            at=now,
        )
        return int(deleted)


# -- reading and verifying -----------------------------------------------------------------------


def records(engine: sa.Engine, *, batch: int = 2000) -> Iterator[AuditRecord]:
    """Every record, in ``seq`` order."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        yield from session.scalars(sa.select(AuditRecord).order_by(AuditRecord.seq).execution_options(yield_per=batch))


def head(engine: sa.Engine) -> tuple[int, str]:
    """The last record's seq and hash (``(0, GENESIS)`` for an empty log)."""
    with Session(engine) as session, session.begin():
        last = session.execute(
            sa.select(AuditRecord.seq, AuditRecord.hash).order_by(AuditRecord.seq.desc()).limit(1)
        ).first()
    return (int(last[0]), last[1]) if last else (0, GENESIS)


@dataclass(frozen=True)
class Verification:
    ok: bool
    records: int
    head_seq: int
    head_hash: str
    #: the first problem found, naming the record (``None`` when the chain holds)
    problem: str | None = None
    #: the seq of the record named in ``problem``
    seq: int | None = None
    #: where the remaining chain starts (records before it expired under the retention setting)
    anchor_seq: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "records": self.records, "head_seq": self.head_seq, "head_hash": self.head_hash,
                "problem": self.problem, "seq": self.seq, "anchor_seq": self.anchor_seq}


def _anchor(session: Session) -> tuple[int, str]:
    """The retention anchor: the last deleted record named by the latest ``audit_expiry``."""
    row = session.scalars(
        sa.select(AuditRecord).where(AuditRecord.kind == EXPIRY_KIND).order_by(AuditRecord.seq.desc()).limit(1)
    ).first()
    if row is None:
        return 0, GENESIS
    return int(row.content.get("through_seq", 0)), str(row.content.get("through_hash", GENESIS))


def verify(engine: sa.Engine, *, expected_head: str | None = None) -> Verification:
    """Walk the chain; the first record edited, deleted, reordered or inserted is named."""
    with Session(engine) as session, session.begin():
        anchor_seq, anchor_hash = _anchor(session)
        seq_by_hash = {h: int(s) for s, h in session.execute(sa.select(AuditRecord.seq, AuditRecord.hash))}
        rows = session.scalars(sa.select(AuditRecord).order_by(AuditRecord.seq).execution_options(yield_per=2000))
        prev_seq, prev_hash, count = anchor_seq, anchor_hash, 0

        def fail(problem: str, seq: int) -> Verification:
            return Verification(False, count, prev_seq, prev_hash, problem, seq, anchor_seq)

        for row in rows:
            count += 1
            seq = int(row.seq)
            original = seq
            if _hash_of(row) != row.hash:
                moved = [s for s in range(seq - _MOVE_SEARCH, seq + _MOVE_SEARCH + 1)
                         if s > 0 and s != seq and _hash_of(row, seq=s) == row.hash]
                if not moved:
                    return fail(f"audit record #{seq} was edited: its content does not match its hash", seq)
                original = moved[0]
            if row.prev_hash == prev_hash and original == seq == prev_seq + 1:
                prev_seq, prev_hash = seq, row.hash
                continue
            link = seq_by_hash.get(row.prev_hash)
            if row.prev_hash == anchor_hash:
                link = anchor_seq
            if link is None:
                if seq > prev_seq + 1:
                    gone = f"#{prev_seq + 1}" if seq == prev_seq + 2 else f"#{prev_seq + 1} to #{seq - 1}"
                    return fail(
                        f"audit record {gone} was deleted: #{seq} names a predecessor not in the log", prev_seq + 1
                    )
                return fail(
                    f"audit record #{prev_seq} was edited or replaced: #{seq} names another predecessor", prev_seq
                )
            if link < prev_seq:
                return fail(
                    f"audit record #{link + 1} was inserted: "
                    f"#{seq} (originally #{original}) follows #{link} in the chain",
                    link + 1,
                )
            if original != seq or link > prev_seq:
                return fail(f"audit record #{seq} was reordered: it was #{original} and follows #{link}", seq)
            return fail(f"audit record #{seq} is out of sequence after #{prev_seq}", seq)
    if expected_head is not None and expected_head != prev_hash and expected_head not in seq_by_hash:
        return Verification(False, count, prev_seq, prev_hash,
                            f"the kept head {expected_head[:16]}... is not in the log: the chain was rewritten",
                            None, anchor_seq)
    return Verification(True, count, prev_seq, prev_hash, None, None, anchor_seq)


# -- rebuilding state from the log ---------------------------------------------------------------


@dataclass
class Replay:
    """What the log says: active blocks per (number, scope), reviews by id, the allowlist."""

    active: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    reviews: dict[int, dict[str, Any]] = field(default_factory=dict)
    allowlist: set[tuple[str, str]] = field(default_factory=set)
    entries: list[dict[str, Any]] = field(default_factory=list)


def replay(rows: Iterable[AuditRecord]) -> Replay:
    out = Replay()
    for row in rows:
        content = row.content or {}
        for e in content.get("entries", ()):
            out.entries.append(e)
            key = (e["number"], e["scope"])
            if e["action"] == "block":
                out.active[key] = e
            else:
                out.active.pop(key, None)
        for r in content.get("reviews", ()):
            out.reviews[int(r["id"])] = r
        for number, source in content.get("allowlist_added", ()):
            out.allowlist.add((number, source))
        for number, source in content.get("allowlist_removed", ()):
            out.allowlist.discard((number, source))
    return out


#: the fields of an entry and a review that the state tables must still say as logged
_ENTRY_FIELDS = (
    "number", "scope", "action", "fraud_type", "model_name", "model_version", "decided_by", "actor", "note",
)
_REVIEW_FIELDS = ("status", "resolved_by", "resolution_note", "entry_id", "detections", "model_version")


def disagreements(engine: sa.Engine, *, number: str | None = None, limit: int = 20) -> list[str]:
    """Where the entry, review and state tables say something else than the log (for ``number``,
    or everywhere): a row rewritten outside the store. At most ``limit`` lines."""
    from streaming.blocklist.models import State
    from streaming.blocklist.records import chunks

    log = replay(records(engine))
    out: list[str] = []
    entries = {e["version"]: e for e in log.entries if number is None or e["number"] == number}
    with Session(engine) as session, session.begin():
        for versions in chunks(sorted(entries)):
            for row in session.scalars(sa.select(Entry).where(Entry.id.in_(versions))):
                logged = entries.pop(row.id)
                changed = [f for f in _ENTRY_FIELDS if getattr(row, f) != logged[f]]
                if changed:
                    out.append(f"entry v{row.id}: {', '.join(changed)} differ from audit log")
        out += [f"entry v{v}: in the audit log but not in blocklist_entries" for v in sorted(entries)]
        reviews = {i: r for i, r in log.reviews.items() if number is None or r["number"] == number}
        rows = [r for ids in chunks(sorted(reviews))
                for r in session.scalars(sa.select(Review).where(Review.id.in_(ids)))]
        for row in rows:
            changed = [f for f in _REVIEW_FIELDS if getattr(row, f) != reviews[row.id][f]]
            if changed:
                out.append(f"review {row.id}: {', '.join(changed)} differ from audit log")
        query = sa.select(State).where(State.active.is_(True))
        if number is not None:
            query = query.where(State.number == number)
        active = {(s.number, s.scope): s.block_entry_id for s in session.scalars(query)}
    logged_active = {k: e["version"] for k, e in log.active.items() if number is None or k[0] == number}
    seen = {e["version"] for e in log.entries}
    for key in sorted(set(active) | set(logged_active)):
        table, logged = active.get(key), logged_active.get(key)
        # a block older than the log (or its retained part) is not the log's to judge
        if table != logged and (logged is not None or table in seen):
            out.append(f"state of {key[0]} {key[1]}: the table says block v{table}, the audit log v{logged}")
    return out[:limit]
