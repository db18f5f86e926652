"""What the store hands out: detached entry records, the results of writes, a number's history,
and the one chunking rule for ``IN (...)`` lists."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from streaming.blocklist import metrics
from streaming.blocklist.db import as_utc
from streaming.blocklist.models import AllowlistEntry, Detection, Entry, Review, State

#: rows per ``IN (...)`` list: far below SQLite's and PostgreSQL's parameter limits
CHUNK = 500


def chunks(values: Iterable[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    """``values`` in lists of at most ``size``."""
    it = iter(values)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


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


def count_entries(entries: Iterable[EntryRecord]) -> None:
    # after the commit: a rolled-back transaction published nothing
    for e in entries:
        metrics.ENTRIES.labels(action=e.action, decided_by=e.decided_by).inc()


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
