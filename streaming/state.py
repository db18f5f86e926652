"""The stream's table state: one Delta Lake table of per-micro-batch partial aggregates.

The per-SIM features keep their state in the query's own checkpoint (the JVM processors of
``features.sim_state``, RocksDB). What the call features read, and when the stream's records
begin, every micro-batch appends here, aggregated once per key, as rows of three kinds (the
``part`` column, the table's partitioning):

- ``cli``: per (CLI, minute) calls presenting it and its owner's own records;
- ``trunk``: per (ingress trunk, minute) calls and suspect CLIs;
- ``seen``: the sub-buckets (minutes) that held a record, for :meth:`StateTable.first_record`.

Rows of one key from several micro-batches are partial: readers merge them (sums and unions,
``features.calls.merge_cli_rows``), so the state holds exactly what a batch job computes from the
same CDRs. Each row also has ``at``, its time key in epoch seconds; Delta's per-file statistics
on it let a read of the last day skip older files.

An append is idempotent on (query id, batch id) through Delta's ``txnAppId``/``txnVersion``:
a micro-batch that Spark re-runs after a crash writes nothing twice. Old rows are deleted, small
files compacted and unreferenced files vacuumed through Delta, on any Hadoop file system the
URI names; nothing here touches the files directly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from features.calls import cli_bucket_aggregates, trunk_bucket_aggregates
from features.errors import ConfigError
from features.numbering import NumberingPlan
from features.settings import FeatureSettings
from models.scoring import history_start

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

log = logging.getLogger("simguard.stream")

PART = "part"
AT = "at"
KINDS = ("cli", "trunk", "seen")
#: the table property that keeps the minute of the state's first record (epoch s)
FIRST_RECORD = "simguard.firstRecord"


def state_rows(cdrs: DataFrame, *, settings: FeatureSettings, plan: NumberingPlan | None = None) -> DataFrame:
    """The state rows of canonical CDRs: every kind, one table schema (absent columns null)."""
    from pyspark.sql import functions as F

    sub = settings.sub_bucket_s
    minute = (F.floor(F.col("start_time").cast("double") / sub) * sub).cast("long")
    parts = {
        "seen": cdrs.select(minute.alias(AT)).distinct(),
        "cli": cli_bucket_aggregates(cdrs, settings=settings).withColumn(
            AT, F.col("bucket_start").cast("long")
        ),
        "trunk": trunk_bucket_aggregates(cdrs, settings=settings, plan=plan).withColumn(
            AT, F.col("trunk_bucket").cast("long")
        ),
    }
    frames = [frame.withColumn(PART, F.lit(kind)) for kind, frame in parts.items()]
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame, allowMissingColumns=True)
    # partition and time key first: Delta keeps statistics on the leading columns
    return out.select(PART, AT, *[c for c in out.columns if c not in (PART, AT)])


#: the columns each kind reads back
COLUMNS = {
    "seen": (AT,),
    "cli": ("a_number", "bucket_start", "cli_calls", "cli_operators", "cli_subscriber_calls", "owner_home",
            "owner_roaming", "owner_callees"),
    "trunk": ("in_trunk_id", "trunk_bucket", "trunk_calls", "trunk_suspect", "trunk_bad"),
}


def delta_exists(spark: SparkSession, uri: str) -> bool:
    from delta.tables import DeltaTable

    return DeltaTable.isDeltaTable(spark, uri)


def maintain_delta(spark: SparkSession, uri: str, *, older: Column, vacuum_hours: float) -> None:
    """Delete the rows ``older`` selects, compact small files, vacuum files no version newer
    than ``vacuum_hours`` references: through Delta, on any Hadoop file system."""
    from delta.tables import DeltaTable

    table = DeltaTable.forPath(spark, uri)
    table.delete(older)
    table.optimize().executeCompaction()
    table.vacuum(vacuum_hours)


@dataclass
class StateTable:
    """The state table at ``uri`` (a Delta table, created by the first append)."""

    spark: SparkSession
    uri: str

    def exists(self) -> bool:
        return delta_exists(self.spark, self.uri)

    def append(self, rows: DataFrame, *, app_id: str, batch_id: int, note: str | None = None) -> None:
        """Append one micro-batch's rows, once per (``app_id``, ``batch_id``); ``note`` is kept as
        the commit's user metadata (see :meth:`notes`)."""
        writer = (
            rows.write.format("delta")
            .mode("append")
            .partitionBy(PART)
            .option("txnAppId", app_id)
            .option("txnVersion", str(batch_id))
        )
        if note is not None:
            writer = writer.option("userMetadata", note)
        writer.save(self.uri)

    def first_record(self, *, reach_s: float) -> float | None:
        """Epoch seconds of the minute of the state's first record: windows that start before it
        lack part of their history. The first minute after the last gap of ``reach_s`` (a window)
        or more between the minutes that held a record (``models.scoring.history_start``): a straggler
        in the first micro-batch does not count, a warm start or a long first backlog counts from
        its beginning. Fixed in the table's properties (:data:`FIRST_RECORD`) the first time it is
        asked for, so that a late record older than it does not move it then. ``None`` while
        there are no records."""
        from delta.tables import DeltaTable
        from pyspark.sql import functions as F

        if not self.exists():
            return None
        detail = DeltaTable.forPath(self.spark, self.uri).detail().first()
        properties = detail["properties"] or {}
        if FIRST_RECORD in properties:
            try:
                return float(properties[FIRST_RECORD])
            except ValueError:
                raise ConfigError(
                    f"the stream's state at {self.uri} has table property {FIRST_RECORD}="
                    f"{properties[FIRST_RECORD]!r}, not epoch seconds: set it to the minute of the state's first "
                    "record, or unset it to have it found again"
                ) from None
        seen = self.spark.read.format("delta").load(self.uri).where(F.col(PART) == "seen")
        minutes = [r[0] for r in seen.select(AT).distinct().collect()]
        first = history_start(np.array(minutes, dtype=np.float64), reach_s=reach_s)
        if first is None:
            return None
        location = str(detail["location"]).replace("`", "``")
        self.spark.sql(f"ALTER TABLE delta.`{location}` SET TBLPROPERTIES ('{FIRST_RECORD}' = '{int(first)}')")
        log.info("state table %s: its first record's minute is %s", self.uri, int(first))
        return first

    def check_layout(self, columns: list[str]) -> None:
        """Before a query appends rows with ``columns``: a table an older version wrote lacks some
        of them (Delta would fail the first micro-batch with a schema mismatch), or has others (it
        kept the per-SIM state that now lives in the query's checkpoint, which it does not have)."""
        if not self.exists():
            return
        have = self.spark.read.format("delta").load(self.uri).columns
        missing = [c for c in columns if c not in have]
        extra = [c for c in have if c not in columns]
        if missing or extra:
            what = f"no column {', '.join(missing)}" if missing else f"column {', '.join(extra)}"
            raise ConfigError(
                f"the stream's state at {self.uri} was written by an older version ({what}): give "
                "stream.state_uri a new location and load the days before it with --warm-from"
            )

    def notes(self) -> set[str]:
        """The user metadata of the table's commits (from Delta's history)."""
        from delta.tables import DeltaTable

        if not self.exists():
            return set()
        history = DeltaTable.forPath(self.spark, self.uri).history().select("userMetadata").collect()
        return {r["userMetadata"] for r in history if r["userMetadata"]}

    def read(self, kind: str, *, since: float | None = None) -> DataFrame:
        """Rows of ``kind`` whose time key is at or after ``since`` (epoch s)."""
        from pyspark.sql import functions as F

        frame = self.spark.read.format("delta").load(self.uri).where(F.col(PART) == kind)
        if since is not None:
            frame = frame.where(F.col(AT) >= F.lit(int(since)))
        return frame.select(*COLUMNS[kind])

    def maintain(self, *, keep_after: float, vacuum_hours: float) -> None:
        """Delete rows older than ``keep_after`` (epoch s), compact small files, vacuum files no
        version newer than ``vacuum_hours`` references."""
        from pyspark.sql import functions as F

        maintain_delta(self.spark, self.uri, older=F.col(AT) < F.lit(int(keep_after)), vacuum_hours=vacuum_hours)
        log.info("state table %s: rows before %s deleted, compacted, vacuumed", self.uri, int(keep_after))
