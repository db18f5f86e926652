"""Per-SIM features as of a scoring time: the names, and their Spark SQL definitions. Training,
``evaluate`` and the stream compute the rows with the JVM processors of :mod:`features.sim_state`
(state kept by Spark); these definitions are what ``tests/test_sim_state.py`` and
``tests/test_feature_parity.py`` hold the processors to, row for row.

A SIM is scored *as of* a time ``t``: its features cover the trailing long window (24 h: the
whole hours before ``t``'s hour plus that hour up to ``t``) and the trailing short window (1 h:
the minutes before ``t``), with the cross-SIM context (cell cohorts, IMEIs shared by SIMs) seen
by then. Nothing after ``t`` is read, and ``t`` is not aligned to any window grid, so a row
means the same whether the stream scores it after a one-minute micro-batch or a whole day.

The computation, each step a ``DataFrame -> DataFrame`` function: :mod:`features.sim_rows` turns
CDRs into mergeable (entity, minute) rows and the cross-SIM context (steps 1 and 2),
:mod:`features.sim_windows` chooses the scoring points and merges each point's windows (steps 3
and 4), and :func:`assemble_sim_features` here turns them into the named features.

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

from typing import TYPE_CHECKING

from features.numbering import NumberingPlan, cli_class_column, load_numbering_plan
from features.settings import FeatureSettings, duration_label
from features.sim_rows import (
    ENTITY,
    MINUTE,
    context_counts,
    context_members,
    first_seen,
    merge_partials,
    minute_rows,
    sim_events,
    with_context,
)
from features.sim_windows import AS_OF, window_rows

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

WINDOW_START = "window_start"
WINDOW_END = "window_end"
KEY_COLUMNS = (ENTITY, WINDOW_START, WINDOW_END)


def window_feature_names(w: str, b: str | None) -> list[str]:
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
        *window_feature_names(w, b),
        f"imei_shared_sims_{w}",
        f"cell_cohort_peak_{c}_{w}",
        "cli_international_premium",
        "cli_domestic_mobile",
        f"hours_seen_{w}",
        *window_feature_names(settings.short_window, None),
    ]



def _share(num: str, den: str) -> Column:
    from pyspark.sql import functions as F

    return F.when(F.col(den) > 0, F.col(num) / F.col(den))


def _window_arrays(p: str) -> list[dict[str, Column]]:
    """The helper arrays of the window whose merged columns carry the prefix ``p``, in layers
    (each reads the one before). Arrays are materialised as columns: an array expression
    referenced inside a lambda (or by several outputs) would otherwise be rebuilt, sort included,
    for every use. Layers, not a column at a time: every DataFrame step re-analyses the plan."""
    from pyspark.sql import functions as F

    calls = F.col(f"_{p}calls")
    ts, digits = F.col(f"_{p}ts"), F.col(f"_{p}digits")
    n_pairs = F.greatest(F.size(ts) - 1, F.lit(0))

    def pairs(arr: Column, fn) -> Column:
        return F.zip_with(F.slice(arr, 2, n_pairs), F.slice(arr, 1, n_pairs), fn)

    # sum and sum of squares in one pass: a mean referenced inside the lambda would be
    # re-evaluated for every element, which made busy windows quadratic
    gap_sums = F.aggregate(
        F.col(f"_{p}gaps"),
        F.struct(F.lit(0.0).alias("s"), F.lit(0.0).alias("ss")),
        lambda acc, x: F.struct((acc["s"] + x).alias("s"), (acc["ss"] + x * x).alias("ss")),
    )
    return [
        {f"_{p}calls": F.coalesce(F.col(f"{p}calls"), F.array())},  # in time order
        {
            f"_{p}ts": F.transform(calls, lambda x: x["t"]),
            f"_{p}digits": F.transform(calls, lambda x: x["b_digits"]),
            f"_{p}durations": F.array_sort(
                F.filter(F.transform(calls, lambda x: x["answered_s"]), lambda v: v.isNotNull())
            ),
            f"_{p}callees": F.array_distinct(F.transform(calls, lambda x: x["b_number"])),
        },
        {f"_{p}gaps": pairs(ts, lambda x, y: x - y), f"_{p}steps": pairs(digits, lambda x, y: F.abs(x - y))},
        {f"_{p}gap_sums": gap_sums},
    ]


def _window_columns(p: str, w: str, b: str | None, settings: FeatureSettings) -> list[Column]:
    """The named feature columns of the window whose merged columns carry the prefix ``p``
    (``""`` long, ``"s_"`` short), read from its :func:`_window_arrays`; ``b``: the burst label
    (long window only)."""
    from pyspark.sql import functions as F

    def col(name: str) -> Column:
        return F.col(f"{p}{name}")

    n = F.size(F.col(f"_{p}ts"))
    gaps = F.col(f"_{p}gaps")
    n_gaps = F.size(gaps)
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
    return [columns[name].alias(name) for name in window_feature_names(w, b)]


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
    frame = windows.where((F.col("n_out") + F.col("n_sms_out")) > 0)
    layers = zip(_window_arrays(""), _window_arrays("s_"), strict=True)
    for i, (long_arrays, short_arrays) in enumerate(layers):
        extra_kind = {"_entity_kind": cli_class_column(ENTITY, plan)} if i == 0 else {}
        frame = frame.withColumns({**long_arrays, **short_arrays, **extra_kind})
    long_cols = _window_columns("", w, b, settings)
    short_cols = _window_columns("s_", settings.short_window, None, settings)
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
    """(minute rows, context members) of canonical CDRs."""
    events = sim_events(cdrs, plan=plan)
    return minute_rows(events, settings=settings), context_members(events, settings=settings)


def _with_context(rows: DataFrame, members: DataFrame, *, settings: FeatureSettings, partials: bool) -> DataFrame:
    if partials:
        rows = merge_partials(rows, [ENTITY, MINUTE], max_calls=settings.max_calls)
        members = first_seen(members)
    return with_context(rows, context_counts(members))


def sim_features_at(
    rows: DataFrame,
    members: DataFrame,
    points: DataFrame,
    *,
    settings: FeatureSettings,
    plan: NumberingPlan | None = None,
    evidence: bool = False,
    partials: bool = True,
) -> DataFrame:
    """Feature rows at ``points`` (entity, as_of) from minute rows and context members. With
    ``partials`` (the stream's state: one row per micro-batch that saw a minute) rows and members
    of the same key are merged first; without, each (entity, minute) and each context member must
    have one row (:func:`minute_rows` and :func:`context_members` of all the CDRs at once)."""
    with_ctx = _with_context(rows, members, settings=settings, partials=partials)
    return assemble_sim_features(
        window_rows(with_ctx, points, settings=settings), settings=settings, plan=plan, evidence=evidence
    )
