"""When a SIM is scored and what each score reads: the steps of :mod:`features.sim` between
the state rows (:mod:`features.sim_rows`) and the named features.

3. :func:`scoring_points`: the times a SIM is scored: the end of every ``score_interval_s`` in
   which it called (or up to a ``horizon``);
   :func:`sample_points` keeps a bounded random sample per SIM and day for training.
4. :func:`hour_rows` merges a SIM's sub-bucket rows of each clock hour, and :func:`window_rows`
   merges, per point, the hour rows and sub-bucket rows of each window (the whole hours once per
   SIM and hour, shared by that hour's points).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from features.settings import FeatureSettings
from features.sim_rows import BUCKET_COUNTS, ENTITY, HOUR, MINUTE, merge_rows, newest_calls

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

#: scoring time of a row, epoch seconds (double)
AS_OF = "as_of"
#: start of the clock hour of an hour row, epoch seconds
HOUR_START = "hour_start"


def scoring_points(rows: DataFrame, *, settings: FeatureSettings, horizon: float | None = None) -> DataFrame:
    """(entity, as_of): the end of every scoring interval in which the entity called or sent an
    SMS. A point counts the events that start before it. With ``horizon`` (epoch s, the stream's
    newest event) points are capped at the end of that event's second, so they count it."""
    from pyspark.sql import functions as F

    step = settings.score_interval_s
    end = ((F.floor(F.col(MINUTE) / step) + 1) * step).cast("double")
    if horizon is not None:
        end = F.least(end, F.lit(float(math.floor(horizon) + 1)))
    active = rows.where((F.col("n_out") + F.col("n_sms_out")) > 0)
    return active.select(ENTITY, end.alias(AS_OF)).distinct()


def sample_points(
    points: DataFrame, *, per_day: int | None, keep_all_from: float | None = None, seed: int = 0
) -> DataFrame:
    """A bounded sample of the points per entity and UTC day: its first ``per_day // 4`` (how a
    SIM looks when it starts, what early detection learns from) and ``per_day`` more chosen by a
    hash of the entity, the time and ``seed`` (the same sample on every run). Points after
    ``keep_all_from`` (epoch s: the test days, which must look like the stream) are all kept."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if per_day is None:
        return points
    day = F.floor((F.col(AS_OF) - 1e-6) / 86400)
    by_entity_day = Window.partitionBy(ENTITY, day)
    first = F.row_number().over(by_entity_day.orderBy(F.col(AS_OF)))
    sampled = F.row_number().over(by_entity_day.orderBy(F.xxhash64(F.col(ENTITY), F.col(AS_OF), F.lit(seed))))
    keep = (F.col("_first") <= per_day // 4) | (F.col("_sampled") <= per_day)
    if keep_all_from is not None:
        keep = keep | (F.col(AS_OF) > keep_all_from)
    return points.withColumn("_first", first).withColumn("_sampled", sampled).where(keep).drop("_first", "_sampled")


def hour_of(column: Column) -> Column:
    """The start of the clock hour of an epoch-seconds column."""
    from pyspark.sql import functions as F

    return (F.floor(column / HOUR) * HOUR).cast("long")


def short_reach_hours(settings: FeatureSettings) -> int:
    """How many hours before its own the short window of a point reaches into."""
    return -(-settings.short_window_s // HOUR)


def hour_rows(rows: DataFrame, *, settings: FeatureSettings) -> DataFrame:
    """(entity, :data:`HOUR_START`) rows merged from the (entity, sub-bucket) rows that carry
    their context (:func:`features.sim_rows.with_context`): what a window reads of a whole hour."""
    from pyspark.sql import functions as F

    rows = rows.withColumn(HOUR_START, hour_of(F.col(MINUTE)))
    # a window reads no hour's context keys (the row's peaks already count them)
    return merge_rows(rows, [ENTITY, HOUR_START], max_calls=settings.max_calls).drop("ctx")


def _newest_by_rows(key: str, newest: int, on: Column | None = None) -> Column:
    """Aggregate: the newest ``newest`` calls of the rows (where ``on``) merged in the order of
    ``key``. Rows never overlap in time and each keeps its calls in time order, so the rows are
    sorted, not the calls themselves."""
    from pyspark.sql import functions as F

    row = F.struct(F.col(key), F.col("calls"))
    in_order = F.array_sort(F.collect_list(row if on is None else F.when(on, row)))
    return newest_calls(F.flatten(F.transform(in_order, lambda r: r["calls"])), newest)


def window_rows(rows: DataFrame, points: DataFrame, *, settings: FeatureSettings) -> DataFrame:
    """Per point, the long and the short window merged from (entity, sub-bucket) rows that carry
    their context (:func:`with_context`). Long: the whole hours before the point's hour
    (:func:`hour_rows`) and its own hour's sub-buckets before ``as_of``; short: the sub-buckets in
    the ``short_window_s`` before ``as_of``. Columns of the short window get the prefix ``s_``."""
    from pyspark.sql import functions as F

    hours = hour_rows(rows, settings=settings).withColumnRenamed(HOUR_START, "_hour")
    rows = rows.withColumn("_hour", hour_of(F.col(MINUTE)))
    pts = points.select(ENTITY, AS_OF).withColumn("_h", hour_of(F.col(AS_OF)))
    n_hours = settings.window_s // HOUR - 1
    newest = settings.max_calls
    # whole hours, merged once per (entity, hour of the points): every point of that hour reads
    # the same ones. Each probes its n_hours earlier hours by equality (no range join).
    point_hours = pts.select(ENTITY, "_h").distinct()
    back = point_hours.select(ENTITY, "_h", F.explode(F.sequence(F.lit(1), F.lit(n_hours))).alias("_k")).select(
        ENTITY, "_h", (F.col("_h") - F.col("_k") * HOUR).alias("_hour")
    )
    # Spark underestimates exploded rows and would broadcast them: join by sorting instead
    whole_hours = back.hint("merge").join(hours, [ENTITY, "_hour"])
    before = whole_hours.groupBy(ENTITY, "_h").agg(
        *[F.sum(c).cast("long").alias(c) for c in BUCKET_COUNTS],
        _newest_by_rows("_hour", newest).alias("calls"),
        *[F.array_distinct(F.flatten(F.collect_list(c))).alias(c) for c in ("callers", "cells", "imeis")],
        F.max("cohort_peak").alias("cohort_peak"),
        F.max("imei_peak").alias("imei_peak"),
        F.min("first").alias("first"),
        # calls per clock hour: the busiest one and how many had calls (every call counted)
        F.max("n_out").alias("_peak_whole"),
        F.count(F.when(F.col("n_out") > 0, 1)).alias("_active_whole"),
    )
    whole = pts.join(before, [ENTITY, "_h"])
    # sub-buckets of the point's own hour (and, for the short window, the hours it reaches back)
    reach = short_reach_hours(settings)
    near_keys = pts.select(ENTITY, AS_OF, F.explode(F.sequence(F.lit(0), F.lit(reach))).alias("_k"), "_h").select(
        ENTITY, AS_OF, "_h", (F.col("_h") - F.col("_k") * HOUR).alias("_hour")
    )
    near = near_keys.hint("merge").join(rows, [ENTITY, "_hour"]).where(F.col(MINUTE) < F.col(AS_OF))
    # one aggregation for both windows: every part says which window(s) it belongs to
    cols = [*BUCKET_COUNTS, "calls", "callers", "cells", "imeis", "cohort_peak", "imei_peak", "first"]
    # the whole hours' part sorts before the minutes of the point's own hour
    whole_parts = whole.select(
        ENTITY, AS_OF, *cols, "_peak_whole", "_active_whole", (F.col("_h") - 1).alias("_key"),
        F.lit(True).alias("_whole"), F.lit(True).alias("_long"), F.lit(False).alias("_short"),
    )
    near_parts = near.withColumn("first", F.col(MINUTE)).select(
        ENTITY,
        AS_OF,
        *cols,
        F.lit(None).cast("long").alias("_peak_whole"),
        F.lit(None).cast("long").alias("_active_whole"),
        F.col(MINUTE).alias("_key"),
        F.lit(False).alias("_whole"),
        (F.col("_hour") == F.col("_h")).alias("_long"),
        (F.col(MINUTE) >= F.col(AS_OF) - settings.short_window_s).alias("_short"),
    )
    parts = whole_parts.unionByName(near_parts)

    def merged(flag: str, p: str) -> list[Column]:
        on = F.col(flag)

        def union(name: str) -> Column:
            return F.array_distinct(F.flatten(F.collect_list(F.when(on, F.col(name))))).alias(f"{p}{name}")

        return [
            *[F.sum(F.when(on, F.col(c))).cast("long").alias(f"{p}{c}") for c in BUCKET_COUNTS],
            _newest_by_rows("_key", newest, on).alias(f"{p}calls"),
            union("callers"),
            union("cells"),
            union("imeis"),
        ]

    long, whole_hour = F.col("_long"), F.col("_whole")
    this_hour = long & ~whole_hour
    return parts.groupBy(ENTITY, AS_OF).agg(
        *merged("_long", ""),
        *merged("_short", "s_"),
        F.max(F.when(long, F.col("cohort_peak"))).alias("cohort_peak"),
        F.max(F.when(long, F.col("imei_peak"))).alias("imei_peak"),
        F.min(F.when(long, F.col("first"))).alias("first"),
        F.max("_peak_whole").alias("_peak_whole"),
        F.coalesce(F.sum("_active_whole"), F.lit(0)).cast("long").alias("_active_whole"),
        F.sum(F.when(this_hour, F.col("n_out"))).alias("_this_hour_out"),
    )
