"""Per-SIM features from a state Spark keeps: the JVM processor of ``features/jvm``.

``SimFeatures`` (Java, run by ``transformWithState`` with the RocksDB state store) keeps each
SIM's events of the last window by sub-bucket and emits the features of :mod:`features.sim` at
every scoring point the events make. On a stream the state lives in the query's checkpoint; over a
batch DataFrame it starts empty and the result is every point at once. This module prepares its
events (one per CDR side, :func:`features.sim_rows.sim_events`, with the flags of
:func:`features.sim_rows.event_conditions`, one row per cross-SIM context key: a first
processor, ``SimContext``, keyed by cell or IMEI, counts the SIMs seen there as of each event)
and names what it returns.
"""

from __future__ import annotations

from functools import reduce
from typing import TYPE_CHECKING

from features.numbering import NumberingPlan, cli_class_column, load_numbering_plan
from features.settings import FeatureSettings, duration_label
from features.sim import (
    EVIDENCE_CALLS,
    KEY_COLUMNS,
    WINDOW_END,
    WINDOW_START,
    sim_feature_names,
    window_feature_names,
)
from features.sim_rows import CELL, ENTITY, IMEI, event_conditions, sim_events
from features.sim_windows import AS_OF, sample_points

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

#: the flag bits of an event, in the processor's order (``SimFeatures.OUT`` ...)
FLAGS = ("out", "voice", "sms", "answered", "short", "night", "intl", "premium", "onnet", "gateway", "cancelled")
#: the flag of a warm start's event: the processor keeps it, but scores no point for it
WARM = 1 << len(FLAGS)
#: the processor's input columns, in order
EVENT_COLUMNS = (
    ENTITY, "t", "flags", "party", "b_digits", "duration_s", "release_cause", "cell_id", "a_imei", "eid", "kind", "key"
)
#: the cross-SIM context kinds and the column each is keyed by (``features.sim_rows.context_members``)
CONTEXT = ((CELL, "cell_id"), (IMEI, "a_imei"))
#: the processor's call fields -> the names ``features.sim_rows.minute_rows`` gives a call
CALL_FIELDS = {
    "t": "t",
    "digits": "b_digits",
    "answered": "answered_s",
    "number": "b_number",
    "duration": "duration_s",
    "cause": "release_cause",
    "cell": "cell_id",
    "imei": "a_imei",
}
#: features whose values are whole numbers, by the type ``features.sim`` gives them
LONGS = ("calls_out_", "calls_in_", "sms_out_", "active_hours_")
INTS = ("distinct_cells_", "distinct_imeis_", "distinct_callees_", "imei_shared_sims_", "cell_cohort_peak_")


def processor_events(
    cdrs: DataFrame, *, settings: FeatureSettings, plan: NumberingPlan | None = None, warm: bool = False
) -> DataFrame:
    """The processor's input (:data:`EVENT_COLUMNS`) from canonical CDRs, batch or stream: one row
    per CDR side and context kind, the kind's ``key`` the cell or the IMEI of an event out
    (``"none|<entity>"`` for events in and events out with neither). ``warm``: events of the days
    before the stream's first record (:data:`WARM`)."""
    from pyspark.sql import functions as F

    events = sim_events(cdrs, plan=plan)
    conditions = event_conditions(settings)
    out = conditions["out"]
    flags = reduce(
        lambda acc, bit: acc.bitwiseOR(F.when(conditions[FLAGS[bit]], 1 << bit).otherwise(0)),
        range(1, len(FLAGS)),
        F.when(conditions[FLAGS[0]], 1).otherwise(0),
    )
    if warm:
        flags = flags.bitwiseOR(F.lit(WARM))
    party = F.when(out, F.col("b_number")).otherwise(F.col("a_number"))
    keys = F.filter(
        F.array(
            *[F.when(out & F.col(c).isNotNull(), F.concat(F.lit(f"{kind}|"), F.col(c))) for kind, c in CONTEXT]
        ),
        lambda k: k.isNotNull(),
    )
    key = F.explode(
        F.when(F.size(keys) > 0, keys).otherwise(F.array(F.concat(F.lit("none|"), F.col(ENTITY))))
    ).alias("key")
    eid = F.concat(F.col("record_id"), F.when(out, F.lit(">")).otherwise(F.lit("<"))).alias("eid")
    return events.select(
        ENTITY, "t", flags.cast("int").alias("flags"), party.alias("party"), "b_digits", "duration_s",
        "release_cause", "cell_id", "a_imei", eid, key,
    ).select(*EVENT_COLUMNS[:-2], F.substring_index("key", "|", 1).alias("kind"), "key")


def sim_points(events: DataFrame, *, settings: FeatureSettings, evidence: bool = True) -> DataFrame:
    """(entity, as_of, values, recent) from the processor, for a stream or a batch of events
    (``recent`` empty without ``evidence``)."""
    from pyspark.sql import DataFrame

    spark = events.sparkSession
    spark.streams  # noqa: B018 - starts the state store coordinator a batch transformWithState needs
    jdf = spark._jvm.simguard.features.SimFeatures.apply(
        events.select(*EVENT_COLUMNS)._jdf,
        settings.window_s,
        settings.short_window_s,
        settings.sub_bucket_s,
        settings.score_interval_s,
        settings.cohort_bucket_s,
        settings.max_calls,
        EVIDENCE_CALLS if evidence else 0,
        settings.sequential_max_step,
    )
    return DataFrame(jdf, spark)


def value_names(settings: FeatureSettings) -> list[str]:
    """The names of the processor's values, in its order."""
    c = duration_label(settings.cohort_bucket_s)
    w = settings.window
    return [
        *window_feature_names(w, settings.burst),
        *window_feature_names(settings.short_window, None),
        f"imei_shared_sims_{w}",
        f"cell_cohort_peak_{c}_{w}",
        f"hours_seen_{w}",
    ]


def named_features(
    points: DataFrame, *, settings: FeatureSettings, plan: NumberingPlan | None = None, evidence: bool = False
) -> DataFrame:
    """The rows of :func:`features.sim.assemble_sim_features` from :func:`sim_points`."""
    from pyspark.sql import functions as F

    plan = plan or load_numbering_plan()
    values = F.col("values")
    named = {}
    for i, name in enumerate(value_names(settings)):
        kind = "long" if name.startswith(LONGS) else "int" if name.startswith(INTS) else "double"
        named[name] = values[i].cast(kind)
    kind = cli_class_column(ENTITY, plan)
    named["cli_international_premium"] = (kind == "international_premium").cast("int")
    named["cli_domestic_mobile"] = (kind == "mobile").cast("int")
    as_of = F.col(AS_OF)
    extra = []
    if evidence:
        call = lambda c: F.struct(*[c[field].alias(name) for field, name in CALL_FIELDS.items()])  # noqa: E731
        extra.append(F.transform("recent", call).alias("recent_calls"))
    return points.select(
        ENTITY,
        (as_of - settings.window_s).cast("timestamp").alias(WINDOW_START),
        as_of.cast("timestamp").alias(WINDOW_END),
        *[named[name].alias(name) for name in sim_feature_names(settings)],
        *extra,
    ).select(*KEY_COLUMNS, *sim_feature_names(settings), *(["recent_calls"] if evidence else []))


def build_sim_features(
    cdrs: DataFrame,
    *,
    settings: FeatureSettings,
    plan: NumberingPlan | None = None,
    sample_before: float | None = None,
    evidence: bool = False,
) -> DataFrame:
    """Batch path: canonical CDRs in, one feature row per SIM and scoring point out (the
    processor over all of them at once, its state starting empty): every point, except that
    points up to ``sample_before`` (epoch s, the training and validation days) are a sample of at
    most ``train_points_per_day`` per SIM and day."""
    events = processor_events(cdrs, settings=settings, plan=plan)
    points = sim_points(events, settings=settings, evidence=evidence)
    if sample_before is not None:
        points = sample_points(points, per_day=settings.train_points_per_day, keep_all_from=sample_before)
    return named_features(points, settings=settings, plan=plan, evidence=evidence)
