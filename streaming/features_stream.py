"""The streaming twin of the batch feature job.

The same aggregate definitions as ``pipeline.featurize`` (``features.sim``, ``features.calls``)
run as Structured Streaming aggregations with a watermark in update mode, so a SIM's window row is
refreshed in every micro-batch that touches it, before the window closes. Each query writes the
rows it updated to an update log, ``<state_dir>/<aggregate>/batch_id=<n>/``, overwriting that
batch's folder: a micro-batch that Spark re-runs after a crash rewrites the same rows, nothing is
appended twice. :func:`latest` reads the newest row per key, and :func:`assemble_from_state`
turns those into feature rows with the very functions the batch job uses.
"""

from __future__ import annotations

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


def _log_writer(path: Path) -> Callable[[DataFrame, int], None]:
    def write(batch: DataFrame, batch_id: int) -> None:
        # overwrite this batch's folder only: a replayed batch replaces, never duplicates
        batch.write.mode("overwrite").parquet(str(path / f"batch_id={batch_id}"))

    return write


def start_feature_streams(
    cdrs: DataFrame,
    *,
    settings: FeatureSettings,
    state_dir: str | Path,
    checkpoint_dir: str | Path,
    trigger: Trigger,
    plan: NumberingPlan | None = None,
) -> dict[str, StreamingQuery]:
    """Start one update-mode query per aggregate; returns them by name."""
    state, checkpoints = Path(state_dir), Path(checkpoint_dir)
    queries = {}
    for name, frame in aggregate_streams(cdrs, settings=settings, plan=plan).items():
        writer = (
            frame.writeStream.outputMode("update")
            .queryName(f"simguard-features-{name}-{state.name}")
            .option("checkpointLocation", str(checkpoints / name))
            .foreachBatch(_log_writer(state / name))
        )
        queries[name] = trigger.apply(writer).start()
    return queries


def latest(spark: SparkSession, state_dir: str | Path, name: str, *, where: Column | None = None) -> DataFrame:
    """The newest row per key of one aggregate's update log. ``where``: only rows it keeps (a
    time bound on the bucket column, applied before the ranking and pushed down to the Parquet
    scan, so a micro-batch reads the buckets it needs, not the whole history)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    keys = AGGREGATE_KEYS[name]
    log = spark.read.parquet(str(Path(state_dir) / name))
    if where is not None:
        log = log.where(where)
    newest = Window.partitionBy(*keys).orderBy(F.col("batch_id").desc())
    return log.withColumn("_rank", F.row_number().over(newest)).where("_rank = 1").drop("_rank", "batch_id")


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
