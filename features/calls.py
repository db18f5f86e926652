"""Per-call spoofing features, defined once for batch and streaming.

Only calls that enter on a trunk are scored: a subscriber's own call is authenticated by its SIM,
so its CLI cannot be spoofed at the network edge. Indicators follow DOMAIN.md: a domestic CLI on
an international trunk while its owner is not roaming; an invalid or unallocated CLI; a CLI on the
Do-Not-Originate list; the same CLI in several calls at once, on several operators, or while its
owner is calling from their own SIM; and where the owner was lately: a spoofed domestic CLI
belongs to a victim who is at home, using their SIM on domestic cells, while a subscriber who
really calls home from abroad has been using their SIM on visited networks (roaming records).
The HLR's roaming answer on the gateway record is sometimes stale; the owner's own records are
the second opinion.

Two steps, both usable on a streaming DataFrame:
:func:`cli_bucket_aggregates` counts the calls presenting each CLI per bucket
(``concurrency_window_s``) and the owner's own-SIM records (at home, roaming) in it, and
:func:`assemble_call_features` joins them to the scored calls: the call's own bucket for
concurrency, the buckets of the ``owner_lookback_s`` before the call for the owner's whereabouts;
and :func:`trunk_bucket_aggregates` counts, per ingress trunk group and hour, the calls that
present a domestic CLI from abroad while the HLR says its owner is at home, and the calls with
invalid, unallocated or Do-Not-Originate CLIs: a spoofing campaign's burst on its route.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from features.numbering import (
    DOMESTIC_KINDS,
    NUMBER_KINDS,
    NumberingPlan,
    cli_class_column,
    dno_column,
    home_operator_column,
    load_numbering_plan,
)
from features.settings import FeatureSettings, duration_label

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

CALL_KEY_COLUMNS = ("record_id", "a_number", "operator", "in_trunk_type", "in_trunk_id", "start_time")
#: CLI kinds, coded as integers for the model (stable order from the numbering plan)
CLI_KIND_CODES: dict[str, int] = {kind: i for i, kind in enumerate(NUMBER_KINDS)}


def call_feature_names(settings: FeatureSettings) -> list[str]:
    c = duration_label(settings.concurrency_window_s)
    o = duration_label(settings.owner_lookback_s)
    t = duration_label(settings.trunk_bucket_s)
    return [
        "cli_kind_code",
        "cli_invalid_or_unallocated",
        "cli_do_not_originate",
        "cli_domestic",
        "ingress_international",
        "ingress_interconnect",
        "domestic_cli_on_international",
        "cli_home_operator_is_reporter",
        "cli_owner_roaming",
        f"same_cli_calls_{c}",
        f"same_cli_operators_{c}",
        f"same_cli_subscriber_calls_{c}",
        f"owner_home_records_{o}",
        f"owner_roaming_records_{o}",
        "owner_last_seen_roaming",
        "callee_known_to_owner",
        f"trunk_calls_{t}",
        f"trunk_domestic_not_roaming_{t}",
        f"trunk_bad_cli_share_{t}",
        "answered",
        "duration_s",
    ]


def _bucket(settings: FeatureSettings):
    from pyspark.sql import functions as F

    return F.window("start_time", f"{settings.concurrency_window_s} seconds")


def cli_bucket_aggregates(cdrs: DataFrame, *, settings: FeatureSettings) -> DataFrame:
    """Per (CLI, bucket): voice calls presenting it over every ingress, the operators they were
    reported by, and the owner's own-SIM records (voice and SMS) at home and roaming."""
    from pyspark.sql import functions as F

    voice = F.col("event_type") == "voice"
    own = F.col("in_trunk_type") == "subscriber"
    roaming = F.coalesce(F.col("a_roaming"), F.lit(False))

    def count_if(cond):
        return F.sum(F.when(cond, 1).otherwise(0)).cast("long")

    return (
        cdrs.groupBy(F.col("a_number"), _bucket(settings).alias("b"))
        .agg(
            count_if(voice).alias("cli_calls"),
            F.collect_set(F.when(voice, F.col("operator"))).alias("cli_operators"),
            count_if(voice & own).alias("cli_subscriber_calls"),
            count_if(own & ~roaming).alias("owner_home"),
            count_if(own & roaming).alias("owner_roaming"),
            F.collect_set(F.when(own, F.col("b_number"))).alias("owner_callees"),
        )
        .select(
            "a_number",
            F.col("b.start").alias("bucket_start"),
            "cli_calls",
            "cli_operators",
            "cli_subscriber_calls",
            "owner_home",
            "owner_roaming",
            "owner_callees",
        )
    )


CLI_COUNTS = ("cli_calls", "cli_subscriber_calls", "owner_home", "owner_roaming")
TRUNK_COUNTS = ("trunk_calls", "trunk_suspect", "trunk_bad")


def merge_cli_rows(rows: DataFrame) -> DataFrame:
    """Partial :func:`cli_bucket_aggregates` rows of the same (CLI, bucket) merged (the stream
    keeps one per micro-batch): counts summed, operator and callee sets united."""
    from pyspark.sql import functions as F

    return rows.groupBy("a_number", "bucket_start").agg(
        *[F.sum(c).cast("long").alias(c) for c in CLI_COUNTS],
        F.array_distinct(F.flatten(F.collect_list("cli_operators"))).alias("cli_operators"),
        F.array_distinct(F.flatten(F.collect_list("owner_callees"))).alias("owner_callees"),
    )


def merge_trunk_rows(rows: DataFrame) -> DataFrame:
    """Partial :func:`trunk_bucket_aggregates` rows of the same (trunk, bucket) summed."""
    from pyspark.sql import functions as F

    return rows.groupBy("in_trunk_id", "trunk_bucket").agg(*[F.sum(c).cast("long").alias(c) for c in TRUNK_COUNTS])


def owner_whereabouts(calls: DataFrame, cli_aggs: DataFrame, *, settings: FeatureSettings) -> DataFrame:
    """Per call (``record_id``): the CLI owner's own-SIM records at home and roaming in the
    ``owner_lookback_s`` up to the call's bucket, whether the latest of them was roaming, and
    whether the owner called this call's callee from their own SIM in that time (someone calling
    home from abroad calls family and friends; a spoofer calls strangers)."""
    from pyspark.sql import functions as F

    owner = cli_aggs.where((F.col("owner_home") + F.col("owner_roaming")) > 0).select(
        F.col("a_number").alias("_owner"),
        F.col("bucket_start").alias("_ob"),
        "owner_home",
        "owner_roaming",
        "owner_callees",
    )
    lookback = F.expr(f"INTERVAL {settings.owner_lookback_s} SECONDS")
    joined = calls.select("record_id", "a_number", "b_number", "bucket_start").join(
        owner,
        (F.col("a_number") == F.col("_owner"))
        & (F.col("_ob") <= F.col("bucket_start"))
        & (F.col("_ob") > F.col("bucket_start") - lookback),
    )
    return joined.groupBy("record_id").agg(
        F.sum("owner_home").alias("_owner_home"),
        F.sum("owner_roaming").alias("_owner_roaming"),
        F.max_by(F.col("owner_roaming") > F.col("owner_home"), F.col("_ob")).alias("_owner_last_roaming"),
        F.max(F.array_contains("owner_callees", F.col("b_number")).cast("int")).alias("_callee_known"),
    )


def _suspect_and_bad(kind, plan: NumberingPlan):
    """(domestic CLI on an international gateway while the HLR says the owner is not roaming,
    invalid / unallocated / Do-Not-Originate CLI) for trunk calls with CLI class ``kind``."""
    from pyspark.sql import functions as F

    intl = F.col("in_trunk_type") == "international_gateway"
    not_roaming = ~F.coalesce(F.col("a_roaming"), F.lit(False))
    suspect = kind.isin(*sorted(DOMESTIC_KINDS)) & intl & not_roaming
    bad = kind.isin("invalid", "unallocated") | dno_column("a_number", plan)
    return suspect, bad


def trunk_bucket_aggregates(
    cdrs: DataFrame, *, settings: FeatureSettings, plan: NumberingPlan | None = None
) -> DataFrame:
    """Per (ingress trunk group, minute bucket of ``concurrency_window_s``): trunk calls, those
    presenting a domestic CLI from abroad whose owner the HLR says is at home, and those with an
    invalid, unallocated or Do-Not-Originate CLI. A route carrying a spoofing campaign shows
    bursts of both; a call reads the buckets of the ``trunk_bucket_s`` up to its own."""
    from pyspark.sql import functions as F

    plan = plan or load_numbering_plan()
    calls = trunk_calls(cdrs).withColumn("_kind", cli_class_column("a_number", plan))
    suspect, bad = _suspect_and_bad(F.col("_kind"), plan)
    return (
        calls.groupBy(F.col("in_trunk_id"), _bucket(settings).alias("b"))
        .agg(
            F.count(F.lit(1)).alias("trunk_calls"),
            F.sum(F.when(suspect, 1).otherwise(0)).cast("long").alias("trunk_suspect"),
            F.sum(F.when(bad, 1).otherwise(0)).cast("long").alias("trunk_bad"),
        )
        .select("in_trunk_id", F.col("b.start").alias("trunk_bucket"), "trunk_calls", "trunk_suspect", "trunk_bad")
    )


def trunk_context(calls: DataFrame, trunk_aggs: DataFrame, *, settings: FeatureSettings) -> DataFrame:
    """Per call (``record_id``): its trunk's buckets of the ``trunk_bucket_s`` up to and including
    the call's own bucket, summed (an equality join on the bucket keys, no range join)."""
    from pyspark.sql import functions as F

    step = settings.concurrency_window_s
    n = -(-settings.trunk_bucket_s // step)
    keys = calls.where(F.col("in_trunk_id").isNotNull()).select(
        "record_id",
        "in_trunk_id",
        F.explode(
            F.transform(
                F.sequence(F.lit(0), F.lit(n - 1)), lambda k: F.col("bucket_start") - F.make_dt_interval(secs=k * step)
            )
        ).alias("trunk_bucket"),
    )
    return (
        keys.hint("merge").join(trunk_aggs, ["in_trunk_id", "trunk_bucket"])
        .groupBy("record_id")
        .agg(*[F.sum(c).alias(c) for c in TRUNK_COUNTS])
    )


def trunk_calls(cdrs: DataFrame) -> DataFrame:
    """The calls the spoofing model scores: voice calls entering on a trunk."""
    from pyspark.sql import functions as F

    return cdrs.where((F.col("event_type") == "voice") & (F.col("in_trunk_type") != "subscriber"))


def assemble_call_features(
    calls: DataFrame,
    cli_aggs: DataFrame,
    trunk_aggs: DataFrame,
    *,
    settings: FeatureSettings,
    plan: NumberingPlan | None = None,
) -> DataFrame:
    """One feature row per trunk call (keys in ``CALL_KEY_COLUMNS``)."""
    from pyspark.sql import functions as F

    plan = plan or load_numbering_plan()
    c = duration_label(settings.concurrency_window_s)
    o = duration_label(settings.owner_lookback_s)
    t = duration_label(settings.trunk_bucket_s)
    # classify once into columns: the classifier is a long CASE expression, and repeating it
    # inside one projection overflows the JVM's generated-code limit
    enriched = (
        trunk_calls(calls)
        .withColumn("bucket_start", _bucket(settings).start)
        .withColumn("_kind", cli_class_column("a_number", plan))
        .withColumn("_home", home_operator_column("a_number", plan))
    )
    kind = F.col("_kind")
    kind_code = F.lit(None).cast("int")
    for name, code in CLI_KIND_CODES.items():
        kind_code = F.when(kind == name, F.lit(code)).otherwise(kind_code)
    intl = F.col("in_trunk_type") == "international_gateway"
    domestic = kind.isin(*sorted(DOMESTIC_KINDS))
    concurrency = cli_aggs.select("a_number", "bucket_start", "cli_calls", "cli_operators", "cli_subscriber_calls")
    whereabouts = owner_whereabouts(enriched, cli_aggs, settings=settings)
    joined = (
        enriched.join(concurrency, ["a_number", "bucket_start"], "left")
        .join(whereabouts, ["record_id"], "left")
        .join(trunk_context(enriched, trunk_aggs, settings=settings), ["record_id"], "left")
    )
    # the call itself is counted in its trunk's bucket: "other" calls exclude it
    suspect, bad = _suspect_and_bad(kind, plan)
    trunk_others = F.greatest(F.coalesce(F.col("trunk_calls"), F.lit(1)) - 1, F.lit(0))
    trunk_suspect = F.greatest(F.coalesce(F.col("trunk_suspect"), F.lit(0)) - suspect.cast("long"), F.lit(0))
    trunk_bad = F.greatest(F.coalesce(F.col("trunk_bad"), F.lit(0)) - bad.cast("long"), F.lit(0))
    # the call itself is in its bucket: "other" calls exclude it
    others = F.coalesce(F.col("cli_calls"), F.lit(1)) - 1
    return joined.select(
        *CALL_KEY_COLUMNS,
        kind_code.alias("cli_kind_code"),
        kind.isin("invalid", "unallocated").cast("int").alias("cli_invalid_or_unallocated"),
        dno_column("a_number", plan).cast("int").alias("cli_do_not_originate"),
        domestic.cast("int").alias("cli_domestic"),
        intl.cast("int").alias("ingress_international"),
        (F.col("in_trunk_type") == "domestic_interconnect").cast("int").alias("ingress_interconnect"),
        (domestic & intl).cast("int").alias("domestic_cli_on_international"),
        F.coalesce(F.col("_home") == F.col("operator"), F.lit(False))
        .cast("int")
        .alias("cli_home_operator_is_reporter"),
        F.col("a_roaming").cast("int").alias("cli_owner_roaming"),
        others.alias(f"same_cli_calls_{c}"),
        F.greatest(F.size(F.coalesce(F.col("cli_operators"), F.array())), F.lit(1)).alias(f"same_cli_operators_{c}"),
        F.coalesce(F.col("cli_subscriber_calls"), F.lit(0)).alias(f"same_cli_subscriber_calls_{c}"),
        F.coalesce(F.col("_owner_home"), F.lit(0)).alias(f"owner_home_records_{o}"),
        F.coalesce(F.col("_owner_roaming"), F.lit(0)).alias(f"owner_roaming_records_{o}"),
        F.col("_owner_last_roaming").cast("int").alias("owner_last_seen_roaming"),
        F.coalesce(F.col("_callee_known"), F.lit(0)).alias("callee_known_to_owner"),
        trunk_others.alias(f"trunk_calls_{t}"),
        trunk_suspect.alias(f"trunk_domestic_not_roaming_{t}"),
        F.when(trunk_others > 0, trunk_bad / trunk_others).alias(f"trunk_bad_cli_share_{t}"),
        (F.col("release_cause") == "answered").cast("int").alias("answered"),
        F.col("duration_s"),
    )


def build_call_features(cdrs: DataFrame, *, settings: FeatureSettings, plan: NumberingPlan | None = None) -> DataFrame:
    """Batch path: canonical CDRs in, one feature row per trunk voice call out."""
    return assemble_call_features(
        cdrs,
        cli_bucket_aggregates(cdrs, settings=settings),
        trunk_bucket_aggregates(cdrs, settings=settings, plan=plan),
        settings=settings,
        plan=plan,
    )
