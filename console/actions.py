"""The console's writes: analysts' decisions on a number, and appeals.

Every decision is one transaction through the store's version lock, so the entries it writes
(a confirmed block, an overturn's unblocks) are versions like any other and reach every operator
through every channel (Kafka, webhook, ``GET /blocklist``, CSV). Each decision carries the form's
``request_id``: the same request again returns the first answer and writes nothing.

An overturn lifts the number's blocks, closes its reviews and clears it for ``clearance_hours``
(an allowlist row that expires), not forever: a permanent allowlist entry is a supervisor's
decision (:meth:`ConsoleStore.allowlist`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session

from streaming.blocklist import audit
from streaming.blocklist.db import as_utc, utcnow
from streaming.blocklist.decision import SCOPE_ALL, SIM_FRAUD_TYPES, PolicySettings
from streaming.blocklist.errors import BlocklistError
from streaming.blocklist.models import (
    NUMBER_LEN,
    PENDING_REVIEW_STATUSES,
    AllowlistEntry,
    Appeal,
    ConsoleAction,
    Review,
    State,
)
from streaming.blocklist.records import EntryRecord, count_entries
from streaming.blocklist.store import BlocklistStore

#: what an analyst may decide on a number, and the review status each leaves
DECISIONS = {"confirm": "confirmed", "overturn": "overturned", "escalate": "escalated", "watch": "watch"}
#: reviews still waiting for a final decision
PENDING = PENDING_REVIEW_STATUSES
MAX_COMMENT = 4000


@dataclass
class ActionResult:
    action: str
    number: str
    entries: list[EntryRecord] = field(default_factory=list)
    reviews: int = 0
    replayed: bool = False
    action_id: int | None = None


def _text(comment: str, what: str = "a comment") -> str:
    comment = (comment or "").strip()
    if not comment:
        raise BlocklistError(f"{what} is required")
    if len(comment) > MAX_COMMENT:
        raise BlocklistError(f"{what} is longer than {MAX_COMMENT} characters")
    return comment


def _number(number: str) -> str:
    number = (number or "").strip()
    if not number or len(number) > NUMBER_LEN or any(c.isspace() for c in number):
        raise BlocklistError(f"not a phone number: {number[:40]!r}")
    return number


class ConsoleStore(BlocklistStore):
    """The blocklist store with the console's decisions; ``policy`` gives a confirmed block's TTL."""

    policy: PolicySettings = PolicySettings()
    clearance_hours: float = 72.0
    appeal_due_hours: float = 24.0

    def configure(self, *, policy: PolicySettings, clearance_hours: float, appeal_due_hours: float) -> ConsoleStore:
        self.policy = policy
        self.clearance_hours = clearance_hours
        self.appeal_due_hours = appeal_due_hours
        return self

    # -- decisions on a number --------------------------------------------------------------------

    def decide(
        self,
        number: str,
        action: str,
        *,
        comment: str,
        actor: str,
        request_id: str,
        now: dt.datetime | None = None,
    ) -> ActionResult:
        """Confirm, overturn, escalate or watch ``number`` (its pending reviews and its blocks)."""
        if action not in DECISIONS:
            raise BlocklistError(f"unknown decision {action!r}: use one of {', '.join(DECISIONS)}")
        number, comment = _number(number), _text(comment)
        if not request_id:
            raise BlocklistError("a decision needs a request_id")
        now = as_utc(now or utcnow())
        with self._write() as (session, versions):
            prior = session.scalar(sa.select(ConsoleAction).where(ConsoleAction.request_id == request_id))
            if prior is not None:
                return self._replay(session, prior, number, action)
            result = self._decide(session, versions, number, action, comment, actor, request_id, now, appeal_id=None)
        count_entries(result.entries)
        return result

    def _replay(self, session: Session, prior: ConsoleAction, number: str, action: str) -> ActionResult:
        if prior.number != number or prior.action != action:
            raise BlocklistError(f"request_id {prior.request_id!r} was already used for another decision")
        from streaming.blocklist.models import Entry

        entries = session.scalars(
            sa.select(Entry).where(Entry.idempotency_key.like(f"console:{prior.id}:%")).order_by(Entry.id)
        )
        return ActionResult(action, number, [EntryRecord.of(e) for e in entries], replayed=True, action_id=prior.id)

    def _decide(
        self,
        session: Session,
        versions,  # the store's locked version sequence
        number: str,
        action: str,
        comment: str,
        actor: str,
        request_id: str,
        now: dt.datetime,
        *,
        appeal_id: int | None,
    ) -> ActionResult:
        reviews = list(
            session.scalars(
                sa.select(Review).where(Review.number == number, Review.status.in_(PENDING)).with_for_update()
            )
        )
        states = list(
            session.scalars(
                sa.select(State)
                .where(State.number == number, State.active.is_(True))
                .order_by(State.scope)
                .with_for_update()
            )
        )
        in_force = [s for s in states if s.expires_at is None or s.expires_at > now]
        if action == "confirm" and not reviews and not in_force:
            raise BlocklistError(f"{number} has no open flag and no block in force to confirm")
        if action in ("escalate", "watch") and not reviews:
            raise BlocklistError(f"{number} has no open review to {action}")
        row = ConsoleAction(
            request_id=request_id,
            number=number,
            action=action,
            comment=comment,
            actor=actor,
            review_id=reviews[0].id if reviews else None,
            appeal_id=appeal_id,
            model_version=(reviews[0].model_version if reviews else None),
            created_at=now,
        )
        session.add(row)
        session.flush()
        key = f"console:{row.id}"
        entries = []
        cleared = False
        if action == "confirm":
            blocked = {s.scope for s in in_force}
            for rv in reviews:
                if rv.scope in blocked:
                    continue
                ttl = getattr(self.policy, rv.fraud_type).ttl_hours
                entry = self._new_entry(
                    session,
                    versions,
                    now=now,
                    number=number,
                    scope=rv.scope,
                    action="block",
                    fraud_type=rv.fraud_type,
                    score=rv.score,
                    reasons=list(rv.reasons or []),
                    model_name=rv.model_name,
                    model_version=rv.model_version,
                    decided_by="analyst",
                    actor=actor,
                    note=comment,
                    reported_by=rv.reported_by,
                    idempotency_key=f"{key}:{rv.scope}",
                    expires_at=now + dt.timedelta(hours=ttl),
                )
                state = session.get(State, (number, rv.scope))
                if state is None:
                    state = State(number=number, scope=rv.scope)
                    session.add(state)
                state.active, state.version, state.block_entry_id = True, entry.id, entry.id
                state.fraud_type, state.expires_at, state.updated_at = rv.fraud_type, entry.expires_at, now
                blocked.add(rv.scope)
                entries.append(entry)
                rv.entry_id = entry.id
            row.entry_id = entries[0].id if entries else (in_force[0].block_entry_id if in_force else None)
        elif action == "overturn":
            for st in states:
                entries.append(
                    self._lift(
                        session,
                        versions,
                        st,
                        now=now,
                        decided_by="analyst",
                        actor=actor,
                        note=comment,
                        key=f"{key}:{st.scope}",
                    )
                )
            cleared = self._clear(session, number, actor=actor, note=comment, request_id=request_id, now=now)
            row.entry_id = entries[0].id if entries else None
            by_scope = {e.scope: e.id for e in entries}
            for rv in reviews:
                rv.entry_id = by_scope.get(rv.scope)
            if row.model_version is None and states:
                row.model_version = self._block_model_version(session, states)
        for rv in reviews:
            rv.status = DECISIONS[action]
            if action in ("confirm", "overturn"):
                rv.resolved_at, rv.resolved_by, rv.resolution_note = now, actor, comment
        session.flush()
        audit.append(
            session, kind="console_decision", actor=actor, at=now,
            content={"action": action, "number": number, "comment": comment, "request_id": request_id,
                     "appeal_id": appeal_id, "entries": [audit.entry_content(e) for e in entries],
                     "reviews": [audit.review_content(rv) for rv in reviews],
                     "allowlist_added": [[number, "analyst_cleared"]] if cleared else []},
        )  # fmt: skip
        return ActionResult(action, number, [EntryRecord.of(e) for e in entries], len(reviews), action_id=row.id)

    @staticmethod
    def _block_model_version(session: Session, states: list[State]) -> str | None:
        from streaming.blocklist.models import Entry

        ids = [s.block_entry_id for s in states if s.block_entry_id is not None]
        if not ids:
            return None
        return session.scalar(sa.select(Entry.model_version).where(Entry.id.in_(ids)).limit(1))

    def _clear(
        self, session: Session, number: str, *, actor: str, note: str, request_id: str, now: dt.datetime
    ) -> bool:
        """Clear ``number`` for ``clearance_hours``; a permanent clearance stays permanent. Whether
        the clearance is new."""
        row = session.get(AllowlistEntry, (number, "analyst_cleared"))
        until = now + dt.timedelta(hours=self.clearance_hours)
        if row is None:
            session.add(
                AllowlistEntry(
                    number=number,
                    source="analyst_cleared",
                    added_by=actor,
                    note=note,
                    request_id=request_id,
                    created_at=now,
                    expires_at=until,
                )
            )
            return True
        if row.expires_at is not None:
            row.expires_at, row.added_by, row.note, row.request_id = until, actor, note, request_id
        return False

    def allowlist(
        self, number: str, *, comment: str, actor: str, request_id: str, now: dt.datetime | None = None
    ) -> None:
        """A supervisor's permanent clearance (the model never blocks the number again)."""
        number, comment = _number(number), _text(comment)
        now = as_utc(now or utcnow())
        with self._write() as (session, _versions):
            if session.scalar(sa.select(ConsoleAction.id).where(ConsoleAction.request_id == request_id)):
                return
            session.add(
                ConsoleAction(
                    request_id=request_id,
                    number=number,
                    action="allowlist",
                    comment=comment,
                    actor=actor,
                    created_at=now,
                )
            )
            row = session.get(AllowlistEntry, (number, "analyst_cleared"))
            if row is None:
                session.add(
                    AllowlistEntry(
                        number=number,
                        source="analyst_cleared",
                        added_by=actor,
                        note=comment,
                        request_id=request_id,
                        created_at=now,
                        expires_at=None,
                    )
                )
            else:
                row.expires_at, row.added_by, row.note = None, actor, comment
            audit.append(
                session, kind="console_allowlist", actor=actor, at=now,
                content={"number": number, "comment": comment, "request_id": request_id,
                         "allowlist_added": [[number, "analyst_cleared"]] if row is None else []},
            )  # fmt: skip

    def manual_block(
        self,
        number: str,
        fraud_type: str,
        *,
        evidence: str,
        actor: str,
        request_id: str,
        now: dt.datetime | None = None,
    ) -> ActionResult:
        """Block a number reported from outside (police, consumers) with the report's text; the
        entry is published like any other and lasts the fraud type's TTL."""
        number, evidence = _number(number), _text(evidence, "the report's evidence")
        if fraud_type not in SIM_FRAUD_TYPES:
            raise BlocklistError(f"unknown fraud type {fraud_type!r}: use one of {', '.join(SIM_FRAUD_TYPES)}")
        if self.plan.special_numbers().get(number) is not None:
            raise BlocklistError(f"{number} is an emergency or special number and is never blocked")
        now = as_utc(now or utcnow())
        with self._write() as (session, versions):
            prior = session.scalar(sa.select(ConsoleAction).where(ConsoleAction.request_id == request_id))
            if prior is not None:
                return self._replay(session, prior, number, "manual_block")
            row = ConsoleAction(
                request_id=request_id, number=number, action="manual_block", comment=evidence, actor=actor,
                created_at=now,
            )  # fmt: skip
            session.add(row)
            session.flush()
            state = session.get(State, (number, SCOPE_ALL), with_for_update=True)
            entries = []
            if not (state and state.active and (state.expires_at is None or state.expires_at > now)):
                entry = self._new_entry(
                    session, versions, now=now, number=number, scope=SCOPE_ALL, action="block",
                    fraud_type=fraud_type, reasons=["reported from outside"], decided_by="analyst", actor=actor,
                    note=evidence, idempotency_key=f"console:{row.id}:{SCOPE_ALL}",
                    expires_at=now + dt.timedelta(hours=getattr(self.policy, fraud_type).ttl_hours),
                )  # fmt: skip
                if state is None:
                    state = State(number=number, scope=SCOPE_ALL)
                    session.add(state)
                state.active, state.version, state.block_entry_id = True, entry.id, entry.id
                state.fraud_type, state.expires_at, state.updated_at = fraud_type, entry.expires_at, now
                row.entry_id = entry.id
                entries.append(entry)
            audit.append(
                session, kind="console_manual_block", actor=actor, at=now,
                content={"number": number, "fraud_type": fraud_type, "evidence": evidence, "request_id": request_id,
                         "entries": [audit.entry_content(e) for e in entries]},
            )  # fmt: skip
            result = ActionResult("manual_block", number, [EntryRecord.of(e) for e in entries], action_id=row.id)
        count_entries(result.entries)
        return result

    def note(self, number: str, *, comment: str, actor: str, request_id: str, now: dt.datetime | None = None) -> None:
        number, comment = _number(number), _text(comment, "a note")
        now = as_utc(now or utcnow())
        with self._write() as (session, _versions):
            if session.scalar(sa.select(ConsoleAction.id).where(ConsoleAction.request_id == request_id)):
                return
            session.add(
                ConsoleAction(
                    request_id=request_id, number=number, action="note", comment=comment, actor=actor, created_at=now
                )
            )
            audit.append(session, kind="console_note", actor=actor, at=now,
                         content={"number": number, "comment": comment, "request_id": request_id})

    def assign(self, review_id: int, *, actor: str, now: dt.datetime | None = None) -> None:
        now = as_utc(now or utcnow())
        with self._write() as (session, _versions):
            rv = session.get(Review, review_id, with_for_update=True)
            if rv is None:
                raise BlocklistError(f"no review {review_id}")
            rv.assigned_to = actor

    # -- appeals ----------------------------------------------------------------------------------

    def file_appeal(
        self,
        number: str,
        *,
        operator: str,
        request_id: str,
        reason: str,
        filed_by: str,
        now: dt.datetime | None = None,
    ) -> tuple[Appeal, bool]:
        """(the appeal, whether it is new); the same (operator, request_id) again returns the first."""
        number, reason = _number(number), _text(reason, "the appeal's reason")
        if not request_id or len(request_id) > 128:
            raise BlocklistError("an appeal needs a request_id of at most 128 characters")
        now = as_utc(now or utcnow())
        with self._write() as (session, _versions):
            prior = session.scalar(
                sa.select(Appeal).where(Appeal.operator == operator, Appeal.request_id == request_id)
            )
            if prior is not None:
                if prior.number != number:
                    raise BlocklistError(f"request_id {request_id!r} was already used for another number")
                return prior, False
            appeal = Appeal(
                number=number,
                operator=operator,
                request_id=request_id,
                reason=reason,
                filed_by=filed_by,
                status="open",
                created_at=now,
                due_at=now + dt.timedelta(hours=self.appeal_due_hours),
            )
            session.add(appeal)
            session.flush()
            audit.append(session, kind="appeal_filed", actor=filed_by, at=now,
                         content={"appeals": [audit.appeal_content(appeal)]})
            return appeal, True

    def log_login(self, name: str, *, result: str, client: str) -> None:
        """A sign-in attempt and its result, in the audit log."""
        audit.record_event(self.engine, kind="console_login", actor=name[:64] or "?",
                           content={"result": result, "client": client})

    def get_appeal(self, appeal_id: int) -> Appeal | None:
        with self._read() as session:
            return session.get(Appeal, appeal_id)

    def decide_appeal(
        self,
        appeal_id: int,
        outcome: str,
        *,
        comment: str,
        actor: str,
        request_id: str,
        now: dt.datetime | None = None,
    ) -> tuple[Appeal, ActionResult | None]:
        """``overturn``: the number is unblocked and cleared (as an overturn); ``uphold``: it stays
        blocked. Deciding a decided appeal again with the same outcome changes nothing."""
        if outcome not in ("overturn", "uphold"):
            raise BlocklistError(f"unknown appeal outcome {outcome!r}: use overturn or uphold")
        comment = _text(comment)
        now = as_utc(now or utcnow())
        status = "overturned" if outcome == "overturn" else "upheld"
        result = None
        with self._write() as (session, versions):
            appeal = session.get(Appeal, appeal_id, with_for_update=True)
            if appeal is None:
                raise BlocklistError(f"no appeal {appeal_id}")
            if appeal.status != "open":
                if appeal.status != status:
                    raise BlocklistError(f"appeal {appeal_id} was already decided: {appeal.status}")
                return appeal, None
            if outcome == "overturn":
                result = self._decide(
                    session, versions, appeal.number, "overturn", comment, actor, request_id, now, appeal_id=appeal.id
                )
                appeal.entry_id = result.entries[0].version if result.entries else None
            else:
                session.add(
                    ConsoleAction(
                        request_id=request_id,
                        number=appeal.number,
                        action="note",
                        comment=f"appeal {appeal.id} upheld: {comment}",
                        actor=actor,
                        appeal_id=appeal.id,
                        created_at=now,
                    )
                )
            appeal.status, appeal.decided_by, appeal.decided_at, appeal.outcome_comment = status, actor, now, comment
            session.flush()
            audit.append(session, kind="appeal_decided", actor=actor, at=now,
                         content={"appeals": [audit.appeal_content(appeal)]})
        if result is not None:
            count_entries(result.entries)
        return appeal, result


__all__ = ["DECISIONS", "SCOPE_ALL", "ActionResult", "ConsoleStore"]
