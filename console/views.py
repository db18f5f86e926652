"""The console's reads: the queue (reviews, blocks, appeals), a flag's page, my work."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from console.actions import PENDING
from streaming.blocklist.db import as_utc, utcnow
from streaming.blocklist.models import (
    REVIEW_STATUSES,
    AllowlistEntry,
    Appeal,
    ConsoleAction,
    Detection,
    Entry,
    Review,
    State,
)

SORTS = ("score", "age")


@dataclass
class Page:
    rows: list[Any]
    total: int
    page: int
    size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))


@dataclass
class QueueFilters:
    kind: str = "reviews"  # reviews | blocks
    status: str | None = "open"
    fraud_type: str | None = None
    operator: str | None = None
    model_version: str | None = None
    sort: str = "score"
    page: int = 1


def _page(session: Session, query: sa.Select, page: int, size: int) -> Page:
    total = int(session.scalar(sa.select(sa.func.count()).select_from(query.order_by(None).subquery())) or 0)
    page = max(1, page)
    rows = list(session.execute(query.limit(size).offset((page - 1) * size)))
    return Page(rows, total, page, size)


def review_counts(session: Session) -> dict[str, int]:
    counts = dict.fromkeys(REVIEW_STATUSES, 0)
    counts.update(session.execute(sa.select(Review.status, sa.func.count()).group_by(Review.status)).all())
    return counts


def queue(engine: sa.Engine, f: QueueFilters, *, size: int, now: dt.datetime | None = None) -> dict[str, Any]:
    now = as_utc(now or utcnow())
    with Session(engine, expire_on_commit=False) as session, session.begin():
        if f.kind == "blocks":
            q = (
                sa.select(Entry, State.active)
                .join(State, sa.and_(State.number == Entry.number, State.scope == Entry.scope))
                .where(Entry.action == "block")
            )
            if f.status == "active":
                q = q.where(State.block_entry_id == Entry.id, State.active.is_(True))
            elif f.status == "lifted":
                q = q.where(sa.or_(State.block_entry_id.is_(None), State.block_entry_id != Entry.id))
            if f.fraud_type:
                q = q.where(Entry.fraud_type == f.fraud_type)
            if f.operator:
                q = q.where(Entry.reported_by == f.operator)
            if f.model_version:
                q = q.where(Entry.model_version == f.model_version)
            order = Entry.score.desc() if f.sort == "score" else Entry.created_at.asc()
            page = _page(session, q.order_by(order, Entry.id), f.page, size)
        else:
            q = sa.select(Review)
            if f.status:
                q = q.where(Review.status == f.status)
            if f.fraud_type:
                q = q.where(Review.fraud_type == f.fraud_type)
            if f.operator:
                q = q.where(Review.reported_by == f.operator)
            if f.model_version:
                q = q.where(Review.model_version == f.model_version)
            order = Review.score.desc() if f.sort == "score" else Review.created_at.asc()
            page = _page(session, q.order_by(order, Review.id), f.page, size)
        oldest = session.scalar(sa.select(sa.func.min(Review.created_at)).where(Review.status.in_(PENDING)))
        appeals = list(
            session.scalars(sa.select(Appeal).where(Appeal.status == "open").order_by(Appeal.due_at).limit(size))
        )
        return {
            "page": page,
            "counts": review_counts(session),
            "oldest_open_age": (now - as_utc(oldest)) if oldest else None,
            "appeals": appeals,
            "open_appeals": int(
                session.scalar(sa.select(sa.func.count()).select_from(Appeal).where(Appeal.status == "open")) or 0
            ),
            "fraud_types": sorted(filter(None, session.scalars(sa.select(Review.fraud_type).distinct()))),
            "operators": sorted(filter(None, session.scalars(sa.select(Review.reported_by).distinct()))),
            "model_versions": sorted(filter(None, session.scalars(sa.select(Review.model_version).distinct()))),
        }


@dataclass
class DecisionLine:
    """One decision: the detections that led to one entry or one review, the strongest first."""

    outcome: str
    fraud_type: str
    score: float
    why: str
    model_name: str | None
    model_version: str | None
    reasons: list[str]
    first_seen: dt.datetime
    last_seen: dt.datetime
    windows: int
    evidence: dict[str, Any] | None
    entry_id: int | None
    review_id: int | None

    @property
    def reason_details(self) -> list[dict[str, Any]]:
        """Each reason with the feature value and percentile the stream stored in the evidence
        (``streaming.evidence.with_reasons``); older evidence gives the sentence alone."""
        stored = (self.evidence or {}).get("reasons") or []
        by_text = {r.get("text"): r for r in stored if isinstance(r, dict)}
        out = []
        for text in self.reasons:
            found = by_text.get(text, {})
            pct = found.get("percentile")
            out.append(
                {
                    "text": text,
                    "feature": found.get("feature"),
                    "value": found.get("value"),
                    "percentile": None if pct is None else round(float(pct)),
                }
            )
        return out


@dataclass
class Flag:
    number: str
    decisions: list[DecisionLine]
    states: list[State]
    reviews: list[Review]
    entries: list[Entry]
    actions: list[ConsoleAction]
    appeals: list[Appeal]
    clearance: AllowlistEntry | None
    history: list[dict[str, Any]] = field(default_factory=list)


def _decision_lines(detections: list[Detection]) -> list[DecisionLine]:
    groups: dict[tuple[str, int], list[Detection]] = {}
    for d in detections:
        key = ("entry", d.entry_id) if d.entry_id else ("review", d.review_id) if d.review_id else ("det", d.id)
        groups.setdefault(key, []).append(d)  # type: ignore[arg-type]
    lines = []
    for dets in groups.values():
        top = max(dets, key=lambda d: (d.score, d.id))
        with_evidence = [d for d in dets if d.evidence] or [top]
        latest = max(with_evidence, key=lambda d: d.id)
        lines.append(
            DecisionLine(
                outcome=top.outcome if top.outcome != "already_blocked" else "blocked",
                fraud_type=top.fraud_type,
                score=top.score,
                why=top.why,
                model_name=top.model_name,
                model_version=top.model_version,
                reasons=list(top.reasons or []),
                first_seen=min(as_utc(d.observed_at) for d in dets),
                last_seen=max(as_utc(d.observed_at) for d in dets),
                windows=len(dets),
                evidence=(top.evidence or latest.evidence),
                entry_id=top.entry_id,
                review_id=top.review_id,
            )
        )
    return sorted(lines, key=lambda line: line.last_seen, reverse=True)


def flag(engine: sa.Engine, number: str) -> Flag:
    with Session(engine, expire_on_commit=False) as session, session.begin():
        detections = list(
            session.scalars(sa.select(Detection).where(Detection.number == number).order_by(Detection.id))
        )
        out = Flag(
            number=number,
            decisions=_decision_lines(detections),
            states=list(session.scalars(sa.select(State).where(State.number == number).order_by(State.scope))),
            reviews=list(session.scalars(sa.select(Review).where(Review.number == number).order_by(Review.id))),
            entries=list(session.scalars(sa.select(Entry).where(Entry.number == number).order_by(Entry.id))),
            actions=list(
                session.scalars(
                    sa.select(ConsoleAction).where(ConsoleAction.number == number).order_by(ConsoleAction.id)
                )
            ),
            appeals=list(session.scalars(sa.select(Appeal).where(Appeal.number == number).order_by(Appeal.id))),
            clearance=session.get(AllowlistEntry, (number, "analyst_cleared")),
        )
    hist: list[dict[str, Any]] = []
    for e in out.entries:
        who = e.actor or e.decided_by
        hist.append({"at": e.created_at, "what": f"{e.action} v{e.id} ({e.scope})", "who": who, "text": e.note or ""})
    for r in out.reviews:
        hist.append(
            {
                "at": r.created_at,
                "what": f"review {r.id} opened ({r.fraud_type}, {r.score:.3f})",
                "who": r.model_name or "model",
                "text": f"status now {r.status}",
            }
        )
    for a in out.actions:
        hist.append({"at": a.created_at, "what": a.action, "who": a.actor, "text": a.comment})
    for ap in out.appeals:
        hist.append(
            {"at": ap.created_at, "what": f"appeal {ap.id} filed ({ap.status})", "who": ap.filed_by, "text": ap.reason}
        )
    for d in out.decisions:
        hist.append(
            {
                "at": d.first_seen,
                "what": f"detection: {d.outcome} x{d.windows}",
                "who": d.model_name or "",
                "text": d.why,
            }
        )
    out.history = sorted(hist, key=lambda h: as_utc(h["at"]), reverse=True)
    return out


def my_work(engine: sa.Engine, actor: str | None, *, days: int = 30, now: dt.datetime | None = None) -> dict[str, Any]:
    """Decisions by day (of ``actor``, or everyone), and overturn rates per model version."""
    now = as_utc(now or utcnow())
    since = now - dt.timedelta(days=days)
    with Session(engine) as session:
        q = sa.select(ConsoleAction).where(ConsoleAction.created_at >= since).order_by(ConsoleAction.id.desc())
        if actor is not None:
            q = q.where(ConsoleAction.actor == actor)
        actions = list(session.scalars(q))
    by_day: dict[tuple[str, str], dict[str, int]] = {}
    by_model: dict[str, dict[str, int]] = {}
    for a in actions:
        day = as_utc(a.created_at).date().isoformat()
        by_day.setdefault((day, a.actor), {}).setdefault(a.action, 0)
        by_day[(day, a.actor)][a.action] += 1
        if a.action in ("confirm", "overturn"):
            m = by_model.setdefault(a.model_version or "unknown", {"confirm": 0, "overturn": 0})
            m[a.action] += 1
    rates = {v: {**c, "rate": c["overturn"] / (c["confirm"] + c["overturn"])} for v, c in sorted(by_model.items())}
    return {"by_day": sorted(by_day.items(), reverse=True), "rates": rates, "actions": actions[:200]}


#: detections scanned for shared IMEIs and cells (the newest ones)
RELATED_SCAN = 2000


def _imeis_cells(evidence: dict[str, Any] | None) -> tuple[set[str], set[str]]:
    calls = (evidence or {}).get("recent_calls") or []
    imeis = {str(c["imei"]) for c in calls if isinstance(c, dict) and c.get("imei")}
    cells = {str(c["cell"]) for c in calls if isinstance(c, dict) and c.get("cell")}
    return imeis, cells


def related(engine: sa.Engine, number: str, *, limit: int = 50) -> list[dict[str, Any]]:
    """Numbers that share an IMEI or a cell with ``number``'s evidence, or its number range (all
    but the last two digits), with their current status: a SIM box's siblings, decided together."""
    with Session(engine) as session:
        mine = session.scalars(
            sa.select(Detection.evidence).where(Detection.number == number, Detection.evidence.is_not(None))
        ).all()
        imeis: set[str] = set()
        cells: set[str] = set()
        for ev in mine:
            i, c = _imeis_cells(ev)
            imeis |= i
            cells |= c
        why: dict[str, list[str]] = {}
        if imeis or cells:
            recent = session.execute(
                sa.select(Detection.number, Detection.evidence)
                .where(Detection.number != number, Detection.evidence.is_not(None))
                .order_by(Detection.id.desc())
                .limit(RELATED_SCAN)
            ).all()
            for other, ev in recent:
                i, c = _imeis_cells(ev)
                reasons = why.setdefault(other, [])
                if i & imeis and "same IMEI" not in reasons:
                    reasons.append("same IMEI")
                if c & cells and "same cell" not in reasons:
                    reasons.append("same cell")
        if len(number) > 6:
            prefix = number[:-2]
            for other in session.scalars(
                sa.select(Detection.number)
                .where(Detection.number.startswith(prefix, autoescape=True), Detection.number != number)
                .distinct()
                .limit(limit)
            ):
                why.setdefault(other, []).append("same number range")
        found = sorted(((n, r) for n, r in why.items() if r), key=lambda item: (-len(item[1]), item[0]))[:limit]
        out = []
        for other, reasons in found:
            state = session.get(State, (other, "all"))
            review = session.scalar(
                sa.select(Review.status).where(Review.number == other).order_by(Review.id.desc()).limit(1)
            )
            status = "blocked" if state is not None and state.active else (f"review {review}" if review else "-")
            out.append({"number": other, "why": ", ".join(reasons), "status": status})
        return out
