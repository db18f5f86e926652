"""Write transactions on the blocklist: the version lock, new entries and lifted blocks.

Every change to what operators must enforce is an *entry* (``block`` or ``unblock``) keyed by
(number, scope); its id is its version, a global sequence that only grows. Every write
transaction first takes the lock on ``blocklist_sequence`` (a row lock on PostgreSQL, the write
lock on SQLite), so versions are handed out and committed in the same order: a reader that follows
``version > cursor`` (Kafka publisher, ``GET /blocklist?since=``) can never skip a version that
commits late. Writers are few (the streaming job once per micro-batch, analysts, expiry), so
serialising them costs nothing that matters.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from streaming.blocklist.errors import BlocklistError
from streaming.blocklist.models import Delivery, Entry, EntrySequence, State
from streaming.blocklist.queries import StoreReads


class Versions:
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


class StoreWrites(StoreReads):
    """The write transactions every writer shares; needs ``_writer`` and ``webhook_operators``."""

    _writer: sa.Engine
    webhook_operators: tuple[str, ...]

    @contextmanager
    def _write(self) -> Iterator[tuple[Session, Versions]]:
        with Session(self._writer, expire_on_commit=False, autoflush=True) as session, session.begin():
            versions = Versions(session)
            yield session, versions
            versions.save()

    def _new_entry(self, session: Session, versions: Versions, *, now: dt.datetime, **fields: Any) -> Entry:
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
        versions: Versions,
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

    def _expire(self, session: Session, versions: Versions, state: State, *, now: dt.datetime) -> Entry:
        """The unblock that ends ``state``'s block at its TTL."""
        return self._lift(
            session,
            versions,
            state,
            now=now,
            decided_by="system",
            actor="expiry",
            note=f"{state.fraud_type} block of version {state.block_entry_id} reached its TTL",
            key=f"expire:{state.block_entry_id}",
        )
