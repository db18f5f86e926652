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
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased

from features.numbering import NumberingPlan, load_numbering_plan
from streaming.blocklist import metrics
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

#: rows per ``IN (...)`` list: far below SQLite's and PostgreSQL's parameter limits
_CHUNK = 500


def _chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for i in range(0, len(values), _CHUNK):
        yield values[i : i + _CHUNK]


@dataclass(frozen=True)
class EntryRecord:
    """One version of the blocklist, detached from any session."""

    version: int
    number: str
    scope: str
    action: str
    fraud_type: str | None
    score: float | None
    reasons: tuple[str, ...]
    model_name: str | None
    model_version: str | None
    decided_by: str
    actor: str | None
    note: str | None
    reported_by: str | None
    idempotency_key: str
    lifts_version: int | None
    created_at: dt.datetime
    expires_at: dt.datetime | None

    @classmethod
    def of(cls, row: Entry) -> EntryRecord:
        return cls(
            version=row.id,
            number=row.number,
            scope=row.scope,
            action=row.action,
            fraud_type=row.fraud_type,
            score=row.score,
            reasons=tuple(row.reasons or ()),
            model_name=row.model_name,
            model_version=row.model_version,
            decided_by=row.decided_by,
            actor=row.actor,
            note=row.note,
            reported_by=row.reported_by,
            idempotency_key=row.idempotency_key,
            lifts_version=row.lifts_entry_id,
            created_at=as_utc(row.created_at),
            expires_at=as_utc(row.expires_at) if row.expires_at else None,
        )


@dataclass
class ApplyResult:
    """What one ``apply_decisions`` call changed."""

    #: new versions, in order (each goes to every operator)
    entries: list[EntryRecord] = field(default_factory=list)
    #: decisions whose idempotency key was seen before (a replayed batch)
    replayed: int = 0
    already_blocked: int = 0
    reviews_opened: int = 0
    reviews_updated: int = 0
    #: block- or review-level decisions the allowlist (or the policy) turned into allow
    allowed: int = 0
    #: spoofed calls counted against their ingress trunk
    trunk_calls: int = 0


@dataclass(frozen=True)
class UnblockResult:
    entries: list[EntryRecord]
    #: the number is on the cleared allowlist (it was already, or now is)
    cleared: bool
    reviews_overturned: int
    #: the same request_id was handled before: nothing changed this time
    replayed: bool


@dataclass(frozen=True)
class AllowlistSync:
    added: int
    removed: int
    #: unblocks of numbers that were blocked and are now registered businesses
    entries: list[EntryRecord]


def _count(entries: Iterable[EntryRecord]) -> None:
    # after the commit: a rolled-back transaction published nothing
    for e in entries:
        metrics.ENTRIES.labels(action=e.action, decided_by=e.decided_by).inc()


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


class BlocklistStore:
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

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

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
    def _allowlist_sources(session: Session, numbers: set[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for chunk in _chunks(sorted(numbers)):
            for number, source in session.execute(
                sa.select(AllowlistEntry.number, AllowlistEntry.source).where(AllowlistEntry.number.in_(chunk))
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
            for chunk in _chunks(list(unique)):
                seen.update(
                    session.scalars(sa.select(Detection.idempotency_key).where(Detection.idempotency_key.in_(chunk)))
                )
            todo = [d for key, d in unique.items() if key not in seen]
            result.replayed += len(unique) - len(todo)
            if not todo:
                return result
            numbers = sorted({d.number for d in todo})
            sources = self._allowlist_sources(session, set(numbers))
            states: dict[tuple[str, str], State] = {}
            reviews: dict[tuple[str, str, str], Review] = {}
            for chunk in _chunks(numbers):
                for st in session.scalars(sa.select(State).where(State.number.in_(chunk)).with_for_update()):
                    states[(st.number, st.scope)] = st
                for rv in session.scalars(
                    sa.select(Review).where(Review.number.in_(chunk), Review.status == "open").order_by(Review.id)
                ):
                    reviews.setdefault((rv.number, rv.scope, rv.fraud_type), rv)
            trunks = self._trunk_rows(session, todo)
            new_entries: list[Entry] = []
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
                if d.fraud_type == SPOOFED_CALL and det.outcome != "allowed":
                    self._count_trunk(session, trunks, d, now=now)
                    result.trunk_calls += 1
                session.add(det)
            session.flush()
            result.entries = [EntryRecord.of(e) for e in new_entries]
        _count(result.entries)
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
            records = [EntryRecord.of(e) for e in entries]
        _count(records)
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
                sa.select(Review).where(Review.number == number, Review.status == "open").with_for_update()
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
            result = UnblockResult(
                [EntryRecord.of(e) for e in entries], cleared=True, reviews_overturned=len(overturned), replayed=False
            )
        _count(result.entries)
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
            for chunk in _chunks(removed):
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
            for chunk in _chunks(added):
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
            sync = AllowlistSync(len(added), len(removed), [EntryRecord.of(e) for e in entries])
        _count(sync.entries)
        return sync

    # -- reads ------------------------------------------------------------------------------------

    def head_version(self) -> int:
        with self._read() as session:
            return int(session.scalar(sa.select(sa.func.coalesce(sa.func.max(Entry.id), 0))) or 0)

    def entries_since(self, since: int, *, limit: int = 1000) -> list[EntryRecord]:
        """Versions above ``since``, oldest first: incremental sync."""
        with self._read() as session:
            rows = session.scalars(sa.select(Entry).where(Entry.id > since).order_by(Entry.id).limit(limit))
            return [EntryRecord.of(e) for e in rows]

    def entries_by_version(self, versions: Iterable[int]) -> dict[int, EntryRecord]:
        out: dict[int, EntryRecord] = {}
        with self._read() as session:
            for chunk in _chunks(sorted(set(versions))):
                out.update(
                    (e.id, EntryRecord.of(e)) for e in session.scalars(sa.select(Entry).where(Entry.id.in_(chunk)))
                )
        return out

    def snapshot(self, *, at_version: int | None = None) -> tuple[int, list[EntryRecord]]:
        """(version, the block entries in force at that version), computed from the append-only
        log alone, so the answer is consistent without any isolation level."""
        with self._read() as session:
            head = int(session.scalar(sa.select(sa.func.coalesce(sa.func.max(Entry.id), 0))) or 0)
            version = head if at_version is None else min(at_version, head)
            latest = (
                sa.select(sa.func.max(Entry.id).label("id"))
                .where(Entry.id <= version)
                .group_by(Entry.number, Entry.scope)
                .subquery()
            )
            rows = session.scalars(
                sa.select(Entry)
                .join(latest, Entry.id == latest.c.id)
                .where(Entry.action == "block")
                .order_by(Entry.number, Entry.scope)
            )
            return version, [EntryRecord.of(e) for e in rows]

    def state(self, number: str, scope: str = SCOPE_ALL) -> State | None:
        with self._read() as session:
            return session.get(State, (number, scope))

    def is_blocked(self, number: str, scope: str = SCOPE_ALL, *, now: dt.datetime | None = None) -> bool:
        st = self.state(number, scope)
        now = as_utc(now or utcnow())
        return bool(st and st.active and (st.expires_at is None or st.expires_at > now))

    def open_reviews(self, *, limit: int = 100) -> list[Review]:
        with self._read() as session:
            return list(
                session.scalars(
                    sa.select(Review).where(Review.status == "open").order_by(Review.created_at).limit(limit)
                )
            )

    def trunk_counts(self) -> list[TrunkSpoofCount]:
        with self._read() as session:
            return list(
                session.scalars(
                    sa.select(TrunkSpoofCount).order_by(
                        (TrunkSpoofCount.blocked_calls + TrunkSpoofCount.review_calls).desc(),
                        TrunkSpoofCount.operator,
                        TrunkSpoofCount.trunk_id,
                    )
                )
            )

    def history(self, number: str) -> NumberHistory:
        """Everything the store knows about one number, oldest first."""
        with self._read() as session:
            return NumberHistory(
                number=number,
                special=self.plan.special_numbers().get(number),
                allowlist=list(session.scalars(sa.select(AllowlistEntry).where(AllowlistEntry.number == number))),
                states=list(session.scalars(sa.select(State).where(State.number == number).order_by(State.scope))),
                entries=[
                    EntryRecord.of(e)
                    for e in session.scalars(sa.select(Entry).where(Entry.number == number).order_by(Entry.id))
                ],
                detections=list(
                    session.scalars(sa.select(Detection).where(Detection.number == number).order_by(Detection.id))
                ),
                reviews=list(session.scalars(sa.select(Review).where(Review.number == number).order_by(Review.id))),
            )

    def model_audit(self) -> list[dict[str, Any]]:
        """Per model name and version: blocks it issued, and how they ended (overturned by an
        analyst, lifted for the allowlist, expired), plus its reviews by status."""
        lift = aliased(Entry)
        with self._read() as session:
            blocks = session.execute(
                sa.select(
                    Entry.model_name,
                    Entry.model_version,
                    sa.func.count(Entry.id),
                    sa.func.count(lift.id).filter(lift.decided_by == "analyst"),
                    sa.func.count(lift.id).filter(lift.actor == "allowlist"),
                    sa.func.count(lift.id).filter(lift.actor == "expiry"),
                )
                .outerjoin(lift, lift.lifts_entry_id == Entry.id)
                .where(Entry.action == "block", Entry.decided_by == "model")
                .group_by(Entry.model_name, Entry.model_version)
            ).all()
            reviews = session.execute(
                sa.select(Review.model_name, Review.model_version, Review.status, sa.func.count(Review.id)).group_by(
                    Review.model_name, Review.model_version, Review.status
                )
            ).all()
        out: dict[tuple[str | None, str | None], dict[str, Any]] = {}

        def row(name: str | None, version: str | None) -> dict[str, Any]:
            return out.setdefault(
                (name, version),
                {
                    "model_name": name,
                    "model_version": version,
                    "blocked": 0,
                    "overturned": 0,
                    "lifted_for_allowlist": 0,
                    "expired": 0,
                    "reviews_open": 0,
                    "reviews_confirmed": 0,
                    "reviews_overturned": 0,
                },
            )

        for name, version, blocked, overturned, allowlisted, expired in blocks:
            r = row(name, version)
            r.update(blocked=blocked, overturned=overturned, lifted_for_allowlist=allowlisted, expired=expired)
        for name, version, status, n in reviews:
            row(name, version)[f"reviews_{status}"] = n
        return sorted(out.values(), key=lambda r: (str(r["model_name"]), str(r["model_version"])))

    def counts(self, *, now: dt.datetime | None = None) -> dict[str, int]:
        """Gauges for ``/metrics``: head version, blocks in force, open reviews, outbox backlog."""
        now = as_utc(now or utcnow())
        with self._read() as session:
            return {
                "head_version": int(session.scalar(sa.select(sa.func.coalesce(sa.func.max(Entry.id), 0))) or 0),
                "active_blocks": int(
                    session.scalar(sa.select(sa.func.count()).select_from(State).where(State.active.is_(True))) or 0
                ),
                "open_reviews": int(
                    session.scalar(sa.select(sa.func.count()).select_from(Review).where(Review.status == "open")) or 0
                ),
                "pending_deliveries": int(
                    session.scalar(sa.select(sa.func.count()).select_from(Delivery).where(Delivery.status == "pending"))
                    or 0
                ),
                "failed_deliveries": int(
                    session.scalar(sa.select(sa.func.count()).select_from(Delivery).where(Delivery.status == "failed"))
                    or 0
                ),
            }


@dataclass(frozen=True)
class NumberHistory:
    number: str
    #: ``emergency`` / ``short_code`` when the numbering plan always allows it
    special: str | None
    allowlist: list[AllowlistEntry]
    states: list[State]
    entries: list[EntryRecord]
    detections: list[Detection]
    reviews: list[Review]


def read_numbers(path: str | Path) -> list[str]:
    """Numbers from a CSV or Parquet file with an ``a_number`` or ``number`` column (the
    simulator's registered-businesses file has ``a_number``)."""
    import pandas as pd

    path = Path(path)
    try:
        if path.suffix.lower() in {".parquet", ".pq"} or path.is_dir():
            frame = pd.read_parquet(path)
        elif path.suffix.lower() in {".csv", ".txt"}:
            frame = pd.read_csv(path, dtype=str)
        else:
            raise BlocklistError(f"{path}: expected a .csv or .parquet file of numbers")
    except (OSError, ValueError) as exc:
        raise BlocklistError(f"{path}: cannot read numbers ({str(exc).splitlines()[0]})") from None
    column = next((c for c in ("a_number", "number") if c in frame.columns), None)
    if column is None:
        raise BlocklistError(f"{path}: no 'a_number' or 'number' column (has {', '.join(map(str, frame.columns))})")
    return [str(v).strip() for v in frame[column].dropna() if str(v).strip()]
