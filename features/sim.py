"""Per-SIM features, defined once for the batch pipeline and the streaming job.

The computation has three steps, each a pure ``DataFrame -> DataFrame`` function that works on a
static DataFrame (batch: training, backfill) and on a streaming one (``streaming/``):

1. :func:`sim_events`: every CDR becomes two events, one for the calling number (``out``) and one
   for the called number (``in``), so that incoming calls are counted from the B side.
2. Aggregates over tumbling buckets of one slide (6 h by default), all of them usable in
   Structured Streaming (counts, sums, ``collect_list``/``collect_set``,
   ``approx_count_distinct``; no exact distinct aggregate): :func:`sim_bucket_aggregates` per
   (entity, slide bucket), :func:`cell_bucket_aggregates` per (cell, cohort bucket) and
   :func:`imei_bucket_aggregates` per (IMEI, slide bucket). Every CDR is aggregated once, not
   once per sliding window that contains it.
3. :func:`assemble_sim_features` merges a SIM's buckets into window rows and turns them into the
   named features. A row is the window that starts at a slide boundary ``s`` as seen at the end
   of a bucket ``e`` in which the SIM was active (``s <= e < s + window``): the full 24 h window,
   and also the partial windows a stream scores before the window closes (6 h, 12 h, 18 h in).
   Training, validation and test therefore hold the same kinds of rows the streaming job scores.
   Medians, means, gaps and distinct callees are computed from the sorted lists kept in step 2,
   never from order-dependent floating-point sums, so a stream that sees the data in many
   micro-batches produces exactly the rows a batch job does (``tests/test_feature_parity.py``).

Feature names come from :func:`sim_feature_names` (``calls_out_24h``,
``calls_out_peak_1h_24h``, ``distinct_callee_ratio_24h``), generated from ``FeatureSettings``.
Signatures follow DOMAIN.md: robocallers (many attempts, low answer ratio, short calls, sequential
dialling, regular gaps, no call-backs), SIM boxes (no incoming, no SMS, few cells shared by a
cohort, IMEI shared by many IMSIs, on-net, round the clock), Wangiri (international premium CLI on
the gateway, cancelled one-ring calls).
"""

from __future__ import annotations

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
SLIDE = "slide_start"
BUCKET_COUNTS = (
    "n_out", "n_answered", "n_short", "n_in", "n_sms_out", "n_night", "n_intl", "n_premium", "n_onnet",
    "n_gateway", "n_cancelled",
)
BUCKET_ARRAYS = ("calls", "callers", "cells", "imeis", "cell_buckets")

INTERNATIONAL_KINDS = ("international", "international_premium")
PREMIUM_KINDS = ("premium", "international_premium")


def sim_feature_names(settings: FeatureSettings) -> list[str]:
    """Names of the per-SIM model inputs, in a fixed order."""
    w, b = settings.window, settings.burst
    c = duration_label(settings.cohort_bucket_s)
    return [
        f"calls_out_{w}",
        f"calls_out_peak_{b}_{w}",
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
        f"imei_shared_sims_{w}",
        f"cell_cohort_peak_{c}_{w}",
        f"night_share_{w}",
        f"active_hours_{w}",
        f"gap_cv_{w}",
        f"sequential_share_{w}",
        f"intl_share_{w}",
        f"premium_share_{w}",
        f"onnet_share_{w}",
        f"gateway_share_{w}",
        f"cancelled_share_{w}",
        "cli_international_premium",
        "cli_domestic_mobile",
        f"hours_seen_{w}",
    ]


def sim_events(cdrs: DataFrame, *, plan: NumberingPlan | None = None) -> DataFrame:
    """One ``out`` event per CDR for its calling number and one ``in`` event for its callee."""
    from pyspark.sql import functions as F

    plan = plan or load_numbering_plan()
    # A domestic CLI arriving on a trunk is either another operator's subscriber (counted by the
    # operator that owns the SIM) or spoofed (the victim's number: judged per call by the spoofing
    # model, never held against the victim's own SIM). Foreign CLIs on trunks (Wangiri) count.
    own_or_foreign = (F.col("in_trunk_type") == "subscriber") | ~F.col("a_number").startswith(
        plan.domestic_prefix
    )
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


def _slide_bucket(settings: FeatureSettings) -> Column:
    from pyspark.sql import functions as F

    return F.window("start_time", f"{settings.slide_s} seconds")


def sim_bucket_aggregates(events: DataFrame, *, settings: FeatureSettings) -> DataFrame:
    """Per (entity, slide bucket) aggregates; streaming-safe (update mode with a watermark)."""
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

    def count_if(cond: Column) -> Column:
        return F.sum(F.when(cond, 1).otherwise(0)).cast("long")

    bucket = F.floor(F.col("t") / settings.cohort_bucket_s) * settings.cohort_bucket_s
    aggregated = events.groupBy(F.col(ENTITY), _slide_bucket(settings).alias("w")).agg(
        *[count_if(cond).alias(name) for name, cond in (
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
        )],
        # per-call details; sorted in assemble_sim_features so their order does not matter
        F.collect_list(
            F.when(
                out_voice,
                F.struct(
                    F.col("t"),
                    F.col("b_digits"),
                    F.when(answered, F.col("duration_s")).alias("answered_s"),
                    F.col("b_number"),
                ),
            )
        ).alias("calls"),
        F.collect_set(F.when(d == "in", F.col("a_number"))).alias("callers"),
        F.collect_set(F.when(out, F.col("cell_id"))).alias("cells"),
        F.collect_set(F.when(out, F.col("a_imei"))).alias("imeis"),
        F.collect_set(
            F.when(
                out & F.col("cell_id").isNotNull(),
                F.struct(F.col("cell_id"), bucket.cast("long").alias("bucket")),
            )
        ).alias("cell_buckets"),
    )
    return aggregated.select(
        ENTITY, F.col("w.start").cast("long").alias(SLIDE), *BUCKET_COUNTS, *BUCKET_ARRAYS
    )


def cell_bucket_aggregates(events: DataFrame, *, settings: FeatureSettings) -> DataFrame:
    """Distinct active SIMs per (cell, bucket): the cohort a SIM box shows in one cell."""
    from pyspark.sql import functions as F

    active = events.where((F.col("direction") == "out") & F.col("cell_id").isNotNull())
    return active.groupBy(
        F.col("cell_id"),
        F.window("start_time", f"{settings.cohort_bucket_s} seconds").alias("b"),
    ).agg(F.approx_count_distinct(ENTITY).alias("cell_sims")).select(
        "cell_id", F.col("b.start").cast("long").alias("bucket"), "cell_sims"
    )


def imei_bucket_aggregates(events: DataFrame, *, settings: FeatureSettings) -> DataFrame:
    """Distinct SIMs per (IMEI, slide bucket): many IMSIs behind one IMEI is a SIM-box sign."""
    from pyspark.sql import functions as F

    active = events.where((F.col("direction") == "out") & F.col("a_imei").isNotNull())
    return active.groupBy(F.col("a_imei"), _slide_bucket(settings).alias("w")).agg(
        F.approx_count_distinct(ENTITY).alias("imei_sims")
    ).select("a_imei", F.col("w.start").cast("long").alias(SLIDE), "imei_sims")


def bucket_context(sim_buckets: DataFrame, cell_aggs: DataFrame, imei_aggs: DataFrame) -> DataFrame:
    """Per (entity, slide bucket) its cross-SIM context: the largest cell cohort it was part of
    (hourly) and the most SIMs seen behind one of its IMEIs in the bucket. Only the narrow
    columns travel through these joins, never the buckets' call lists."""
    from pyspark.sql import functions as F

    cohort = (
        sim_buckets.select(ENTITY, SLIDE, F.explode("cell_buckets").alias("cb"))
        .join(
            cell_aggs,
            (F.col("cb.cell_id") == cell_aggs["cell_id"]) & (F.col("cb.bucket") == cell_aggs["bucket"]),
        )
        .groupBy(ENTITY, SLIDE)
        .agg(F.max("cell_sims").alias("cohort_peak"))
    )
    imei = (
        sim_buckets.select(ENTITY, SLIDE, F.explode("imeis").alias("a_imei"))
        .join(imei_aggs, ["a_imei", SLIDE])
        .groupBy(ENTITY, SLIDE)
        .agg(F.max("imei_sims").alias("imei_peak"))
    )
    return cohort.join(imei, [ENTITY, SLIDE], "full")


def merge_windows(
    buckets: DataFrame,
    context: DataFrame,
    *,
    settings: FeatureSettings,
    ends: DataFrame | None = None,
) -> DataFrame:
    """Window rows from a SIM's buckets (:func:`sim_bucket_aggregates`) and their context
    (:func:`bucket_context`).

    One row per window start ``s`` (a slide boundary) and bucket ``e`` in which the entity was
    active, ``s <= e < s + window``: the window as seen at the end of ``e``, so ``window_end`` is
    ``e + slide``. ``ends`` (``entity``, ``slide_start``) keeps only the rows ending at those
    buckets (the streaming job scores the buckets a micro-batch updated).
    """
    from pyspark.sql import functions as F

    n = settings.window_s // settings.slide_s
    slide = settings.slide_s
    carried = (SLIDE, *BUCKET_COUNTS, "calls", "callers", "cells", "imeis")
    # both sides grouped by entity: the join needs no further shuffle of the call lists
    per_entity = buckets.groupBy(ENTITY).agg(F.collect_list(F.struct(*[F.col(c) for c in carried])).alias("_bk"))
    ctx = context.groupBy(ENTITY).agg(
        F.collect_list(F.struct(F.col(SLIDE), F.col("cohort_peak"), F.col("imei_peak"))).alias("_ctx")
    )
    per_entity = per_entity.join(ctx, [ENTITY], "left")
    active_out = lambda x: (x["n_out"] + x["n_sms_out"]) > 0  # noqa: E731
    pairs = F.flatten(
        F.transform(
            F.filter("_bk", active_out),
            lambda b: F.transform(
                F.sequence(F.lit(0), F.lit(n - 1)),
                lambda j: F.struct((b[SLIDE] - j * slide).alias("s"), b[SLIDE].alias("e")),
            ),
        )
    )
    rows = per_entity.select(ENTITY, "_bk", "_ctx", F.explode(pairs).alias("_w"))
    if ends is not None:
        wanted = ends.select(F.col(ENTITY), F.col(SLIDE).alias("_end")).distinct()
        rows = rows.join(wanted, [ENTITY]).where(F.col("_w.e") == F.col("_end")).drop("_end")
    s, e = F.col("_w.s"), F.col("_w.e")

    def in_window(x):
        return (x[SLIDE] >= s) & (x[SLIDE] <= e)

    rows = rows.withColumn("_sel", F.filter("_bk", in_window)).withColumn(
        "_ctx_sel", F.filter(F.coalesce(F.col("_ctx"), F.array()), in_window)
    )
    sel = F.col("_sel")

    def total(name: str) -> Column:
        return F.aggregate(sel, F.lit(0).cast("long"), lambda acc, x: acc + x[name])

    def union(name: str) -> Column:
        return F.flatten(F.transform(sel, lambda x: x[name]))

    return rows.select(
        ENTITY,
        s.cast("timestamp").alias(WINDOW_START),
        (e + slide).cast("timestamp").alias(WINDOW_END),
        ((e - s) / 3600 + slide / 3600).alias("_hours_seen"),
        *[total(c).alias(c) for c in BUCKET_COUNTS],
        union("calls").alias("calls"),
        F.array_distinct(union("callers")).alias("callers"),
        F.array_distinct(union("cells")).alias("cells"),
        F.array_distinct(union("imeis")).alias("imeis"),
        F.array_max(F.transform("_ctx_sel", lambda x: x["cohort_peak"])).alias("cohort_peak"),
        F.array_max(F.transform("_ctx_sel", lambda x: x["imei_peak"])).alias("imei_sims"),
    )


def _share(num: str, den: str) -> Column:
    from pyspark.sql import functions as F

    return F.when(F.col(den) > 0, F.col(num) / F.col(den))


def assemble_sim_features(
    sim_buckets: DataFrame,
    cell_aggs: DataFrame,
    imei_aggs: DataFrame,
    *,
    settings: FeatureSettings,
    plan: NumberingPlan | None = None,
    ends: DataFrame | None = None,
) -> DataFrame:
    """Named feature rows (one per window row of an active entity, see :func:`merge_windows`)
    from the three bucket aggregates."""
    from pyspark.sql import functions as F

    plan = plan or load_numbering_plan()
    w, b = settings.window, settings.burst
    c = duration_label(settings.cohort_bucket_s)
    merged = merge_windows(
        sim_buckets, bucket_context(sim_buckets, cell_aggs, imei_aggs), settings=settings, ends=ends
    )
    active = merged.where((F.col("n_out") + F.col("n_sms_out")) > 0).withColumn(
        "_entity_kind", cli_class_column(ENTITY, plan)
    )

    # Arrays are materialised column by column: an array expression referenced inside a lambda
    # (or by several outputs) would otherwise be rebuilt, sort included, for every use.
    active = (
        active.withColumn("_calls", F.array_sort(F.col("calls")))  # structs sort by t first: time order
        .withColumn("_ts", F.transform("_calls", lambda x: x["t"]))
        .withColumn("_digits", F.transform("_calls", lambda x: x["b_digits"]))
        .withColumn(
            "_durations",
            F.array_sort(F.filter(F.transform("_calls", lambda x: x["answered_s"]), lambda v: v.isNotNull())),
        )
        .withColumn("_hours", F.transform("_ts", lambda t: F.floor(t / settings.burst_s)))
        .withColumn("_callees", F.array_distinct(F.transform("_calls", lambda x: x["b_number"])))
    )
    ts = F.col("_ts")
    n = F.size(ts)
    n_pairs = F.greatest(F.size(ts) - 1, F.lit(0))

    def pairs(arr: Column, fn) -> Column:
        return F.zip_with(F.slice(arr, 2, n_pairs), F.slice(arr, 1, n_pairs), fn)

    active = active.withColumn("_gaps", pairs(ts, lambda x, y: x - y)).withColumn(
        "_steps", pairs(F.col("_digits"), lambda x, y: F.abs(x - y))
    )
    gaps = F.col("_gaps")
    n_gaps = F.size(gaps)
    # sum and sum of squares in one pass: a mean referenced inside the lambda would be
    # re-evaluated for every element, which made busy windows quadratic
    active = active.withColumn(
        "_gap_sums",
        F.aggregate(
            gaps,
            F.struct(F.lit(0.0).alias("s"), F.lit(0.0).alias("ss")),
            lambda acc, x: F.struct((acc["s"] + x).alias("s"), (acc["ss"] + x * x).alias("ss")),
        ),
    )
    gap_sums = F.col("_gap_sums")
    gap_mean = gap_sums["s"] / n_gaps
    gap_var = F.greatest(gap_sums["ss"] / n_gaps - gap_mean * gap_mean, F.lit(0.0))
    n_seq = F.size(F.filter("_steps", lambda s: (s >= 1) & (s <= settings.sequential_max_step)))
    durations = F.col("_durations")
    n_dur = F.size(durations)
    dur_sum = F.aggregate(durations, F.lit(0.0), lambda acc, x: acc + x)
    median = F.when(
        n_dur > 0,
        (F.element_at(durations, F.floor((n_dur + 1) / 2).cast("int"))
         + F.element_at(durations, F.ceil((n_dur + 1) / 2).cast("int"))) / 2,
    )
    hours = F.col("_hours")
    peak = F.array_max(
        F.transform(F.array_distinct(hours), lambda h: F.size(F.filter(hours, lambda x: x == h)))
    )
    callees = F.col("_callees")
    n_callees = F.size(callees)
    callbacks = F.size(F.array_intersect(callees, F.col("callers")))
    entity_kind = F.col("_entity_kind")

    return active.select(
        ENTITY,
        WINDOW_START,
        WINDOW_END,
        F.col("n_out").alias(f"calls_out_{w}"),
        F.coalesce(peak, F.lit(0)).alias(f"calls_out_peak_{b}_{w}"),
        _share("n_answered", "n_out").alias(f"answered_share_{w}"),
        n_callees.alias(f"distinct_callees_{w}"),
        F.when(F.col("n_out") > 0, n_callees / F.col("n_out")).alias(f"distinct_callee_ratio_{w}"),
        F.when(n_callees > 0, F.col("n_out") / n_callees).alias(f"calls_per_callee_{w}"),
        _share("n_short", "n_answered").alias(f"short_call_share_{w}"),
        F.when(n_dur > 0, dur_sum / n_dur).alias(f"duration_mean_{w}"),
        median.alias(f"duration_median_{w}"),
        F.array_max(durations).alias(f"duration_max_{w}"),
        F.col("n_in").alias(f"calls_in_{w}"),
        (F.col("n_in") / (F.col("n_out") + 1)).alias(f"in_out_ratio_{w}"),
        F.when(n_callees > 0, callbacks / n_callees).alias(f"callback_share_{w}"),
        F.col("n_sms_out").alias(f"sms_out_{w}"),
        F.size("cells").alias(f"distinct_cells_{w}"),
        F.size("imeis").alias(f"distinct_imeis_{w}"),
        _share("n_night", "n_out").alias(f"night_share_{w}"),
        F.size(F.array_distinct(hours)).alias(f"active_hours_{w}"),
        F.when(n_gaps >= 2, F.sqrt(gap_var) / gap_mean).alias(f"gap_cv_{w}"),
        F.when(n >= 2, n_seq / (n - 1)).alias(f"sequential_share_{w}"),
        _share("n_intl", "n_out").alias(f"intl_share_{w}"),
        _share("n_premium", "n_out").alias(f"premium_share_{w}"),
        _share("n_onnet", "n_out").alias(f"onnet_share_{w}"),
        _share("n_gateway", "n_out").alias(f"gateway_share_{w}"),
        _share("n_cancelled", "n_out").alias(f"cancelled_share_{w}"),
        (entity_kind == "international_premium").cast("int").alias("cli_international_premium"),
        (entity_kind == "mobile").cast("int").alias("cli_domestic_mobile"),
        F.coalesce(F.col("cohort_peak"), F.lit(0)).alias(f"cell_cohort_peak_{c}_{w}"),
        F.coalesce(F.col("imei_sims"), F.lit(0)).alias(f"imei_shared_sims_{w}"),
        F.col("_hours_seen").alias(f"hours_seen_{w}"),
    ).select(*KEY_COLUMNS, *sim_feature_names(settings))


def build_sim_features(
    cdrs: DataFrame, *, settings: FeatureSettings, plan: NumberingPlan | None = None
) -> DataFrame:
    """Batch path: canonical CDRs in, one feature row per active entity and window out."""
    events = sim_events(cdrs, plan=plan)
    return assemble_sim_features(
        sim_bucket_aggregates(events, settings=settings),
        cell_bucket_aggregates(events, settings=settings),
        imei_bucket_aggregates(events, settings=settings),
        settings=settings,
        plan=plan,
    )
