"""Per-SIM features as of a scoring time, defined once for the batch pipeline and the stream.

A SIM is scored *as of* a time ``t``: its features cover the trailing long window (24 h: the
whole hours before ``t``'s hour plus that hour up to ``t``) and the trailing short window (1 h:
the minutes before ``t``), with the cross-SIM context (cell cohorts, IMEIs shared by SIMs) seen
by then. Nothing after ``t`` is read, and ``t`` is not aligned to any window grid, so a row
means the same whether the stream scores it after a one-minute micro-batch or a whole day.

The computation, each step a ``DataFrame -> DataFrame`` function:

1. :func:`sim_events`: every CDR becomes an ``out`` event for the calling number and an ``in``
   event for the callee.
2. :func:`minute_rows`: per (entity, sub-bucket of ``sub_bucket_s``): counts, the calls with
   their details, and the sets of callers, cells, IMEIs and (cell | IMEI, hour) context keys.
   Every column merges by sum or union (:func:`merge_rows`), so partial rows of the same
   sub-bucket (one per micro-batch, as the stream's state table holds them) merge into the row a
   batch job computes at once. :func:`context_members` gives the (cell | IMEI, hour, SIM) triples
   from which :func:`context_counts` counts distinct SIMs.
3. :func:`scoring_points`: the times a SIM is scored: the end of every ``score_interval_s`` in
   which it called (the stream caps them at its micro-batch's newest event);
   :func:`sample_points` keeps a bounded random sample per SIM and day for training.
4. :func:`window_rows` merges, per point, the SIM's rows of each window;
   :func:`assemble_sim_features` turns them into the named features.

Counts (calls out and in, answered, short, at night, abroad ...) and the busiest hour count every
call of the window. Medians, means, gaps, sequential dialling, distinct callees and call-backs
come from the window's newest ``max_calls`` calls (200), in time order, never from
order-dependent floating-point sums: any split of the CDRs into micro-batches gives the same rows
(``tests/test_feature_parity.py``), and a SIM that calls all day costs the same per scoring
point as one that called 200 times.

Feature names come from :func:`sim_feature_names` (``calls_out_24h``, ``calls_out_1h``,
``calls_out_peak_1h_24h``), generated from ``FeatureSettings``. Signatures follow DOMAIN.md:
robocallers (many attempts, low answer ratio, short calls, sequential dialling, regular gaps, no
call-backs), SIM boxes (no incoming, no SMS, few cells shared by a cohort, IMEI shared by many
IMSIs, on-net, round the clock), Wangiri (international premium CLI on the gateway, cancelled
one-ring calls).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from features.numbering import (
    NumberingPlan,
    cli_class_column,
    home_operator_column,
    load_numbering_plan,
)
from features.settings import FeatureSettings, duration_label

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

ENTITY = "entity"
WINDOW_START = "window_start"
WINDOW_END = "window_end"
KEY_COLUMNS = (ENTITY, WINDOW_START, WINDOW_END)
#: start of an entity's slide bucket, epoch seconds
BUCKET_COUNTS = (
    "n_out",
    "n_answered",
    "n_short",
    "n_in",
    "n_sms_out",
    "n_night",
    "n_intl",
    "n_premium",
    "n_onnet",
    "n_gateway",
    "n_cancelled",
)

INTERNATIONAL_KINDS = ("international", "international_premium")
PREMIUM_KINDS = ("premium", "international_premium")


def _window_feature_names(w: str, b: str | None) -> list[str]:
    """Features computed the same way for each window (``b``: the burst label, long window only)."""
    names = [
        f"calls_out_{w}",
        *([f"calls_out_peak_{b}_{w}"] if b else []),
        f"answered_share_{w}",
        f"distinct_callees_{w}",
        f"distinct_callee_ratio_{w}",
        f"calls_per_callee_{w}",
        f"short_call_share_{w}",
        f"duration_mean_{w}",
        f"duration_median_{w}",
        f"duration_max_{w}",
        f"calls_in_{w}",
        f"in_out_ratio_{w}",
        f"callback_share_{w}",
        f"sms_out_{w}",
        f"distinct_cells_{w}",
        f"distinct_imeis_{w}",
        f"night_share_{w}",
        *([f"active_hours_{w}"] if b else []),
        f"gap_cv_{w}",
        f"sequential_share_{w}",
        f"intl_share_{w}",
        f"premium_share_{w}",
        f"onnet_share_{w}",
        f"gateway_share_{w}",
        f"cancelled_share_{w}",
    ]
    return names


def sim_feature_names(settings: FeatureSettings) -> list[str]:
    """Names of the per-SIM model inputs, in a fixed order."""
    w, b = settings.window, settings.burst
    c = duration_label(settings.cohort_bucket_s)
    return [
        *_window_feature_names(w, b),
        f"imei_shared_sims_{w}",
        f"cell_cohort_peak_{c}_{w}",
        "cli_international_premium",
        "cli_domestic_mobile",
        f"hours_seen_{w}",
        *_window_feature_names(settings.short_window, None),
    ]


def sim_events(cdrs: DataFrame, *, plan: NumberingPlan | None = None) -> DataFrame:
    """One ``out`` event per CDR for its calling number and one ``in`` event for its callee."""
    from pyspark.sql import functions as F

    plan = plan or load_numbering_plan()
    # A domestic CLI arriving on a trunk is either another operator's subscriber (counted by the
    # operator that owns the SIM) or spoofed (the victim's number: judged per call by the spoofing
    # model, never held against the victim's own SIM). Foreign CLIs on trunks (Wangiri) count.
    own_or_foreign = (F.col("in_trunk_type") == "subscriber") | ~F.col("a_number").startswith(plan.domestic_prefix)
    digits = F.regexp_replace("b_number", r"[^0-9]", "")
    # per CDR, before the explode: only the out side reads the callee's class, operator and
    # digits, so they are computed once per CDR, and only for CDRs that make an out event (the
    # classifiers are long CASE chains; per event they were a third of the feature job)
    per_cdr = cdrs.select(
        F.when(own_or_foreign, F.col("a_number")).alias("_out_entity"),
        "record_id",
        "operator",
        "event_type",
        "a_number",
        "b_number",
        "a_imei",
        "start_time",
        "duration_s",
        "release_cause",
        "cell_id",
        "in_trunk_type",
        F.col("start_time").cast("double").alias("t"),
        # the last 12 digits fit a long and keep neighbouring numbers neighbours
        F.when(own_or_foreign, F.substring(digits, -12, 12).cast("long")).alias("b_digits"),
        F.when(own_or_foreign, cli_class_column("b_number", plan)).alias("b_kind"),
        F.when(own_or_foreign, home_operator_column("b_number", plan)).alias("b_home"),
    )
    sides = F.explode(
        F.array(
            F.struct(F.col("_out_entity").alias(ENTITY), F.lit("out").alias("direction")),
            F.struct(F.col("b_number").alias(ENTITY), F.lit("in").alias("direction")),
        )
    )
    return (
        per_cdr.select(sides.alias("side"), "*")
        .select("side.*", "*")
        .drop("side", "_out_entity")
        .where(F.col(ENTITY).isNotNull())
    )


HOUR = 3600
#: scoring time of a row, epoch seconds (double)
AS_OF = "as_of"
#: sub-bucket start, epoch seconds
MINUTE = "b"
#: context keys: a SIM's cells and IMEIs per hour
CELL, IMEI = "cell", "imei"


def _count_if(cond: Column) -> Column:
    from pyspark.sql import functions as F

    return F.sum(F.when(cond, 1).otherwise(0)).cast("long")


def _context_keys(out: Column, kind: str, column: str, hour: Column) -> Column:
    from pyspark.sql import functions as F

    key = F.struct(F.lit(kind).alias("kind"), F.col(column).alias("key"), hour.alias("hour"))
    return F.collect_set(F.when(out & F.col(column).isNotNull(), key))


def minute_rows(events: DataFrame, *, settings: FeatureSettings) -> DataFrame:
    """Per (entity, sub-bucket) aggregates of :func:`sim_events` (see the module docstring)."""
    from pyspark.sql import functions as F

    d = F.col("direction")
    out = d == "out"
    out_voice = out & (F.col("event_type") == "voice")
    answered = F.col("release_cause") == "answered"
    local_hour = F.floor(F.pmod(F.col("t") + settings.local_utc_offset_h * 3600, 86400) / 3600)
    if settings.night_start_hour > settings.night_end_hour:
        night = (local_hour >= settings.night_start_hour) | (local_hour < settings.night_end_hour)
    else:
        night = (local_hour >= settings.night_start_hour) & (local_hour < settings.night_end_hour)
    hour = (F.floor(F.col("t") / settings.cohort_bucket_s) * settings.cohort_bucket_s).cast("long")
    sub = settings.sub_bucket_s
    return events.groupBy(F.col(ENTITY), (F.floor(F.col("t") / sub) * sub).cast("long").alias(MINUTE)).agg(
        *[
            _count_if(cond).alias(name)
            for name, cond in (
                ("n_out", out_voice),
                ("n_answered", out_voice & answered),
                ("n_short", out_voice & answered & (F.col("duration_s") < settings.short_call_s)),
                ("n_in", (d == "in") & (F.col("event_type") == "voice")),
                ("n_sms_out", out & (F.col("event_type") == "sms")),
                ("n_night", out_voice & night),
                ("n_intl", out_voice & F.col("b_kind").isin(*INTERNATIONAL_KINDS)),
                ("n_premium", out_voice & F.col("b_kind").isin(*PREMIUM_KINDS)),
                ("n_onnet", out_voice & (F.col("b_home") == F.col("operator"))),
                ("n_gateway", out_voice & (F.col("in_trunk_type") == "international_gateway")),
                ("n_cancelled", out_voice & (F.col("release_cause") == "cancelled")),
            )
        ],
        # per-call details (the features and an analyst's evidence); sorted when windows merge
        F.collect_list(
            F.when(
                out_voice,
                F.struct(
                    F.col("t"),
                    F.col("b_digits"),
                    F.when(answered, F.col("duration_s")).alias("answered_s"),
                    F.col("b_number"),
                    F.col("duration_s"),
                    F.col("release_cause"),
                    F.col("cell_id"),
                    F.col("a_imei"),
                ),
            )
        ).alias("calls"),
        F.collect_set(F.when(d == "in", F.col("a_number"))).alias("callers"),
        F.collect_set(F.when(out, F.col("cell_id"))).alias("cells"),
        F.collect_set(F.when(out, F.col("a_imei"))).alias("imeis"),
        F.array_union(_context_keys(out, CELL, "cell_id", hour), _context_keys(out, IMEI, "a_imei", hour)).alias("ctx"),
    )


def merge_rows(rows: DataFrame, keys: list[str | Column]) -> DataFrame:
    """Rows with the :func:`minute_rows` columns merged per ``keys`` (sums and unions); carries
    ``cohort_peak`` / ``imei_peak`` (max) and the earliest ``first`` when present."""
    from pyspark.sql import functions as F

    def union(name: str) -> Column:
        return F.array_distinct(F.flatten(F.collect_list(name))).alias(name)

    extra = []
    for name in ("cohort_peak", "imei_peak"):
        if name in rows.columns:
            extra.append(F.max(name).alias(name))
    extra.append(F.min(F.col("first") if "first" in rows.columns else F.col(MINUTE)).alias("first"))
    return rows.groupBy(*keys).agg(
        *[F.sum(c).cast("long").alias(c) for c in BUCKET_COUNTS],
        # structs sort by their first field, the call's time: every merged row keeps its calls in
        # time order, so windows put them in order by sorting whole rows, not calls
        F.array_sort(F.flatten(F.collect_list("calls"))).alias("calls"),
        union("callers"),
        union("cells"),
        union("imeis"),
        union("ctx"),
        *extra,
    )


def context_members(events: DataFrame, *, settings: FeatureSettings) -> DataFrame:
    """Distinct (kind, key, hour, entity): the SIMs calling from each cell and IMEI per hour."""
    from pyspark.sql import functions as F

    active = events.where(F.col("direction") == "out")
    hour = (F.floor(F.col("t") / settings.cohort_bucket_s) * settings.cohort_bucket_s).cast("long")
    cells = active.where(F.col("cell_id").isNotNull()).select(
        F.lit(CELL).alias("kind"), F.col("cell_id").alias("key"), hour.alias("hour"), ENTITY
    )
    imeis = active.where(F.col("a_imei").isNotNull()).select(
        F.lit(IMEI).alias("kind"), F.col("a_imei").alias("key"), hour.alias("hour"), ENTITY
    )
    return cells.unionByName(imeis).distinct()


def context_counts(members: DataFrame) -> DataFrame:
    """Distinct SIMs per (kind, key, hour) from :func:`context_members` rows (duplicates allowed)."""
    from pyspark.sql import functions as F

    # size of the set, not countDistinct: one aggregation, one shuffle
    return members.groupBy("kind", "key", "hour").agg(F.size(F.collect_set(ENTITY)).alias("sims"))


def with_context(rows: DataFrame, counts: DataFrame) -> DataFrame:
    """Adds ``cohort_peak`` (most SIMs in one of the row's cells in an hour) and ``imei_peak``
    (most SIMs behind one of its IMEIs in an hour) to (entity, sub-bucket) rows. Only the
    narrow key columns travel through the join, never the call lists."""
    from pyspark.sql import functions as F

    keys = rows.select(ENTITY, MINUTE, F.explode("ctx").alias("c")).select(
        ENTITY, MINUTE, F.col("c.kind").alias("kind"), F.col("c.key").alias("key"), F.col("c.hour").alias("hour")
    )
    peaks = (
        keys.hint("merge").join(counts, ["kind", "key", "hour"])
        .groupBy(ENTITY, MINUTE)
        .agg(
            F.max(F.when(F.col("kind") == CELL, F.col("sims"))).alias("cohort_peak"),
            F.max(F.when(F.col("kind") == IMEI, F.col("sims"))).alias("imei_peak"),
        )
    )
    return rows.join(peaks, [ENTITY, MINUTE], "left")


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


def window_rows(rows: DataFrame, points: DataFrame, *, settings: FeatureSettings) -> DataFrame:
    """Per point, the long and the short window merged from (entity, sub-bucket) rows that carry
    their context (:func:`with_context`). Long: the whole hours before the point's hour (from
    hourly merges) and its own hour's sub-buckets before ``as_of``; short: the sub-buckets in the
    ``short_window_s`` before ``as_of``. Columns of the short window get the prefix ``s_``."""
    from pyspark.sql import functions as F

    hour_of = lambda c: (F.floor(c / HOUR) * HOUR).cast("long")  # noqa: E731
    rows = rows.withColumn("_hour", hour_of(F.col(MINUTE)))
    hours = merge_rows(rows, [ENTITY, "_hour"])
    pts = points.select(ENTITY, AS_OF).withColumn("_h", hour_of(F.col(AS_OF)))
    n_hours = settings.window_s // HOUR - 1
    # whole hours: each point probes its n_hours earlier hours by equality (no range join)
    back = pts.select(ENTITY, AS_OF, F.explode(F.sequence(F.lit(1), F.lit(n_hours))).alias("_k"), "_h").select(
        ENTITY, AS_OF, (F.col("_h") - F.col("_k") * HOUR).alias("_hour")
    )
    # Spark underestimates exploded rows and would broadcast them: join by sorting instead
    whole = back.hint("merge").join(hours, [ENTITY, "_hour"])
    # sub-buckets of the point's own hour (and, for the short window, the hours it reaches back)
    reach = -(-settings.short_window_s // HOUR)
    near_keys = pts.select(ENTITY, AS_OF, F.explode(F.sequence(F.lit(0), F.lit(reach))).alias("_k"), "_h").select(
        ENTITY, AS_OF, "_h", (F.col("_h") - F.col("_k") * HOUR).alias("_hour")
    )
    near = near_keys.hint("merge").join(rows, [ENTITY, "_hour"]).where(F.col(MINUTE) < F.col(AS_OF))
    # one aggregation for both windows: every part says which window(s) it belongs to
    cols = [*BUCKET_COUNTS, "calls", "callers", "cells", "imeis", "cohort_peak", "imei_peak", "first"]
    whole_parts = whole.select(
        ENTITY, AS_OF, *cols, F.col("_hour").alias("_key"),
        F.lit(True).alias("_whole"), F.lit(True).alias("_long"), F.lit(False).alias("_short"),
    )
    near_parts = near.withColumn("first", F.col(MINUTE)).select(
        ENTITY,
        AS_OF,
        *cols,
        F.col(MINUTE).alias("_key"),
        F.lit(False).alias("_whole"),
        (F.col("_hour") == F.col("_h")).alias("_long"),
        (F.col(MINUTE) >= F.col(AS_OF) - settings.short_window_s).alias("_short"),
    )
    parts = whole_parts.unionByName(near_parts)
    newest = settings.max_calls

    def calls(on: Column) -> Column:
        # whole rows in time order (hours before minutes), each already sorted: the newest calls
        # are the tail, found without sorting the calls themselves
        rows_in_order = F.array_sort(F.collect_list(F.when(on, F.struct(F.col("_key"), F.col("calls")))))
        listed = F.flatten(F.transform(rows_in_order, lambda r: r["calls"]))
        return F.slice(listed, F.greatest(F.size(listed) - newest + 1, F.lit(1)), newest)

    def merged(flag: str, p: str) -> list[Column]:
        on = F.col(flag)

        def union(name: str) -> Column:
            return F.array_distinct(F.flatten(F.collect_list(F.when(on, F.col(name))))).alias(f"{p}{name}")

        return [
            *[F.sum(F.when(on, F.col(c))).cast("long").alias(f"{p}{c}") for c in BUCKET_COUNTS],
            calls(on).alias(f"{p}calls"),
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
        # calls per clock hour: the busiest one and how many had calls (every call counted)
        F.max(F.when(whole_hour, F.col("n_out"))).alias("_peak_whole"),
        F.count(F.when(whole_hour & (F.col("n_out") > 0), 1)).alias("_active_whole"),
        F.sum(F.when(this_hour, F.col("n_out"))).alias("_this_hour_out"),
    )


def _share(num: str, den: str) -> Column:
    from pyspark.sql import functions as F

    return F.when(F.col(den) > 0, F.col(num) / F.col(den))


def _window_columns(frame: DataFrame, p: str, w: str, b: str | None, settings: FeatureSettings):
    """(frame with helper arrays, named feature columns) for the window whose merged columns carry
    the prefix ``p`` (``""`` long, ``"s_"`` short); ``b``: the burst label (long window only)."""
    from pyspark.sql import functions as F

    def col(name: str) -> Column:
        return F.col(f"{p}{name}")

    # Arrays are materialised column by column: an array expression referenced inside a lambda
    # (or by several outputs) would otherwise be rebuilt, sort included, for every use.
    frame = (
        frame.withColumn(f"_{p}calls", F.coalesce(col("calls"), F.array()))  # in time order
        .withColumn(f"_{p}ts", F.transform(f"_{p}calls", lambda x: x["t"]))
        .withColumn(f"_{p}digits", F.transform(f"_{p}calls", lambda x: x["b_digits"]))
        .withColumn(
            f"_{p}durations",
            F.array_sort(F.filter(F.transform(f"_{p}calls", lambda x: x["answered_s"]), lambda v: v.isNotNull())),
        )
        .withColumn(f"_{p}callees", F.array_distinct(F.transform(f"_{p}calls", lambda x: x["b_number"])))
    )
    ts = F.col(f"_{p}ts")
    n = F.size(ts)
    n_pairs = F.greatest(F.size(ts) - 1, F.lit(0))

    def pairs(arr: Column, fn) -> Column:
        return F.zip_with(F.slice(arr, 2, n_pairs), F.slice(arr, 1, n_pairs), fn)

    frame = frame.withColumn(f"_{p}gaps", pairs(ts, lambda x, y: x - y)).withColumn(
        f"_{p}steps", pairs(F.col(f"_{p}digits"), lambda x, y: F.abs(x - y))
    )
    gaps = F.col(f"_{p}gaps")
    n_gaps = F.size(gaps)
    # sum and sum of squares in one pass: a mean referenced inside the lambda would be
    # re-evaluated for every element, which made busy windows quadratic
    frame = frame.withColumn(
        f"_{p}gap_sums",
        F.aggregate(
            gaps,
            F.struct(F.lit(0.0).alias("s"), F.lit(0.0).alias("ss")),
            lambda acc, x: F.struct((acc["s"] + x).alias("s"), (acc["ss"] + x * x).alias("ss")),
        ),
    )
    gap_sums = F.col(f"_{p}gap_sums")
    gap_mean = gap_sums["s"] / n_gaps
    gap_var = F.greatest(gap_sums["ss"] / n_gaps - gap_mean * gap_mean, F.lit(0.0))
    n_seq = F.size(F.filter(f"_{p}steps", lambda s: (s >= 1) & (s <= settings.sequential_max_step)))
    durations = F.col(f"_{p}durations")
    n_dur = F.size(durations)
    dur_sum = F.aggregate(durations, F.lit(0.0), lambda acc, x: acc + x)
    median = F.when(
        n_dur > 0,
        (
            F.element_at(durations, F.floor((n_dur + 1) / 2).cast("int"))
            + F.element_at(durations, F.ceil((n_dur + 1) / 2).cast("int"))
        )
        / 2,
    )
    callees = F.col(f"_{p}callees")
    n_callees = F.size(callees)
    callbacks = F.size(F.array_intersect(callees, F.coalesce(col("callers"), F.array())))
    n_out = F.coalesce(col("n_out"), F.lit(0))

    def count(name: str) -> Column:
        return F.coalesce(col(name), F.lit(0))

    def share(num: str) -> Column:
        return F.when(n_out > 0, count(num) / n_out)

    columns = {
        f"calls_out_{w}": n_out,
        f"answered_share_{w}": share("n_answered"),
        f"distinct_callees_{w}": n_callees,
        f"distinct_callee_ratio_{w}": F.when(n_out > 0, n_callees / n_out),
        f"calls_per_callee_{w}": F.when(n_callees > 0, n_out / n_callees),
        f"short_call_share_{w}": F.when(count("n_answered") > 0, count("n_short") / count("n_answered")),
        f"duration_mean_{w}": F.when(n_dur > 0, dur_sum / n_dur),
        f"duration_median_{w}": median,
        f"duration_max_{w}": F.array_max(durations),
        f"calls_in_{w}": count("n_in"),
        f"in_out_ratio_{w}": count("n_in") / (n_out + 1),
        f"callback_share_{w}": F.when(n_callees > 0, callbacks / n_callees),
        f"sms_out_{w}": count("n_sms_out"),
        f"distinct_cells_{w}": F.size(F.coalesce(col("cells"), F.array())),
        f"distinct_imeis_{w}": F.size(F.coalesce(col("imeis"), F.array())),
        f"night_share_{w}": share("n_night"),
        f"gap_cv_{w}": F.when(n_gaps >= 2, F.sqrt(gap_var) / gap_mean),
        f"sequential_share_{w}": F.when(n >= 2, n_seq / (n - 1)),
        f"intl_share_{w}": share("n_intl"),
        f"premium_share_{w}": share("n_premium"),
        f"onnet_share_{w}": share("n_onnet"),
        f"gateway_share_{w}": share("n_gateway"),
        f"cancelled_share_{w}": share("n_cancelled"),
    }
    if b:
        this_hour = F.coalesce(F.col("_this_hour_out"), F.lit(0))
        columns[f"calls_out_peak_{b}_{w}"] = F.greatest(F.coalesce(F.col("_peak_whole"), F.lit(0)), this_hour)
        columns[f"active_hours_{w}"] = F.col("_active_whole") + (this_hour > 0).cast("int")
    return frame, [columns[name].alias(name) for name in _window_feature_names(w, b)]


#: the calls kept with a row for an analyst (the newest first is the last element)
EVIDENCE_CALLS = 50


def assemble_sim_features(
    windows: DataFrame,
    *,
    settings: FeatureSettings,
    plan: NumberingPlan | None = None,
    evidence: bool = False,
) -> DataFrame:
    """Named feature rows from :func:`window_rows`: keys (entity, window start and end, the
    scoring time), then :func:`sim_feature_names`. ``evidence`` adds ``recent_calls``, the last
    :data:`EVIDENCE_CALLS` calls of the long window (what an analyst checks a flag against)."""
    from pyspark.sql import functions as F

    plan = plan or load_numbering_plan()
    w, b = settings.window, settings.burst
    c = duration_label(settings.cohort_bucket_s)
    frame = windows.where((F.col("n_out") + F.col("n_sms_out")) > 0).withColumn(
        "_entity_kind", cli_class_column(ENTITY, plan)
    )
    frame, long_cols = _window_columns(frame, "", w, b, settings)
    frame, short_cols = _window_columns(frame, "s_", settings.short_window, None, settings)
    entity_kind = F.col("_entity_kind")
    as_of = F.col(AS_OF)
    extra = []
    if evidence:
        newest = F.greatest(F.size("_calls") - EVIDENCE_CALLS + 1, F.lit(1))
        extra.append(F.slice(F.col("_calls"), newest, EVIDENCE_CALLS).alias("recent_calls"))
    named = {
        f"imei_shared_sims_{w}": F.coalesce(F.col("imei_peak"), F.lit(0)),
        f"cell_cohort_peak_{c}_{w}": F.coalesce(F.col("cohort_peak"), F.lit(0)),
        "cli_international_premium": (entity_kind == "international_premium").cast("int"),
        "cli_domestic_mobile": (entity_kind == "mobile").cast("int"),
        # how long the SIM's activity in the window has run (a SIM first seen minutes ago, or a
        # stream started minutes ago, has little history)
        f"hours_seen_{w}": (as_of - F.col("first")) / 3600,
    }
    out = frame.select(
        ENTITY,
        (as_of - settings.window_s).cast("timestamp").alias(WINDOW_START),
        as_of.cast("timestamp").alias(WINDOW_END),
        *long_cols,
        *short_cols,
        *[col.alias(name) for name, col in named.items()],
        *extra,
    )
    return out.select(*KEY_COLUMNS, *sim_feature_names(settings), *(["recent_calls"] if evidence else []))


def sim_state(cdrs: DataFrame, *, settings: FeatureSettings, plan: NumberingPlan | None = None):
    """(minute rows, context members) of canonical CDRs: what the stream's state tables hold."""
    events = sim_events(cdrs, plan=plan)
    return minute_rows(events, settings=settings), context_members(events, settings=settings)


def sim_features_at(
    rows: DataFrame,
    members: DataFrame,
    points: DataFrame,
    *,
    settings: FeatureSettings,
    plan: NumberingPlan | None = None,
    evidence: bool = False,
) -> DataFrame:
    """Feature rows at ``points`` (entity, as_of) from minute rows and context members (partial
    rows of the same key allowed: they are merged first)."""
    merged = merge_rows(rows, [ENTITY, MINUTE]).drop("first")
    with_ctx = with_context(merged, context_counts(members))
    return assemble_sim_features(
        window_rows(with_ctx, points, settings=settings), settings=settings, plan=plan, evidence=evidence
    )


def build_sim_features(
    cdrs: DataFrame,
    *,
    settings: FeatureSettings,
    plan: NumberingPlan | None = None,
    sample_before: float | None = None,
) -> DataFrame:
    """Batch path: canonical CDRs in, one feature row per SIM and scoring point out: every point,
    except that points up to ``sample_before`` (epoch s, the training and validation days) are a
    sample of at most ``train_points_per_day`` per SIM and day."""
    rows, members = sim_state(cdrs, settings=settings, plan=plan)
    points = scoring_points(rows, settings=settings)
    if sample_before is not None:
        points = sample_points(points, per_day=settings.train_points_per_day, keep_all_from=sample_before)
    return sim_features_at(rows, members, points, settings=settings, plan=plan)
