"""The streaming twin of the batch feature job.

The same aggregate definitions as ``pipeline.featurize`` (``features.sim``, ``features.calls``)
run as Structured Streaming aggregations with a watermark in update mode, so a SIM's window row is
refreshed in every micro-batch that touches it, before the window closes. Each query writes the
rows it updated to an update log, ``<state_dir>/<aggregate>/batch_id=<n>/``, overwriting that
batch's folder: a micro-batch that Spark re-runs after a crash rewrites the same rows, nothing is
appended twice. :func:`latest` reads the newest row per key, and :func:`assemble_from_state`
turns those into feature rows with the very functions the batch job uses.

A live job writes a folder per micro-batch and log, 8,640 a day at a 10 s trigger, and reading a
log costs time per file (BENCHMARKS.md). So every :class:`LogRetention` ``compact_every``
batches, the writing query folds its log into a *generation*, ``_compacted/upto=<n>/``: the
newest row per key of the batches up to ``n``, without buckets more than ``keep_s`` behind the
newest; a ``_COMMITTED`` file marks it complete. It then deletes what the generation *before*
it had already folded in. A reader uses the newest committed generation and the batch folders
after it, so what a reader listed stays on disk until a second, newer generation commits. A
re-run batch finds its generation committed and only repeats the deletion.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from features.calls import assemble_call_features, cli_bucket_aggregates, trunk_bucket_aggregates
from features.numbering import NumberingPlan
from features.settings import FeatureSettings
from features.sim import (
    ENTITY,
    SLIDE,
    assemble_sim_features,
    cell_bucket_aggregates,
    imei_bucket_aggregates,
    sim_bucket_aggregates,
    sim_events,
)

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery

#: aggregate name -> key columns of its rows
AGGREGATE_KEYS: dict[str, tuple[str, ...]] = {
    "sim": (ENTITY, SLIDE),
    "cell": ("cell_id", "bucket"),
    "imei": ("a_imei", SLIDE),
    "cli": ("a_number", "bucket_start"),
    "trunk": ("in_trunk_id", "trunk_bucket"),
}


#: generations of an update log live here; Spark's partition discovery skips ``_`` folders
COMPACTED = "_compacted"
_COMMITTED = "_COMMITTED"


@dataclass(frozen=True)
class LogRetention:
    """Compaction of the update logs: every ``compact_every`` micro-batches (0: never), keeping
    buckets up to ``keep_s`` seconds of event time behind the newest one."""

    compact_every: int
    keep_s: int


@dataclass(frozen=True)
class Trigger:
    """``available_now``: process what is there and stop; else every ``interval_s`` seconds."""

    available_now: bool = False
    interval_s: float = 10.0

    def apply(self, writer):
        if self.available_now:
            return writer.trigger(availableNow=True)
        return writer.trigger(processingTime=f"{self.interval_s} seconds")


def aggregate_streams(
    cdrs: DataFrame, *, settings: FeatureSettings, plan: NumberingPlan | None = None
) -> dict[str, DataFrame]:
    """The streaming aggregates of a (watermarked) canonical CDR stream, by name."""
    watermarked = cdrs.withWatermark("start_time", f"{settings.watermark_delay_s} seconds")
    events = sim_events(watermarked, plan=plan)
    return {
        "sim": sim_bucket_aggregates(events, settings=settings),
        "cell": cell_bucket_aggregates(events, settings=settings),
        "imei": imei_bucket_aggregates(events, settings=settings),
        "cli": cli_bucket_aggregates(watermarked, settings=settings),
        "trunk": trunk_bucket_aggregates(watermarked, settings=settings, plan=plan),
    }


def write_update_log(
    batch: DataFrame, batch_id: int, folder: Path, name: str, retention: LogRetention | None = None
) -> None:
    """One micro-batch's updated rows into ``folder`` (the log of aggregate ``name``), then a
    compaction when the batch id is a multiple of ``retention.compact_every``."""
    # overwrite this batch's folder only: a replayed batch replaces, never duplicates
    batch.write.mode("overwrite").parquet(str(folder / f"batch_id={batch_id}"))
    if retention and retention.compact_every and batch_id > 0 and batch_id % retention.compact_every == 0:
        compact_log(batch.sparkSession, folder, name, upto=batch_id, keep_s=retention.keep_s)


def _batch_ids(folder: Path) -> list[int]:
    if not folder.exists():
        return []
    ids = (p.name.removeprefix("batch_id=") for p in folder.iterdir() if p.name.startswith("batch_id="))
    return sorted(int(x) for x in ids if x.isdigit())


def _generations(folder: Path, *, committed: bool = True) -> list[int]:
    base = folder / COMPACTED
    if not base.exists():
        return []
    out = []
    for p in base.iterdir():
        n = p.name.removeprefix("upto=")
        if p.name.startswith("upto=") and n.isdigit() and (not committed or (p / _COMMITTED).exists()):
            out.append(int(n))
    return sorted(out)


def read_log(spark: SparkSession, folder: Path) -> DataFrame | None:
    """Every row of an update log that can be the newest of its key: the newest committed
    generation and the batch folders after it, ``batch_id`` a long. None: nothing written yet."""
    from pyspark.sql import functions as F

    gens = _generations(folder)
    base = gens[-1] if gens else -1
    ids = [n for n in _batch_ids(folder) if n > base]
    frames = []
    if gens:
        frames.append(spark.read.parquet(str(folder / COMPACTED / f"upto={base}")))
    if ids:
        paths = [str(folder / f"batch_id={n}") for n in ids]
        frames.append(spark.read.option("basePath", str(folder)).parquet(*paths))
    if not frames:
        return None
    frames = [f.withColumn("batch_id", F.col("batch_id").cast("long")) for f in frames]
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out


def log_horizon(folder: Path) -> int | None:
    """Epoch seconds: buckets before this may have been dropped from the log by its newest
    committed generation (its newest bucket less ``keep_s``). None: nothing dropped yet."""
    gens = _generations(folder)
    if not gens:
        return None
    marker = json.loads((folder / COMPACTED / f"upto={gens[-1]}" / _COMMITTED).read_text())
    if marker.get("newest_bucket") is None:
        return None
    return int(marker["newest_bucket"]) - int(marker["keep_s"])


def _newest_per_key(log: DataFrame, name: str) -> DataFrame:
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    newest = Window.partitionBy(*AGGREGATE_KEYS[name]).orderBy(F.col("batch_id").desc())
    return log.withColumn("_rank", F.row_number().over(newest)).where("_rank = 1").drop("_rank")


def compact_log(spark: SparkSession, folder: Path, name: str, *, upto: int, keep_s: int) -> None:
    """Fold the log of aggregate ``name`` up to batch ``upto`` into a generation, then delete
    what the generation before it had folded in (see the module doc)."""
    from pyspark.sql import functions as F

    target = folder / COMPACTED / f"upto={upto}"
    if not (target / _COMMITTED).exists():
        log = read_log(spark, folder)
        if log is None:
            return
        log = log.where(F.col("batch_id") <= upto)
        # seconds of event time, whether the bucket column is a long or a timestamp
        t = F.col(AGGREGATE_KEYS[name][1]).cast("long")
        newest = log.agg(F.max(t)).first()[0]
        rows = _newest_per_key(log, name)
        if newest is not None:
            rows = rows.where(t >= newest - keep_s)
        # sorted by bucket within each file: a reader's time bound skips row groups
        rows.sortWithinPartitions(AGGREGATE_KEYS[name][1]).write.mode("overwrite").parquet(str(target))
        (target / _COMMITTED).write_text(json.dumps({"upto": upto, "newest_bucket": newest, "keep_s": keep_s}))
    older = [g for g in _generations(folder) if g < upto]
    if not older:
        return
    previous = older[-1]
    for n in _batch_ids(folder):
        if n <= previous:
            shutil.rmtree(folder / f"batch_id={n}", ignore_errors=True)
    for g in _generations(folder, committed=False):
        if g < previous:
            shutil.rmtree(folder / COMPACTED / f"upto={g}", ignore_errors=True)


def update_log_writer(path: Path, name: str, retention: LogRetention | None) -> Callable[[DataFrame, int], None]:
    """A ``foreachBatch`` function writing aggregate ``name``'s updated rows to its log at ``path``."""

    def write(batch: DataFrame, batch_id: int) -> None:
        write_update_log(batch, batch_id, path, name, retention)

    return write


def start_feature_streams(
    cdrs: DataFrame,
    *,
    settings: FeatureSettings,
    state_dir: str | Path,
    checkpoint_dir: str | Path,
    trigger: Trigger,
    plan: NumberingPlan | None = None,
    retention: LogRetention | None = None,
) -> dict[str, StreamingQuery]:
    """Start one update-mode query per aggregate; returns them by name."""
    state, checkpoints = Path(state_dir), Path(checkpoint_dir)
    queries = {}
    for name, frame in aggregate_streams(cdrs, settings=settings, plan=plan).items():
        writer = (
            frame.writeStream.outputMode("update")
            .queryName(f"simguard-features-{name}-{state.name}")
            .option("checkpointLocation", str(checkpoints / name))
            .foreachBatch(update_log_writer(state / name, name, retention))
        )
        queries[name] = trigger.apply(writer).start()
    return queries


def latest(spark: SparkSession, state_dir: str | Path, name: str, *, where: Column | None = None) -> DataFrame:
    """The newest row per key of one aggregate's update log. ``where``: only rows it keeps (a
    time bound on the bucket column, applied before the ranking and pushed down to the Parquet
    scan, so a micro-batch reads the buckets it needs, not the whole history)."""
    folder = Path(state_dir) / name
    log = read_log(spark, folder)
    if log is None:
        raise FileNotFoundError(f"no update log of {name} under {folder}")
    if where is not None:
        log = log.where(where)
    return _newest_per_key(log, name).drop("batch_id")


def assemble_from_state(
    spark: SparkSession,
    state_dir: str | Path,
    *,
    cdrs: DataFrame | None,
    settings: FeatureSettings,
    plan: NumberingPlan | None = None,
) -> tuple[DataFrame, DataFrame | None]:
    """Feature rows from the streaming state: per-SIM rows, and per-call rows for ``cdrs``."""
    sim = assemble_sim_features(
        latest(spark, state_dir, "sim"),
        latest(spark, state_dir, "cell"),
        latest(spark, state_dir, "imei"),
        settings=settings,
        plan=plan,
    )
    calls = None
    if cdrs is not None:
        calls = assemble_call_features(
            cdrs, latest(spark, state_dir, "cli"), latest(spark, state_dir, "trunk"), settings=settings, plan=plan
        )
    return sim, calls
