"""Lifting blocks outside the model's decisions: expiry, an analyst's unblock, the
registered-business allowlist.

- Expiry writes an ``unblock`` entry (``decided_by = system``), which is published like any other.
- An analyst unblock lifts the number's active blocks (all scopes, or one), puts the number on the
  cleared allowlist so the model cannot block it again, and overturns its open reviews.
- Loading the registered businesses lifts the blocks of every number that is now registered.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import sqlalchemy as sa

from streaming.blocklist import audit
from streaming.blocklist.db import as_utc, utcnow
from streaming.blocklist.decision import SCOPE_ALL, TRUNK_SCOPE_PREFIX
from streaming.blocklist.errors import BlocklistError
from streaming.blocklist.models import NUMBER_LEN, PENDING_REVIEW_STATUSES, AllowlistEntry, Entry, Review, State
from streaming.blocklist.records import AllowlistSync, EntryRecord, UnblockResult, chunks, count_entries
from streaming.blocklist.writes import StoreWrites


class LiftBlocks(StoreWrites):
    """``expire``, ``unblock`` and ``sync_registered_businesses``."""

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
            entries = [self._expire(session, versions, st, now=now) for st in lapsed]
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
