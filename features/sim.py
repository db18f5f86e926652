"""Per-SIM features, defined once for the batch pipeline and the streaming job.

The computation has three steps, each a pure ``DataFrame -> DataFrame`` function that works on a
static DataFrame (batch: training, backfill) and on a streaming one (``streaming/``):

1. :func:`sim_events`: every CDR becomes two events, one for the calling number (``out``) and one
   for the called number (``in``), so that incoming calls are counted from the B side.
2. Windowed aggregates, all of them usable in Structured Streaming (counts, sums,
   ``collect_list``/``collect_set``, ``approx_count_distinct``; no exact distinct aggregate):
   :func:`sim_window_aggregates` per (entity, sliding window), :func:`cell_bucket_aggregates`
   per (cell, bucket) and :func:`imei_window_aggregates` per (IMEI, window).
3. :func:`assemble_sim_features` turns the aggregates into the named features. Medians, means,
   gaps and distinct callees are computed from the sorted lists kept in step 2, never from
   order-dependent floating-point sums, so a stream that sees the data in many micro-batches
   produces exactly the rows a batch job does (``tests/test_feature_parity.py``).

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
    ]


def _window(settings: FeatureSettings) -> Column:
    from pyspark.sql import functions as F

    return F.window("start_time", f"{settings.window_s} seconds", f"{settings.slide_s} seconds")


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
    sides = F.explode(
        F.array(
            F.struct(
                F.when(own_or_foreign, F.col("a_number")).alias(ENTITY), F.lit("out").alias("direction")
            ),
            F.struct(F.col("b_number").alias(ENTITY), F.lit("in").alias("direction")),
        )
    )
    digits = F.regexp_replace("b_number", r"[^0-9]", "")
    return cdrs.select(
        sides.alias("side"),
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
        F.substring(digits, -12, 12).cast("long").alias("b_digits"),
        cli_class_column("b_number", plan).alias("b_kind"),
        home_operator_column("b_number", plan).alias("b_home"),
    ).select("side.*", "*").drop("side").where(F.col(ENTITY).isNotNull())


def sim_window_aggregates(events: DataFrame, *, settings: FeatureSettings) -> DataFrame:
    """Per (entity, sliding window) aggregates; streaming-safe (update mode with a watermark)."""
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
        return F.sum(F.when(cond, 1).otherwise(0))

    bucket = F.floor(F.col("t") / settings.cohort_bucket_s) * settings.cohort_bucket_s
    aggregated = events.groupBy(F.col(ENTITY), _window(settings).alias("w")).agg(
        count_if(out_voice).alias("n_out"),
        count_if(out_voice & answered).alias("n_answered"),
        count_if(out_voice & answered & (F.col("duration_s") < settings.short_call_s)).alias("n_short"),
        count_if((d == "in") & (F.col("event_type") == "voice")).alias("n_in"),
        count_if(out & (F.col("event_type") == "sms")).alias("n_sms_out"),
        count_if(out_voice & night).alias("n_night"),
        count_if(out_voice & F.col("b_kind").isin(*INTERNATIONAL_KINDS)).alias("n_intl"),
        count_if(out_voice & F.col("b_kind").isin(*PREMIUM_KINDS)).alias("n_premium"),
        count_if(out_voice & (F.col("b_home") == F.col("operator"))).alias("n_onnet"),
        count_if(out_voice & (F.col("in_trunk_type") == "international_gateway")).alias("n_gateway"),
        count_if(out_voice & (F.col("release_cause") == "cancelled")).alias("n_cancelled"),
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
    measures = [c for c in aggregated.columns if c not in (ENTITY, "w")]
    return aggregated.select(
        ENTITY, F.col("w.start").alias(WINDOW_START), F.col("w.end").alias(WINDOW_END), *measures
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


def imei_window_aggregates(events: DataFrame, *, settings: FeatureSettings) -> DataFrame:
    """Distinct SIMs per (IMEI, window): many IMSIs behind one IMEI is a SIM-box sign."""
    from pyspark.sql import functions as F

    active = events.where((F.col("direction") == "out") & F.col("a_imei").isNotNull())
    return active.groupBy(F.col("a_imei"), _window(settings).alias("w")).agg(
        F.approx_count_distinct(ENTITY).alias("imei_sims")
    ).select("a_imei", F.col("w.start").alias(WINDOW_START), "imei_sims")


def _share(num: str, den: str) -> Column:
    from pyspark.sql import functions as F

    return F.when(F.col(den) > 0, F.col(num) / F.col(den))


def assemble_sim_features(
    sim_aggs: DataFrame,
    cell_aggs: DataFrame,
    imei_aggs: DataFrame,
    *,
    settings: FeatureSettings,
    plan: NumberingPlan | None = None,
) -> DataFrame:
    """Named feature rows (one per active entity and window) from the three aggregates."""
    from pyspark.sql import functions as F

    plan = plan or load_numbering_plan()
    w, b = settings.window, settings.burst
    c = duration_label(settings.cohort_bucket_s)
    active = sim_aggs.where((F.col("n_out") + F.col("n_sms_out")) > 0).withColumn(
        "_entity_kind", cli_class_column(ENTITY, plan)
    )

    cohort = (
        active.select(ENTITY, WINDOW_START, F.explode("cell_buckets").alias("cb"))
        .join(
            cell_aggs,
            (F.col("cb.cell_id") == cell_aggs["cell_id"]) & (F.col("cb.bucket") == cell_aggs["bucket"]),
        )
        .groupBy(ENTITY, WINDOW_START)
        .agg(F.max("cell_sims").alias("cohort_peak"))
    )
    imei = (
        active.select(ENTITY, WINDOW_START, F.explode("imeis").alias("a_imei"))
        .join(imei_aggs, ["a_imei", WINDOW_START])
        .groupBy(ENTITY, WINDOW_START)
        .agg(F.max("imei_sims").alias("imei_sims"))
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

    base = active.select(
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
    )
    return (
        base.join(cohort, [ENTITY, WINDOW_START], "left")
        .join(imei, [ENTITY, WINDOW_START], "left")
        .withColumn(f"cell_cohort_peak_{c}_{w}", F.coalesce(F.col("cohort_peak"), F.lit(0)))
        .withColumn(f"imei_shared_sims_{w}", F.coalesce(F.col("imei_sims"), F.lit(0)))
        .select(*KEY_COLUMNS, *sim_feature_names(settings))
    )


def build_sim_features(
    cdrs: DataFrame, *, settings: FeatureSettings, plan: NumberingPlan | None = None
) -> DataFrame:
    """Batch path: canonical CDRs in, one feature row per active entity and window out."""
    events = sim_events(cdrs, plan=plan)
    return assemble_sim_features(
        sim_window_aggregates(events, settings=settings),
        cell_bucket_aggregates(events, settings=settings),
        imei_window_aggregates(events, settings=settings),
        settings=settings,
        plan=plan,
    )
