"""Reading the blocklist: versions, snapshots, a number's history, audits and gauges.

:class:`StoreReads` is the read half of :class:`~streaming.blocklist.store.BlocklistStore`; each
read is one short transaction on the store's engine.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased

from features.numbering import NumberingPlan
from streaming.blocklist.db import as_utc, utcnow
from streaming.blocklist.decision import SCOPE_ALL
from streaming.blocklist.models import AllowlistEntry, Delivery, Detection, Entry, Review, State, TrunkSpoofCount
from streaming.blocklist.records import EntryRecord, NumberHistory, chunks


class StoreReads:
    """Queries over the store's tables; needs ``engine`` and ``plan``."""

    engine: sa.Engine
    plan: NumberingPlan

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

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
            for chunk in chunks(sorted(set(versions))):
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
