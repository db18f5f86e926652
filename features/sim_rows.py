"""Per-SIM state rows: the steps of :mod:`features.sim` that turn CDRs into mergeable
(entity, minute) rows and the cross-SIM context.

1. :func:`sim_events`: every CDR becomes an ``out`` event for the calling number and an ``in``
   event for the callee.
2. :func:`minute_rows`: per (entity, sub-bucket of ``sub_bucket_s``): counts, the calls with
   their details, and the sets of callers, cells, IMEIs and (cell | IMEI, hour) context keys.
   Every column merges by sum or union (:func:`merge_rows`), so partial rows of the same
   sub-bucket (one per micro-batch, as the stream's state table holds them) merge into the row a
   batch job computes at once. :func:`context_members` gives the (cell | IMEI, hour, SIM) triples
   with the sub-bucket each SIM was first seen there; :func:`with_context` adds to every row the
   peaks of distinct SIMs seen by the end of the row's sub-bucket (never the rest of the hour:
   a batch job would otherwise count SIMs that a stream scoring the row has not read yet).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from features.numbering import NumberingPlan, cli_class_column, home_operator_column, load_numbering_plan
from features.settings import FeatureSettings

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

ENTITY = "entity"
HOUR = 3600
#: sub-bucket start, epoch seconds
MINUTE = "b"
#: context keys: a SIM's cells and IMEIs per hour
CELL, IMEI = "cell", "imei"

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



def _count_if(cond: Column) -> Column:
    from pyspark.sql import functions as F

    return F.sum(F.when(cond, 1).otherwise(0)).cast("long")


def _context_keys(out: Column, kind: str, column: str, hour: Column) -> Column:
    from pyspark.sql import functions as F

    key = F.struct(F.lit(kind).alias("kind"), F.col(column).alias("key"), hour.alias("hour"))
    return F.collect_set(F.when(out & F.col(column).isNotNull(), key))


def event_conditions(settings: FeatureSettings) -> dict[str, Column]:
    """What each :func:`sim_events` event is, as conditions (null counts as false): the one
    definition of the counts of :func:`minute_rows` and the flags of ``features.sim_state``."""
    from pyspark.sql import functions as F

    local_hour = F.floor(F.pmod(F.col("t") + settings.local_utc_offset_h * 3600, 86400) / 3600)
    if settings.night_start_hour > settings.night_end_hour:
        night = (local_hour >= settings.night_start_hour) | (local_hour < settings.night_end_hour)
    else:
        night = (local_hour >= settings.night_start_hour) & (local_hour < settings.night_end_hour)
    return {
        "out": F.col("direction") == "out",
        "voice": F.col("event_type") == "voice",
        "sms": F.col("event_type") == "sms",
        "answered": F.col("release_cause") == "answered",
        "short": F.col("duration_s") < settings.short_call_s,
        "night": night,
        "intl": F.col("b_kind").isin(*INTERNATIONAL_KINDS),
        "premium": F.col("b_kind").isin(*PREMIUM_KINDS),
        "onnet": F.col("b_home") == F.col("operator"),
        "gateway": F.col("in_trunk_type") == "international_gateway",
        "cancelled": F.col("release_cause") == "cancelled",
    }


def minute_rows(events: DataFrame, *, settings: FeatureSettings) -> DataFrame:
    """Per (entity, sub-bucket) aggregates of :func:`sim_events` (see the module docstring)."""
    from pyspark.sql import functions as F

    c = event_conditions(settings)
    out = c["out"]
    out_voice = out & c["voice"]
    answered = c["answered"]
    hour = (F.floor(F.col("t") / settings.cohort_bucket_s) * settings.cohort_bucket_s).cast("long")
    sub = settings.sub_bucket_s
    return events.groupBy(F.col(ENTITY), (F.floor(F.col("t") / sub) * sub).cast("long").alias(MINUTE)).agg(
        *[
            _count_if(cond).alias(name)
            for name, cond in (
                ("n_out", out_voice),
                ("n_answered", out_voice & answered),
                ("n_short", out_voice & answered & c["short"]),
                ("n_in", ~out & c["voice"]),
                ("n_sms_out", out & c["sms"]),
                ("n_night", out_voice & c["night"]),
                ("n_intl", out_voice & c["intl"]),
                ("n_premium", out_voice & c["premium"]),
                ("n_onnet", out_voice & c["onnet"]),
                ("n_gateway", out_voice & c["gateway"]),
                ("n_cancelled", out_voice & c["cancelled"]),
            )
        ],
        # per-call details (the features and an analyst's evidence), in time order (structs
        # sort by their first field)
        F.array_sort(F.collect_list(
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
        )).alias("calls"),
        F.collect_set(F.when(~out, F.col("a_number"))).alias("callers"),
        F.collect_set(F.when(out, F.col("cell_id"))).alias("cells"),
        F.collect_set(F.when(out, F.col("a_imei"))).alias("imeis"),
        F.array_union(_context_keys(out, CELL, "cell_id", hour), _context_keys(out, IMEI, "a_imei", hour)).alias("ctx"),
    )


def newest_calls(calls: Column, n: int) -> Column:
    """The last ``n`` elements of a time-ordered array."""
    from pyspark.sql import functions as F

    return F.slice(calls, F.greatest(F.size(calls) - n + 1, F.lit(1)), n)


def merge_rows(rows: DataFrame, keys: list[str | Column], *, max_calls: int) -> DataFrame:
    """Rows with the :func:`minute_rows` columns merged per ``keys`` (sums and unions); carries
    ``cohort_peak`` / ``imei_peak`` (max) and the earliest ``first`` when present. A merged row
    keeps its newest ``max_calls`` calls: a window reads only its newest ``max_calls``, and rows
    never overlap in time, so those are always among its rows' newest."""
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
        newest_calls(F.array_sort(F.flatten(F.collect_list("calls"))), max_calls).alias("calls"),
        union("callers"),
        union("cells"),
        union("imeis"),
        union("ctx"),
        *extra,
    )


def merge_partials(rows: DataFrame, keys: list[str], *, max_calls: int) -> DataFrame:
    """:func:`merge_rows` for the keys that have several rows; a key's only row passes as it is
    (the same row: :func:`minute_rows` sorts its calls and dedups its sets). In the stream's
    state only a minute that spans micro-batches has partial rows, and counting rows per key is
    about half the cost of merging them all."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    tagged = rows.withColumn("_rows", F.count(F.lit(1)).over(Window.partitionBy(*keys)))
    single = tagged.where(F.col("_rows") == 1).drop("_rows")
    merged = merge_rows(tagged.where(F.col("_rows") > 1).drop("_rows"), keys, max_calls=max_calls)
    return single.unionByName(merged.select(*single.columns))


def context_members(events: DataFrame, *, settings: FeatureSettings) -> DataFrame:
    """(kind, key, hour, entity, seen): the SIMs calling from each cell and IMEI per hour, with
    the first sub-bucket (epoch s) each was seen there."""
    from pyspark.sql import functions as F

    active = events.where(F.col("direction") == "out")
    hour = (F.floor(F.col("t") / settings.cohort_bucket_s) * settings.cohort_bucket_s).cast("long")
    sub = settings.sub_bucket_s
    seen = (F.floor(F.col("t") / sub) * sub).cast("long").alias("seen")
    cells = active.where(F.col("cell_id").isNotNull()).select(
        F.lit(CELL).alias("kind"), F.col("cell_id").alias("key"), hour.alias("hour"), ENTITY, seen
    )
    imeis = active.where(F.col("a_imei").isNotNull()).select(
        F.lit(IMEI).alias("kind"), F.col("a_imei").alias("key"), hour.alias("hour"), ENTITY, seen
    )
    return first_seen(cells.unionByName(imeis))


def first_seen(members: DataFrame) -> DataFrame:
    """One :func:`context_members` row per (kind, key, hour, SIM), its earliest ``seen``: the
    stream's state holds one per micro-batch that saw the SIM there."""
    from pyspark.sql import functions as F

    return members.groupBy("kind", "key", "hour", ENTITY).agg(F.min("seen").alias("seen"))


def context_counts(members: DataFrame) -> DataFrame:
    """Per (kind, key, hour) from :func:`context_members` rows (one per SIM): ``seen``, the
    sorted first sub-bucket of each SIM."""
    from pyspark.sql import functions as F

    return members.groupBy("kind", "key", "hour").agg(F.array_sort(F.collect_list("seen")).alias("seen"))


def with_context(rows: DataFrame, counts: DataFrame) -> DataFrame:
    """Adds ``cohort_peak`` (most SIMs in one of the row's cells in its hour) and ``imei_peak``
    (most SIMs behind one of its IMEIs in its hour) to (entity, sub-bucket) rows, each counting
    the SIMs first seen there by the end of the row's sub-bucket. Only the narrow key columns
    travel through the join, never the call lists."""
    from pyspark.sql import functions as F

    keys = rows.select(ENTITY, MINUTE, F.explode("ctx").alias("c")).select(
        ENTITY, MINUTE, F.col("c.kind").alias("kind"), F.col("c.key").alias("key"), F.col("c.hour").alias("hour")
    )
    sims = F.size(F.filter("seen", lambda s: s <= F.col(MINUTE)))
    peaks = (
        keys.hint("merge").join(counts, ["kind", "key", "hour"])
        .groupBy(ENTITY, MINUTE)
        .agg(
            F.max(F.when(F.col("kind") == CELL, sims)).alias("cohort_peak"),
            F.max(F.when(F.col("kind") == IMEI, sims)).alias("imei_peak"),
        )
    )
    return rows.join(peaks, [ENTITY, MINUTE], "left")
