"""The blocklist store: decisions in, versioned entries out.

Every change to what operators must enforce is an *entry* (``block`` or ``unblock``) keyed by
(number, scope); its id is its version, a global sequence that only grows. Every write
transaction first takes the lock on ``blocklist_sequence`` (a row lock on PostgreSQL, the write
lock on SQLite), so versions are handed out and committed in the same order: a reader that follows
``version > cursor`` (Kafka publisher, ``GET /blocklist?since=``) can never skip a version that
commits late. Writers are few (the streaming job once per micro-batch, analysts, expiry), so
serialising them costs nothing that matters.

Rules:

- Idempotent apply: each decision carries a deterministic key; a key seen before is skipped, so a
  replayed Spark micro-batch creates no entry, no version and no outbox row.
- The allowlist always wins, checked again inside the write transaction (an analyst may have
  cleared the number after the policy looked).
- A block for a (number, scope) that is already actively blocked creates no version and does
  **not** extend the expiry: the TTL bounds how long a wrong, unappealed block can last, and the
  ``expires_at`` every operator already holds stays true. A number still flagged after its block
  lapsed is blocked again, as a new version with the new evidence.
- Expiry writes an ``unblock`` entry (``decided_by = system``), which is published like any other.
- An analyst unblock lifts the number's active blocks (all scopes, or one), puts the number on the
  cleared allowlist so the model cannot block it again, and overturns its open reviews.

This module holds the writes; the reads are :mod:`streaming.blocklist.queries` (inherited by
:class:`BlocklistStore`), the records both hand out :mod:`streaming.blocklist.records`.
"""

from __future__ import annotations

__all__ = [
    "AllowlistSync",
    "ApplyResult",
    "BlocklistStore",
    "EntryRecord",
    "NumberHistory",
    "UnblockResult",
    "read_numbers",
]

import datetime as dt
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from features.numbering import NumberingPlan, load_numbering_plan
from streaming.blocklist import audit
from streaming.blocklist.db import as_utc, make_engine, utcnow, writer
from streaming.blocklist.decision import (
    MAX_KEY_LEN,
    SCOPE_ALL,
    SPOOFED_CALL,
    TRUNK_SCOPE_PREFIX,
    Decision,
    StaticAllowlist,
    allowlist_reason,
)
from streaming.blocklist.errors import BlocklistError
from streaming.blocklist.models import (
    NUMBER_LEN,
    PENDING_REVIEW_STATUSES,
    TRUNK_ID_LEN,
    AllowlistEntry,
    Delivery,
    Detection,
    Entry,
    EntrySequence,
    Review,
    State,
    TrunkSpoofCount,
)
from streaming.blocklist.numbers_file import read_numbers
from streaming.blocklist.queries import StoreReads
from streaming.blocklist.records import (
    AllowlistSync,
    ApplyResult,
    EntryRecord,
    NumberHistory,
    UnblockResult,
    chunks,
    count_entries,
)


class _Versions:
    """The version sequence, locked for the life of one write transaction."""

    def __init__(self, session: Session) -> None:
        self._session = session
        # a no-op UPDATE takes the row lock (PostgreSQL) or the write lock (SQLite) first, so
        # every writer queues here before it reads anything it will decide on
        session.execute(sa.update(EntrySequence).where(EntrySequence.name == "entry").values(value=EntrySequence.value))
        value = session.scalar(sa.select(EntrySequence.value).where(EntrySequence.name == "entry"))
        if value is None:
            raise BlocklistError("the blocklist database is not initialised: run `simguard blocklist migrate`")
        self._start = self._next = int(value)

    def next(self) -> int:
        self._next += 1
        return self._next

    def save(self) -> None:
        if self._next != self._start:
            self._session.execute(
                sa.update(EntrySequence).where(EntrySequence.name == "entry").values(value=self._next)
            )


class BlocklistStore(StoreReads):
    """The versioned blocklist on SQLite or PostgreSQL.

    ``webhook_operators``: operators with a webhook; each new entry gets one outbox row per such
    operator in the same transaction (``streaming.blocklist.publish_webhook`` delivers them).
    """

    def __init__(
        self,
        engine: sa.Engine,
        *,
        webhook_operators: Iterable[str] = (),
        plan: NumberingPlan | None = None,
    ) -> None:
        self.engine = engine
        self._writer = writer(engine)
        self.webhook_operators = tuple(webhook_operators)
        self.plan = plan or load_numbering_plan()

    @classmethod
    def open(
        cls,
        url: str,
        *,
        webhook_operators: Iterable[str] = (),
        plan: NumberingPlan | None = None,
        migrate: bool = True,
    ) -> BlocklistStore:
        """Connect to ``url`` and (by default) bring the schema to the latest migration."""
        from streaming.blocklist.migrate import upgrade

        engine = make_engine(url)
        if migrate:
            upgrade(engine)
        return cls(engine, webhook_operators=webhook_operators, plan=plan)

    def close(self) -> None:
        self.engine.dispose()

    # -- transactions ---------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[tuple[Session, _Versions]]:
        with Session(self._writer, expire_on_commit=False, autoflush=True) as session, session.begin():
            versions = _Versions(session)
            yield session, versions
            versions.save()

    def _new_entry(self, session: Session, versions: _Versions, *, now: dt.datetime, **fields: Any) -> Entry:
        entry = Entry(id=versions.next(), created_at=now, **fields)
        session.add(entry)
        # without relationship() the unit of work does not order inserts across tables by
        # foreign key: the entry must exist before its outbox rows, state and detection do
        session.flush()
        for operator in self.webhook_operators:
            session.add(
                Delivery(
                    entry_id=entry.id,
                    operator=operator,
                    status="pending",
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
            )
        return entry

    def _lift(
        self,
        session: Session,
        versions: _Versions,
        state: State,
        *,
        now: dt.datetime,
        decided_by: str,
        actor: str,
        note: str,
        key: str,
    ) -> Entry:
        """An unblock entry ending ``state``'s block; the state becomes inactive."""
        block_id = state.block_entry_id
        entry = self._new_entry(
            session,
            versions,
            now=now,
            number=state.number,
            scope=state.scope,
            action="unblock",
            fraud_type=state.fraud_type,
            reasons=[],
            decided_by=decided_by,
            actor=actor,
            note=note,
            idempotency_key=key,
            lifts_entry_id=block_id,
        )
        state.active = False
        state.version = entry.id
        state.block_entry_id = None
        state.expires_at = None
        state.updated_at = now
        return entry

    # -- decisions --------------------------------------------------------------------------------

    def allowlist_for(self, numbers: Iterable[str]) -> StaticAllowlist:
        """The allowlist as it stands for ``numbers`` (one query per 500 numbers)."""
        with self._read() as session:
            sources = self._allowlist_sources(session, set(numbers))
        return StaticAllowlist(
            plan=self.plan,
            registered_businesses=frozenset(n for n, s in sources.items() if s == "registered_business"),
            analyst_cleared=frozenset(n for n, s in sources.items() if s == "analyst_cleared"),
        )

    @staticmethod
    def _allowlist_sources(session: Session, numbers: set[str], now: dt.datetime | None = None) -> dict[str, str]:
        now = now or utcnow()
        out: dict[str, str] = {}
        for chunk in chunks(sorted(numbers)):
            for number, source in session.execute(
                sa.select(AllowlistEntry.number, AllowlistEntry.source).where(
                    AllowlistEntry.number.in_(chunk),
                    # a console clearance lapses (migration 0003); the others have no expiry
                    sa.or_(AllowlistEntry.expires_at.is_(None), AllowlistEntry.expires_at > now),
                )
            ):
                # an analyst's clearance is the stronger statement; keep it when both apply
                if out.get(number) != "analyst_cleared":
                    out[number] = source
        return out

    @staticmethod
    def _check(decision: Decision) -> None:
        if decision.fraud_type == SPOOFED_CALL and not decision.scope.startswith(TRUNK_SCOPE_PREFIX):
            # the presented CLI belongs to a victim: only a trunk-scoped rule may name it
            raise BlocklistError(
                f"a spoofed call may only give a trunk-scoped rule, not scope {decision.scope!r} for {decision.number}"
            )
        if decision.scope != SCOPE_ALL and not decision.scope.startswith(TRUNK_SCOPE_PREFIX):
            raise BlocklistError(f"unknown scope {decision.scope!r}: use 'all' or 'trunk:<trunk type>'")
        if len(decision.idempotency_key) > MAX_KEY_LEN:
            raise BlocklistError(
                f"idempotency key longer than {MAX_KEY_LEN} characters: {decision.idempotency_key[:60]}..."
            )
        if len(decision.number) > NUMBER_LEN:
            raise BlocklistError(f"number {decision.number[:40]!r} is longer than {NUMBER_LEN} characters")

    def apply_decisions(self, decisions: Iterable[Decision], *, now: dt.datetime | None = None) -> ApplyResult:
        """Record decisions in one transaction; safe to call again with the same decisions.

        ``now`` stamps the entries and starts their TTL (default: the wall clock).
        """
        now = as_utc(now or utcnow())
        result = ApplyResult()
        unique: dict[str, Decision] = {}
        for d in decisions:
            self._check(d)
            if d.idempotency_key in unique:
                result.replayed += 1
                continue
            unique[d.idempotency_key] = d
        if not unique:
            return result
        with self._write() as (session, versions):
            seen: set[str] = set()
            for chunk in chunks(list(unique)):
                seen.update(
                    session.scalars(sa.select(Detection.idempotency_key).where(Detection.idempotency_key.in_(chunk)))
                )
            todo = [d for key, d in unique.items() if key not in seen]
            result.replayed += len(unique) - len(todo)
            if not todo:
                return result
            numbers = sorted({d.number for d in todo})
            sources = self._allowlist_sources(session, set(numbers), now)
            states: dict[tuple[str, str], State] = {}
            reviews: dict[tuple[str, str, str], Review] = {}
            for chunk in chunks(numbers):
                for st in session.scalars(sa.select(State).where(State.number.in_(chunk)).with_for_update()):
                    states[(st.number, st.scope)] = st
                for rv in session.scalars(
                    sa.select(Review)
                    .where(Review.number.in_(chunk), Review.status.in_(PENDING_REVIEW_STATUSES))
                    .order_by(Review.id)
                ):
                    reviews.setdefault((rv.number, rv.scope, rv.fraud_type), rv)
            trunks = self._trunk_rows(session, todo)
            new_entries: list[Entry] = []
            touched: dict[int, Review] = {}
            trunk_calls: dict[tuple[str, str, str], list[int]] = {}
            for d in todo:
                det = Detection(
                    idempotency_key=d.idempotency_key,
                    number=d.number,
                    scope=d.scope,
                    fraud_type=d.fraud_type,
                    score=d.score,
                    reasons=list(d.reasons),
                    model_name=d.model_name,
                    model_version=d.model_version,
                    reported_by=d.reported_by,
                    trunk_type=d.trunk_type,
                    trunk_id=d.trunk_id[:TRUNK_ID_LEN] if d.trunk_id else d.trunk_id,
                    why=d.why[:255],
                    observed_at=as_utc(d.observed_at),
                    created_at=now,
                    evidence=dict(d.evidence) if d.evidence is not None else None,
                )
                why_allowed = allowlist_reason(d.number, plan=self.plan, sources=sources)
                state = states.get((d.number, d.scope))
                in_force = state is not None and state.active and (state.expires_at is None or state.expires_at > now)
                if why_allowed is not None or d.action == "allow":
                    det.outcome = "allowed"
                    det.why = (why_allowed or d.why)[:255]
                    result.allowed += 1
                elif in_force:
                    assert state is not None
                    det.outcome = "already_blocked"
                    det.entry_id = state.block_entry_id
                    result.already_blocked += 1
                elif d.action == "block":
                    if state is not None and state.active:
                        # lapsed but not yet expired: write the expiry first, so every block in
                        # the log ends with an unblock that says why
                        new_entries.append(
                            self._lift(
                                session,
                                versions,
                                state,
                                now=now,
                                decided_by="system",
                                actor="expiry",
                                note=f"{state.fraud_type} block of version {state.block_entry_id} reached its TTL",
                                key=f"expire:{state.block_entry_id}",
                            )
                        )
                    entry = self._new_entry(
                        session,
                        versions,
                        now=now,
                        number=d.number,
                        scope=d.scope,
                        action="block",
                        fraud_type=d.fraud_type,
                        score=d.score,
                        reasons=list(d.reasons),
                        model_name=d.model_name,
                        model_version=d.model_version,
                        decided_by="model",
                        actor=d.model_name,
                        note=d.why,
                        reported_by=d.reported_by,
                        idempotency_key=d.idempotency_key,
                        expires_at=now + dt.timedelta(hours=d.ttl_hours),
                    )
                    new_entries.append(entry)
                    if state is None:
                        state = State(number=d.number, scope=d.scope)
                        session.add(state)
                        states[(d.number, d.scope)] = state
                    state.active = True
                    state.version = entry.id
                    state.block_entry_id = entry.id
                    state.fraud_type = d.fraud_type
                    state.expires_at = entry.expires_at
                    state.updated_at = now
                    det.outcome = "blocked"
                    det.entry_id = entry.id
                else:
                    review = reviews.get((d.number, d.scope, d.fraud_type))
                    if review is None:
                        review = Review(
                            number=d.number,
                            scope=d.scope,
                            fraud_type=d.fraud_type,
                            score=d.score,
                            reasons=list(d.reasons),
                            model_name=d.model_name,
                            model_version=d.model_version,
                            reported_by=d.reported_by,
                            status="open",
                            detections=1,
                            created_at=now,
                            last_seen_at=now,
                        )
                        session.add(review)
                        session.flush()  # the detection row refers to the review's id
                        reviews[(d.number, d.scope, d.fraud_type)] = review
                        result.reviews_opened += 1
                    else:
                        review.detections += 1
                        review.last_seen_at = now
                        if d.score > review.score:
                            review.score = d.score
                            review.reasons = list(d.reasons)
                            review.model_name = d.model_name
                            review.model_version = d.model_version
                        result.reviews_updated += 1
                    det.outcome = "review"
                    det.review_id = review.id
                    touched[review.id] = review
                if d.fraud_type == SPOOFED_CALL and det.outcome != "allowed":
                    self._count_trunk(session, trunks, d, now=now)
                    result.trunk_calls += 1
                    calls = trunk_calls.setdefault(self._trunk_key(d), [0, 0])
                    calls[0 if d.action == "block" else 1] += 1
                session.add(det)
            session.flush()
            if new_entries or touched or trunk_calls:
                audit.append(
                    session,
                    kind="model_decisions",
                    actor=",".join(sorted({d.model_name or "model" for d in todo})),
                    content={
                        "entries": [audit.entry_content(e) for e in new_entries],
                        "reviews": [audit.review_content(r) for _, r in sorted(touched.items())],
                        # [operator, trunk type, trunk id, calls blocked, calls to review]
                        "trunk_calls": [[*k, *v] for k, v in sorted(trunk_calls.items())],
                    },
                    at=now,
                )
            result.entries = [EntryRecord.of(e) for e in new_entries]
        count_entries(result.entries)
        return result

    @staticmethod
    def _trunk_key(d: Decision) -> tuple[str, str, str]:
        return (d.reported_by or "", d.trunk_type or "", (d.trunk_id or "")[:TRUNK_ID_LEN])

    def _trunk_rows(self, session: Session, decisions: list[Decision]) -> dict[tuple[str, str, str], TrunkSpoofCount]:
        keys = {self._trunk_key(d) for d in decisions if d.fraud_type == SPOOFED_CALL}
        rows: dict[tuple[str, str, str], TrunkSpoofCount] = {}
        for op, ttype, tid in keys:
            row = session.get(TrunkSpoofCount, (op, ttype, tid), with_for_update=True)
            if row is not None:
                rows[(op, ttype, tid)] = row
        return rows

    def _count_trunk(
        self, session: Session, rows: dict[tuple[str, str, str], TrunkSpoofCount], d: Decision, *, now: dt.datetime
    ) -> None:
        key = self._trunk_key(d)
        row = rows.get(key)
        seen = as_utc(d.observed_at)
        if row is None:
            row = TrunkSpoofCount(
                operator=key[0],
                trunk_type=key[1],
                trunk_id=key[2],
                blocked_calls=0,
                review_calls=0,
                first_seen_at=seen,
                last_seen_at=seen,
            )
            session.add(row)
            rows[key] = row
        if d.action == "block":
            row.blocked_calls += 1
        else:
            row.review_calls += 1
        row.first_seen_at = min(row.first_seen_at, seen)
        row.last_seen_at = max(row.last_seen_at, seen)

    # -- expiry, analysts, allowlist ---------------------------------------------------------------

    def expire(self, now: dt.datetime | None = None) -> list[EntryRecord]:
        """Lift every block whose TTL has passed; each lift is an unblock entry to publish."""
        now = as_utc(now or utcnow())
        with self._write() as (session, versions):
            lapsed = session.scalars(
                sa.select(State)
                .where(State.active.is_(True), State.expires_at.is_not(None), State.expires_at <= now)
                .order_by(State.expires_at, State.number, State.scope)
                .with_for_update()
            ).all()
            entries = [
                self._lift(
                    session,
                    versions,
                    st,
                    now=now,
                    decided_by="system",
                    actor="expiry",
                    note=f"{st.fraud_type} block of version {st.block_entry_id} reached its TTL",
                    key=f"expire:{st.block_entry_id}",
                )
                for st in lapsed
            ]
            session.flush()
            if entries:
                audit.append(session, kind="expiry", actor="expiry",
                             content={"entries": [audit.entry_content(e) for e in entries]}, at=now)
            records = [EntryRecord.of(e) for e in entries]
        count_entries(records)
        return records

    def unblock(
        self,
        number: str,
        *,
        analyst: str,
        reason: str,
        request_id: str,
        scope: str | None = None,
        now: dt.datetime | None = None,
    ) -> UnblockResult:
        """An analyst clears ``number``: its active blocks (every scope, or ``scope``) are lifted,
        it joins the cleared allowlist, its open reviews are overturned. The same ``request_id``
        again changes nothing and returns the first answer."""
        now = as_utc(now or utcnow())
        if not request_id or not analyst or not reason:
            raise BlocklistError("an unblock needs a request_id, the analyst's name and a reason")
        if len(number) > NUMBER_LEN:
            raise BlocklistError(f"number {number[:40]!r} is longer than {NUMBER_LEN} characters")
        if scope is not None and scope != SCOPE_ALL and not scope.startswith(TRUNK_SCOPE_PREFIX):
            raise BlocklistError(f"unknown scope {scope!r}: use 'all' or 'trunk:<trunk type>'")
        prefix = f"analyst:{request_id}:"
        with self._write() as (session, versions):
            # a key is ``analyst:<request_id>:<scope>``: the prefix also matches a longer id that
            # starts with this one (``case`` and ``case:7``), so keep only the exact keys
            prior = [
                e
                for e in session.scalars(
                    sa.select(Entry).where(Entry.idempotency_key.startswith(prefix, autoescape=True)).order_by(Entry.id)
                )
                if e.idempotency_key == f"{prefix}{e.scope}"
            ]
            cleared_row = session.get(AllowlistEntry, (number, "analyst_cleared"))
            if prior or (cleared_row is not None and cleared_row.request_id == request_id):
                if any(e.number != number for e in prior):
                    raise BlocklistError(f"request_id {request_id!r} was already used to unblock another number")
                return UnblockResult(
                    [EntryRecord.of(e) for e in prior], cleared=True, reviews_overturned=0, replayed=True
                )
            if cleared_row is None:
                session.add(
                    AllowlistEntry(
                        number=number,
                        source="analyst_cleared",
                        added_by=analyst,
                        note=reason,
                        request_id=request_id,
                        created_at=now,
                    )
                )
            query = sa.select(State).where(State.number == number, State.active.is_(True))
            if scope is not None:
                query = query.where(State.scope == scope)
            states = session.scalars(query.order_by(State.scope).with_for_update()).all()
            entries = [
                self._lift(
                    session,
                    versions,
                    st,
                    now=now,
                    decided_by="analyst",
                    actor=analyst,
                    note=reason,
                    key=f"{prefix}{st.scope}",
                )
                for st in states
            ]
            overturned = session.scalars(
                sa.select(Review)
                .where(Review.number == number, Review.status.in_(PENDING_REVIEW_STATUSES))
                .with_for_update()
            ).all()
            for rv in overturned:
                rv.status = "overturned"
                rv.resolved_at = now
                rv.resolved_by = analyst
                rv.resolution_note = reason
            by_scope = {e.scope: e.id for e in entries}
            for rv in overturned:
                rv.entry_id = by_scope.get(rv.scope)
            session.flush()
            audit.append(
                session,
                kind="unblock",
                actor=analyst,
                content={
                    "number": number,
                    "scope": scope,
                    "request_id": request_id,
                    "reason": reason,
                    "entries": [audit.entry_content(e) for e in entries],
                    "reviews": [audit.review_content(r) for r in overturned],
                    "allowlist_added": [[number, "analyst_cleared"]] if cleared_row is None else [],
                },
                at=now,
            )
            result = UnblockResult(
                [EntryRecord.of(e) for e in entries], cleared=True, reviews_overturned=len(overturned), replayed=False
            )
        count_entries(result.entries)
        return result

    def sync_registered_businesses(
        self, numbers: Iterable[str], *, source: str = "registered businesses", now: dt.datetime | None = None
    ) -> AllowlistSync:
        """Make the registered-business allowlist exactly ``numbers``; blocks of numbers that are
        now registered are lifted (the allowlist always wins)."""
        now = as_utc(now or utcnow())
        wanted = {n.strip() for n in numbers if isinstance(n, str) and n.strip()}
        too_long = [n for n in wanted if len(n) > NUMBER_LEN]
        if too_long:
            raise BlocklistError(f"{source}: number {too_long[0][:40]!r} is longer than {NUMBER_LEN} characters")
        with self._write() as (session, versions):
            current = set(
                session.scalars(sa.select(AllowlistEntry.number).where(AllowlistEntry.source == "registered_business"))
            )
            added = sorted(wanted - current)
            removed = sorted(current - wanted)
            for chunk in chunks(removed):
                session.execute(
                    sa.delete(AllowlistEntry).where(
                        AllowlistEntry.source == "registered_business", AllowlistEntry.number.in_(chunk)
                    )
                )
            session.add_all(
                AllowlistEntry(number=n, source="registered_business", added_by="system", note=source, created_at=now)
                for n in added
            )
            entries: list[Entry] = []
            for chunk in chunks(added):
                for st in session.scalars(
                    sa.select(State)
                    .where(State.number.in_(chunk), State.active.is_(True))
                    .order_by(State.number, State.scope)
                    .with_for_update()
                ):
                    entries.append(
                        self._lift(
                            session,
                            versions,
                            st,
                            now=now,
                            decided_by="system",
                            actor="allowlist",
                            note=f"registered business number ({source})",
                            key=f"allowlist:registered_business:{st.block_entry_id}",
                        )
                    )
            session.flush()
            if added or removed or entries:
                audit.append(
                    session,
                    kind="allowlist",
                    actor="system",
                    content={
                        "source": source,
                        "allowlist_added": [[n, "registered_business"] for n in added],
                        "allowlist_removed": [[n, "registered_business"] for n in removed],
                        "entries": [audit.entry_content(e) for e in entries],
                    },
                    at=now,
                )
            sync = AllowlistSync(len(added), len(removed), [EntryRecord.of(e) for e in entries])
        count_entries(sync.entries)
        return sync
