"""The history a live replay continues: what a running job would already have seen.

``simguard replay --last-days 1 --shift-to-now --start-at T`` sends the last day from its time of
day ``T`` on, moved so that ``T`` is now. A stream started for it has an empty state, and a cold
state makes an ordinary SIM's first calls look like a SIM box's. :func:`write_history` writes the
records before ``T`` (that day's and the days before it) moved by the same amount, as canonical
Parquet for ``simguard stream --warm-from``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.schema import TIMESTAMP_FIELDS
from pipeline.simulate.populations import SimulationError
from pipeline.simulate.writer import cdr_files


def write_history(
    source: str | Path, *, start_at: dt.time, now: dt.datetime, out: Path, days_before: int = 1
) -> dict[str, Any]:
    """Write the records of ``source``'s last day that start before ``start_at`` (UTC) and those
    of the ``days_before`` days before it, every timestamp moved by ``now`` minus that day's
    ``start_at``, to ``out`` (a new folder). Returns the count and the first and last start."""
    if now.tzinfo is None:
        raise SimulationError("now must be timezone-aware (UTC)")
    if out.exists() and any(out.rglob("*.parquet")):
        raise SimulationError(f"{out} already holds Parquet files: give the history a new folder")
    files = cdr_files(source)
    if not files:
        raise SimulationError(f"{source}: no CDR files (expected cdrs/day=YYYY-MM-DD/part-*.parquet)")
    days = {p: dt.date.fromisoformat(p.parent.name.removeprefix("day=")) for p in files}
    last = max(days.values())
    cut = dt.datetime.combine(last, start_at.replace(tzinfo=None), dt.UTC)
    shift = pa.scalar(now - cut, type=pa.duration("us"))
    kept = []
    for path in files:
        if days[path] < last - dt.timedelta(days=days_before):
            continue
        part = pq.read_table(path)
        part = part.filter(pc.less(part["start_time"], pa.scalar(cut, type=part.schema.field("start_time").type)))
        for name in TIMESTAMP_FIELDS:
            i = part.schema.get_field_index(name)
            part = part.set_column(i, part.schema.field(i), pc.add(part[name], shift))
        kept.append(part)
    history = pa.concat_tables(kept)
    if history.num_rows == 0:
        raise SimulationError(f"{source}: no record starts before {start_at:%H:%M:%S} UTC on {last}")
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(history, out / "part-00000.parquet")
    starts = history["start_time"]
    return {"records": history.num_rows, "first": pc.min(starts).as_py(), "last": pc.max(starts).as_py()}
