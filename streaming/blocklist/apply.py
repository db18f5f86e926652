"""Applying the model's decisions: new blocks, reviews, and spoofed calls counted per trunk.

- Idempotent apply: each decision carries a deterministic key; a key seen before is skipped, so a
  replayed Spark micro-batch creates no entry, no version and no outbox row.
- The allowlist always wins, checked again inside the write transaction (an analyst may have
  cleared the number after the policy looked).
- A block for a (number, scope) that is already actively blocked creates no version and does
  **not** extend the expiry: the TTL bounds how long a wrong, unappealed block can last, and the
  ``expires_at`` every operator already holds stays true. A number still flagged after its block
  lapsed is blocked again, as a new version with the new evidence.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from streaming.blocklist import audit
from streaming.blocklist.db import as_utc, utcnow
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
    Detection,
    Entry,
    Review,
    State,
    TrunkSpoofCount,
)
from streaming.blocklist.records import ApplyResult, EntryRecord, chunks, count_entries
from streaming.blocklist.writes import StoreWrites


def _copied(d: Decision) -> dict[str, Any]:
    """What a detection, a review and a block entry each copy from the decision."""
    return {
        "number": d.number,
        "scope": d.scope,
        "fraud_type": d.fraud_type,
        "score": d.score,
        "reasons": list(d.reasons),
        "model_name": d.model_name,
        "model_version": d.model_version,
        "reported_by": d.reported_by,
    }


class ApplyDecisions(StoreWrites):
    """``apply_decisions`` and the allowlist it checks."""

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
                    **_copied(d),
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
                        new_entries.append(self._expire(session, versions, state, now=now))
                    entry = self._new_entry(
                        session,
                        versions,
                        now=now,
                        **_copied(d),
                        action="block",
                        decided_by="model",
                        actor=d.model_name,
                        note=d.why,
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
                            **_copied(d),
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
