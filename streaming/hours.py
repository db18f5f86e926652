"""Closed hours: each SIM's rows of an hour that has ended, merged once and kept in a Delta table.

A 24 h window reads the 23 whole hours before its own hour and the minutes of that hour. An
hour's minute rows stop changing once the hour is over, so the stream merges them (with their
cross-SIM context) into one row per SIM and hour once, ``grace_s`` of event time after the hour
ends (:meth:`ClosedHours.close`). A micro-batch then reads at most 23 hour rows per SIM, and only
the minutes and context members of the hours not closed and of its points' own and previous
hours, instead of a day of minutes and every member of the day's cells and IMEIs.

A record that arrives after its hour was closed changes that hour and, through the cross-SIM
context, the later hours of its cohort bucket: :meth:`ClosedHours.reopen` merges every closed
hour from the record's on again, from the state table, and replaces them before the micro-batch
scores anything. So the rows always equal what :func:`features.sim_windows.hour_rows` gives over
all the minute rows.

Closed hours are contiguous: a marker row (null entity) per hour says it is closed, so an hour
in which no SIM called is not closed again. Every write replaces whole hours (Delta's
``replaceWhere``), once per (query id, batch id, step) through ``txnAppId``/``txnVersion``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from features.settings import FeatureSettings
from features.sim import sim_hour_rows
from features.sim_rows import ENTITY, HOUR, MINUTE
from features.sim_windows import HOUR_START
from streaming.state import StateTable, delta_exists, maintain_delta

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger("simguard.stream")


def _hour(t: float) -> int:
    return int(t // HOUR) * HOUR


@dataclass
class ClosedHours:
    """The closed hours of the stream whose state is ``state``, in the Delta table at ``uri``."""

    spark: SparkSession
    uri: str
    state: StateTable
    settings: FeatureSettings
    grace_s: int
    #: (first, last) closed hour start, or None; read from the table once, then kept
    _range: tuple[int, int] | None = field(default=None, init=False)
    _loaded: bool = field(default=False, init=False)

    def exists(self) -> bool:
        return delta_exists(self.spark, self.uri)

    def closed(self) -> tuple[int, int] | None:
        """(first, last) start of the closed hours."""
        from pyspark.sql import functions as F

        if not self._loaded:
            self._range = None
            if self.exists():
                markers = self.spark.read.format("delta").load(self.uri).where(F.col(ENTITY).isNull())
                first, last = markers.agg(F.min(HOUR_START), F.max(HOUR_START)).first()
                if first is not None:
                    self._range = (int(first), int(last))
            self._loaded = True
        return self._range

    def until(self, earliest: float) -> int | None:
        """For points from ``earliest`` (epoch s) on: the end of the closed hours when they hold
        every whole hour before it that those points' windows read, else None (read minutes)."""
        closed = self.closed()
        if closed is None or closed[0] > _hour(earliest) - self.settings.window_s + HOUR:
            return None
        return closed[1] + HOUR

    def read(self, *, since: float, until: int) -> DataFrame:
        """The hour rows of closed hours from ``since`` (epoch s) to before ``until``."""
        from pyspark.sql import functions as F

        rows = self.spark.read.format("delta").load(self.uri)
        return rows.where(
            F.col(ENTITY).isNotNull() & (F.col(HOUR_START) >= F.lit(_hour(since))) & (F.col(HOUR_START) < F.lit(until))
        )

    def reopen(self, oldest: float, *, app_id: str, batch_id: int) -> int:
        """Merge again the closed hours from the one of ``oldest`` (epoch s, the micro-batch's
        oldest record) on; returns how many."""
        closed = self.closed()
        if closed is None or oldest >= closed[1] + HOUR:
            return 0
        first = max(_hour(oldest), closed[0])
        self._write(first, closed[1], app_id=app_id, version=2 * batch_id)
        return (closed[1] - first) // HOUR + 1

    def close(self, horizon: float, *, app_id: str, batch_id: int) -> int:
        """Close every hour that ended ``grace_s`` before ``horizon`` (epoch s, the newest record)
        and is not closed, back to the first one a window from ``horizon`` reads; returns how many."""
        last = _hour(horizon - self.grace_s) - HOUR
        oldest = _hour(horizon) - self.settings.window_s
        closed = self.closed()
        first = oldest if closed is None else max(closed[1] + HOUR, oldest)
        if first > last:
            return 0
        self._write(first, last, app_id=app_id, version=2 * batch_id + 1)
        # still contiguous unless the stream skipped more than a window
        contiguous = closed is not None and first == closed[1] + HOUR
        self._range = (closed[0], last) if closed is not None and contiguous else (first, last)
        return (last - first) // HOUR + 1

    def _write(self, first: int, last: int, *, app_id: str, version: int) -> None:
        from pyspark.sql import functions as F

        end = last + HOUR
        cohort = self.settings.cohort_bucket_s
        # the hours' minutes, and every SIM seen in their cells and IMEIs since the start of the
        # first one's cohort bucket (the context keys those minutes carry)
        minutes = self.state.read("sim", since=first).where(F.col(MINUTE) < F.lit(end))
        members = self.state.read("ctx", since=first // cohort * cohort).where(F.col("hour") < F.lit(end))
        rows = sim_hour_rows(minutes, members, settings=self.settings)
        markers = self.spark.range(first, end, HOUR).select(F.col("id").alias(HOUR_START))
        out = rows.unionByName(markers, allowMissingColumns=True)
        (
            out.coalesce(self.spark.sparkContext.defaultParallelism)
            .write.format("delta")
            .mode("overwrite")
            .option("replaceWhere", f"{HOUR_START} >= {first} AND {HOUR_START} <= {last}")
            .option("txnAppId", f"{app_id}:hours")
            .option("txnVersion", str(version))
            .save(self.uri)
        )
        log.info("hours %s to %s closed", first, last)

    def maintain(self, *, keep_after: float, vacuum_hours: float) -> None:
        """Delete hours before ``keep_after`` (epoch s), compact, vacuum."""
        from pyspark.sql import functions as F

        if not self.exists():
            return
        older = F.col(HOUR_START) < F.lit(_hour(keep_after))
        maintain_delta(self.spark, self.uri, older=older, vacuum_hours=vacuum_hours)
        self._loaded = False
