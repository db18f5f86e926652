"""Per-call spoofing features, defined once for batch and streaming.

Only calls that enter on a trunk are scored: a subscriber's own call is authenticated by its SIM,
so its CLI cannot be spoofed at the network edge. Indicators follow DOMAIN.md: a domestic CLI on
an international trunk while its owner is not roaming; an invalid or unallocated CLI; a CLI on the
Do-Not-Originate list; the same CLI in several calls at once, on several operators, or while its
owner is calling from their own SIM.

Two steps, both usable on a streaming DataFrame:
:func:`cli_bucket_aggregates` counts the calls presenting each CLI per bucket
(``concurrency_window_s``), and :func:`assemble_call_features` joins them to the scored calls.
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
        "answered",
        "duration_s",
    ]


def _bucket(settings: FeatureSettings):
    from pyspark.sql import functions as F

    return F.window("start_time", f"{settings.concurrency_window_s} seconds")


def cli_bucket_aggregates(cdrs: DataFrame, *, settings: FeatureSettings) -> DataFrame:
    """Calls per (CLI, bucket) over every ingress, with operators and own-SIM calls counted."""
    from pyspark.sql import functions as F

    voice = cdrs.where(F.col("event_type") == "voice")
    return voice.groupBy(F.col("a_number"), _bucket(settings).alias("b")).agg(
        F.count(F.lit(1)).alias("cli_calls"),
        F.approx_count_distinct("operator").alias("cli_operators"),
        F.sum(F.when(F.col("in_trunk_type") == "subscriber", 1).otherwise(0)).alias("cli_subscriber_calls"),
    ).select("a_number", F.col("b.start").alias("bucket_start"), "cli_calls", "cli_operators", "cli_subscriber_calls")


def trunk_calls(cdrs: DataFrame) -> DataFrame:
    """The calls the spoofing model scores: voice calls entering on a trunk."""
    from pyspark.sql import functions as F

    return cdrs.where((F.col("event_type") == "voice") & (F.col("in_trunk_type") != "subscriber"))


def assemble_call_features(
    calls: DataFrame,
    cli_aggs: DataFrame,
    *,
    settings: FeatureSettings,
    plan: NumberingPlan | None = None,
) -> DataFrame:
    """One feature row per trunk call (keys in ``CALL_KEY_COLUMNS``)."""
    from pyspark.sql import functions as F

    plan = plan or load_numbering_plan()
    c = duration_label(settings.concurrency_window_s)
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
    joined = enriched.join(cli_aggs, ["a_number", "bucket_start"], "left")
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
        F.coalesce(F.col("cli_operators"), F.lit(1)).alias(f"same_cli_operators_{c}"),
        F.coalesce(F.col("cli_subscriber_calls"), F.lit(0)).alias(f"same_cli_subscriber_calls_{c}"),
        (F.col("release_cause") == "answered").cast("int").alias("answered"),
        F.col("duration_s"),
    )


def build_call_features(
    cdrs: DataFrame, *, settings: FeatureSettings, plan: NumberingPlan | None = None
) -> DataFrame:
    """Batch path: canonical CDRs in, one feature row per trunk voice call out."""
    return assemble_call_features(
        cdrs, cli_bucket_aggregates(cdrs, settings=settings), settings=settings, plan=plan
    )
