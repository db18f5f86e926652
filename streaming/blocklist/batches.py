"""The streaming job's micro-batch records, kept in the blocklist database beside the decisions
they led to: records in, dead-lettered, decisions, stage timings. A batch that Spark re-runs
after a crash overwrites its own record, so totals count every batch once."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from streaming.blocklist.db import writer
from streaming.blocklist.models import StreamBatch


def record_batch(engine: sa.Engine, query: str, batch_id: int, record: dict[str, Any]) -> None:
    now = dt.datetime.now(dt.UTC)
    with Session(writer(engine)) as session, session.begin():
        session.merge(StreamBatch(query=query, batch_id=int(batch_id), record=record, finished_at=now))


def read_batches(engine: sa.Engine, query: str | None = None) -> list[dict[str, Any]]:
    """Records in (query, batch id) order, each with its ``query`` and ``batch_id``."""
    stmt = sa.select(StreamBatch).order_by(StreamBatch.query, StreamBatch.batch_id)
    if query is not None:
        stmt = stmt.where(StreamBatch.query == query)
    with Session(engine) as session:
        return [{**row.record, "query": row.query, "batch_id": row.batch_id} for row in session.scalars(stmt)]


def stream_totals(engine: sa.Engine) -> dict[str, Any]:
    """A stream's totals over its batch records: records in, valid, dead-lettered by reason,
    decisions by action and fraud type, micro-batches. Readable after the job stopped."""
    out: dict[str, Any] = {
        "records_in": 0, "valid": 0, "dead_lettered": 0, "dead_letter_reasons": {}, "decisions": {}, "batches": 0,
    }
    for rec in read_batches(engine):
        out["batches"] += 1
        for k in ("records_in", "valid", "dead_lettered"):
            out[k] += int(rec.get(k) or 0)
        for group in ("dead_letter_reasons", "decisions"):
            for k, v in (rec.get(group) or {}).items():
                out[group][k] = out[group].get(k, 0) + int(v)
    return out
