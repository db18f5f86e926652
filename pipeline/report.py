"""What a stream run did, judged against the simulator's ground truth (``simguard report``).

Reads only what the run left behind: the blocklist store (entries, detections, reviews), the
stream's batch records (records in, dead-lettered) and, for the ground truth, the CDRs that were
streamed and the simulator's labels. Nothing is recomputed with Spark.

How the stream's detections are counted (the same functions serve ``tests/test_stream_e2e.py``,
which compares them with ``simguard evaluate``):

- a SIM is *flagged* when the store holds a block-level detection of it (outcome ``blocked`` or
  ``already_blocked``: the policy blocked it, or it was blocked already); numbers the allowlist
  spared are not flagged;
- a trunk call is flagged when it has a block-level ``spoofed_call`` detection;
- precision and recall are counted per unit as evaluate counts them (:func:`precision_recall`):
  positives are fraud SIMs active in the streamed CDRs (spoofed calls), ``excluded`` units (fraud
  SIMs that never made a fraudulent call in the streamed period) count neither way, anything else
  flagged is a false positive;
- detection delay, per true-positive SIM: from its first fraudulent call in the streamed CDRs to
  the observed time of its earliest block-level detection (the scoring time of the row that scored
  above the threshold: when a live stream could block it, in event time),
  in minutes and in the voice calls it made meanwhile. A SIM blocked on evidence observed before
  its first fraudulent call counts 0. Spoofed calls are decided per call, on the call itself.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from features.errors import SimGuardError
from features.redact import mask_url

if TYPE_CHECKING:
    from pipeline.config import Settings

SIM_TYPES: tuple[str, ...] = ("spam_robocall", "simbox", "wangiri")
SPOOFED_CALL = "spoofed_call"
BLOCK_OUTCOMES: tuple[str, ...] = ("blocked", "already_blocked")


class ReportError(SimGuardError):
    """The inputs of a report are missing or do not fit together."""


# -- the store -----------------------------------------------------------------------------------


def read_store(url: str) -> dict[str, pd.DataFrame]:
    """Entries, detections, reviews and webhook deliveries of a blocklist database, as frames."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            if "blocklist_entries" not in tables:
                raise ReportError(f"{mask_url(url)}: no blocklist tables; run `simguard stream` first")
            return {
                "entries": pd.read_sql("select * from blocklist_entries order by id", conn),
                "detections": pd.read_sql("select * from detections order by id", conn),
                "reviews": pd.read_sql("select * from reviews order by id", conn),
                "deliveries": pd.read_sql("select * from webhook_deliveries", conn),
                # per channel and operator, the last version sent (the Kafka publisher's cursor)
                "published": (
                    pd.read_sql("select channel, operator, last_version from publish_state", conn)
                    if "publish_state" in tables
                    else pd.DataFrame(columns=["channel", "operator", "last_version"])
                ),
            }
    finally:
        engine.dispose()


def detection_record_id(detections: pd.DataFrame) -> pd.Series:
    """The record id of per-call detections: their idempotency keys end with it
    (``.../{trunk_id}/{record_id}``, streaming.policy.decide_calls)."""
    return detections["idempotency_key"].astype(str).str.rsplit("/", n=1).str[1]


def block_detections(
    detections: pd.DataFrame,
    *,
    observed_after: pd.Timestamp | None = None,
    sim_threshold: float | None = None,
    call_threshold: float | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Block-level detections of SIMs and of trunk calls. ``observed_after``: only SIM rows
    scored and calls started after that time (``observed_at``; evaluate's test rows are those
    scored after the test day's first midnight); ``*_threshold``: only scores strictly above it."""
    at_block = detections["outcome"].isin(BLOCK_OUTCOMES)
    sims = at_block & detections["fraud_type"].isin(SIM_TYPES)
    calls = at_block & (detections["fraud_type"] == SPOOFED_CALL)
    if observed_after is not None:
        later = pd.to_datetime(detections["observed_at"], utc=True) > observed_after
        sims &= later
        calls &= later
    if sim_threshold is not None:
        sims &= detections["score"] > sim_threshold
    if call_threshold is not None:
        calls &= detections["score"] > call_threshold
    sim_rows = detections[sims]
    call_rows = detections[calls].assign(record_id=lambda f: detection_record_id(f))
    return sim_rows, call_rows


def flagged_by_stream(detections: pd.DataFrame, **kwargs: Any) -> tuple[set[str], set[str]]:
    """(SIM numbers, trunk call record ids) the stream blocked; arguments as :func:`block_detections`."""
    sims, calls = block_detections(detections, **kwargs)
    return set(sims["number"].astype(str)), set(calls["record_id"].astype(str))


# -- counting ------------------------------------------------------------------------------------


def precision_recall(flagged: set[str], units: pd.DataFrame) -> dict[str, Any]:
    """Unit-level counts as ``simguard evaluate`` makes them. ``units``: indexed by unit (number
    or record id) with a ``role`` column (``positive``, ``negative``, ``excluded``). Excluded
    units are ignored; a flagged unit the frame does not know counts as a false positive."""
    role = units["role"]
    positives = set(units.index[role == "positive"])
    excluded = set(units.index[role == "excluded"])
    tp = len(flagged & positives)
    fp = len(flagged - positives - excluded)
    fn = len(positives - flagged)
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": tp / (tp + fp) if tp + fp else float("nan"),
        "recall": tp / (tp + fn) if tp + fn else float("nan"),
    }


# -- ground truth --------------------------------------------------------------------------------


def day_files(cdr_dir: str | Path, *, last_days: int | None = None) -> list[Path]:
    """CDR files of a simulation (or its ``cdrs`` folder), in day order; ``last_days``: only the
    files of its last N days."""
    from pipeline.simulate import cdr_files

    files = cdr_files(cdr_dir)
    if not files:
        raise ReportError(f"{cdr_dir}: no CDR files (expected cdrs/day=YYYY-MM-DD/part-*.parquet)")
    if last_days is None:
        return files
    days = sorted({p.parent.name for p in files})[-last_days:]
    return [p for p in files if p.parent.name in days]


@dataclass(frozen=True)
class GroundTruth:
    #: per SIM number seen calling in the streamed CDRs, plus every fraud SIM of the labels (with
    #: ``since``: those seen from then on): ``role``, ``label``, ``population``, ``first_fraud_at``
    #: (fraud SIMs active in the period)
    sims: pd.DataFrame
    #: per streamed record id of a spoofed call: ``role`` = positive (other calls are negatives)
    calls: pd.DataFrame
    #: outgoing voice calls of the fraud SIMs active in the period: ``a_number``, ``start_time``
    fraud_calls: pd.DataFrame
    start: pd.Timestamp
    end: pd.Timestamp
    records: int


def ground_truth(
    labels_dir: str | Path,
    files: Sequence[Path],
    *,
    since: pd.Timestamp | None = None,
    before: pd.Timestamp | None = None,
) -> GroundTruth:
    """Who was fraudulent in the streamed CDRs ``files`` (those that start ``before``, when
    given), from the simulator's labels. With ``since`` the records before it are history a
    stream loaded, not streamed: only numbers seen from ``since`` on are units, and a fraud SIM
    whose first fraudulent call came before it is excluded (nothing was decided then)."""
    labels_dir = Path(labels_dir)
    for name in ("sims.parquet", "calls.parquet"):
        if not (labels_dir / name).exists():
            raise ReportError(f"{labels_dir / name} not found: pass the labels/ folder `simguard simulate` wrote")
    cdrs = pd.concat(
        [pq.read_table(p, columns=["record_id", "a_number", "start_time", "event_type"]).to_pandas() for p in files],
        ignore_index=True,
    )
    cdrs["start_time"] = pd.to_datetime(cdrs["start_time"], utc=True)
    if before is not None:
        cdrs = cdrs[cdrs["start_time"] < before]
    sims = pd.read_parquet(labels_dir / "sims.parquet", columns=["a_number", "label", "population", "activity_start"])
    sims = sims.drop_duplicates("a_number").set_index("a_number")
    sims["activity_start"] = pd.to_datetime(sims["activity_start"], utc=True)

    # fraud SIMs: positive when they made a call at or after their activity start in the period
    fraud = sims[sims["label"] != "normal"]
    own = cdrs[cdrs["a_number"].isin(fraud.index)].join(fraud["activity_start"], on="a_number")
    active = own[own["start_time"] >= own["activity_start"]]
    first = active.groupby("a_number")["start_time"].min()
    seen = pd.Index(cdrs["a_number"].unique())
    units = sims.reindex(seen.union(fraud.index))
    units["label"] = units["label"].fillna("normal")
    units["population"] = units["population"].fillna("unlabelled")
    units["role"] = np.where(units["label"] == "normal", "negative",
                             np.where(units.index.isin(first.index), "positive", "excluded"))
    units["first_fraud_at"] = first.reindex(units.index)
    if since is not None:
        streamed = cdrs["start_time"] >= since
        seen = pd.Index(cdrs.loc[streamed, "a_number"].unique())
        units = units[units.index.isin(seen.union(first.index[first >= since]))]
        units.loc[units["first_fraud_at"] < since, "role"] = "excluded"
        cdrs = cdrs[streamed]
    fraud_calls = active.loc[active["event_type"] == "voice", ["a_number", "start_time"]].reset_index(drop=True)

    spoofed = pd.read_parquet(labels_dir / "calls.parquet", columns=["record_id", "spoofed"])
    spoofed = spoofed.loc[spoofed["spoofed"] & spoofed["record_id"].isin(cdrs["record_id"]), "record_id"]
    calls = pd.DataFrame({"role": "positive"}, index=pd.Index(spoofed.astype(str), name="record_id"))
    return GroundTruth(
        sims=units.drop(columns=["activity_start"]),
        calls=calls,
        fraud_calls=fraud_calls,
        start=cdrs["start_time"].min(),
        end=cdrs["start_time"].max(),
        records=len(cdrs),
    )


def detection_delays(sim_blocks: pd.DataFrame, truth: GroundTruth) -> pd.DataFrame:
    """Per true-positive SIM: its first fraudulent call, the observed time of its earliest
    block-level detection, the minutes between them and the voice calls it made meanwhile."""
    positives = truth.sims[truth.sims["role"] == "positive"]
    blocked_at = (
        sim_blocks.assign(observed_at=pd.to_datetime(sim_blocks["observed_at"], utc=True))
        .groupby("number")["observed_at"].min()
    )
    tp = positives.index.intersection(blocked_at.index)
    out = pd.DataFrame(
        {"label": positives.loc[tp, "label"], "first_fraud_at": positives.loc[tp, "first_fraud_at"],
         "blocked_at": blocked_at.loc[tp]},
        index=tp,
    )
    out["minutes"] = ((out["blocked_at"] - out["first_fraud_at"]).dt.total_seconds() / 60).clip(lower=0)
    calls = truth.fraud_calls.join(out["blocked_at"], on="a_number", how="inner")
    before = calls[calls["start_time"] < calls["blocked_at"]].groupby("a_number").size()
    out["calls"] = before.reindex(out.index).fillna(0).astype(int)
    return out.sort_index()


def _quantiles(values: pd.Series) -> dict[str, float | None]:
    if values.empty:
        return {"median": None, "p95": None}
    return {"median": float(values.quantile(0.5)), "p95": float(values.quantile(0.95))}


# -- the report ----------------------------------------------------------------------------------


def build_report(
    settings: Settings,
    *,
    labels: str | Path,
    cdrs: str | Path,
    last_days: int | None = None,
    csv_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Everything ``simguard report`` prints, as one JSON-able dict."""
    from features.numbering import load_numbering_plan
    from streaming.blocklist.batches import stream_totals
    from streaming.blocklist.db import make_engine

    store = read_store(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        stream = stream_totals(engine)
    finally:
        engine.dispose()
    truth = ground_truth(labels, day_files(cdrs, last_days=last_days))
    sim_blocks, call_blocks = block_detections(store["detections"])
    sims, calls = set(sim_blocks["number"].astype(str)), set(call_blocks["record_id"].astype(str))

    sim_pr = precision_recall(sims, truth.sims)
    positives = truth.sims[truth.sims["role"] == "positive"]
    recall_by_type = {
        t: {"caught": int(positives.index[positives["label"] == t].isin(list(sims)).sum()),
            "of": int((positives["label"] == t).sum())}
        for t in SIM_TYPES
    }
    excluded = set(truth.sims.index[truth.sims["role"] == "excluded"])
    wrong = truth.sims.reindex(sorted(sims - set(positives.index) - excluded))
    false_by_population = wrong["population"].fillna("unlabelled").value_counts().to_dict()
    # every streamed call that is not spoofed is a negative: only the positives need listing
    call_pr = precision_recall(calls, truth.calls)

    delays = detection_delays(sim_blocks, truth)
    entries, reviews, det = store["entries"], store["reviews"], store["detections"]
    blocks = entries[entries["action"] == "block"]
    spared = det[(det["outcome"] == "allowed") & det["why"].astype(str).str.startswith("allowlisted")]
    plan = load_numbering_plan()
    operator_settings = settings.blocklist.for_operators(plan.operators)
    operators = list(operator_settings)
    exports = sorted(Path(csv_dir).glob("*.csv")) if csv_dir is not None else []
    sent = store["published"]
    sent = sent[sent["channel"] == "kafka"].set_index("operator")["last_version"]
    return {
        "period": {"start": truth.start.isoformat(), "end": truth.end.isoformat(), "cdrs": truth.records},
        "stream": stream,
        "blocks_by_type": blocks["fraud_type"].value_counts().sort_index().to_dict(),
        "numbers_blocked": int(blocks.loc[blocks["scope"] == "all", "number"].nunique()),
        "trunk_rules": int(blocks.loc[blocks["scope"] != "all", ["number", "scope"]].drop_duplicates().shape[0]),
        "reviews_by_type": reviews["fraud_type"].value_counts().sort_index().to_dict() if len(reviews) else {},
        "spared_by_allowlist": int(spared["number"].nunique()),
        "sims": {**sim_pr, "recall_by_type": recall_by_type, "false_positives_by_population": false_by_population},
        "spoofed_calls": call_pr,
        "delay": {
            "sims": len(delays),
            "minutes": _quantiles(delays["minutes"]),
            "calls": _quantiles(delays["calls"].astype(float)),
            "by_type": {t: {"minutes": _quantiles(g["minutes"]), "calls": _quantiles(g["calls"].astype(float))}
                        for t, g in delays.groupby("label")},
        },
        "models": {
            str(name): sorted({str(v) for v in group["model_version"].dropna()})
            for name, group in blocks.groupby("model_name")
        },
        "where": {
            "kafka_bootstrap": settings.kafka.bootstrap_servers,
            "kafka_topics": [f"{settings.kafka.topics.blocklist_prefix}.{op}" for op in operators],
            "head_version": int(entries["id"].max()) if len(entries) else 0,
            # per operator: the last blocklist version on its Kafka topic
            "kafka_published": {op: int(sent.get(op, 0)) for op in operators},
            "serve_url": f"http://{settings.service.host}:{settings.service.port}/blocklist?since=0",
            # operators that may read it over HTTP (an API token is configured; the token is not shown)
            "api_operators": [op for op, cfg in operator_settings.items() if cfg.api_token is not None],
            "csv": [str(p) for p in exports],
            # credentials masked: the report is printed and shared
            "database": settings.shown_database_url,
            "mlflow": settings.shown_mlflow_uri,
            "dead_letter_topic": settings.kafka.topics.dead_letter,
        },
    }


def _pct(x: float | None) -> str:
    return "-" if x is None or x != x else f"{100 * x:.1f}%"


def _num(x: float | None, unit: str = "") -> str:
    return "-" if x is None else f"{x:,.0f}{unit}"


def format_report(report: dict[str, Any], *, env_file: str | Path | None = None,
                  simguard: str = ".venv/bin/simguard") -> str:
    """The report as text for a new user. ``env_file``: a shell file with the run's ``SIMGUARD_*``
    settings; the commands the report suggests then source it in a subshell."""

    def cmd(text: str) -> str:
        return f"({'source ' + str(env_file) + ' && ' if env_file else ''}{simguard} {text})"

    s, p, w = report["stream"], report["period"], report["where"]
    lines = []
    add = lines.append
    start = dt.datetime.fromisoformat(p["start"]).strftime("%Y-%m-%d %H:%M")
    end = dt.datetime.fromisoformat(p["end"]).strftime("%Y-%m-%d %H:%M")
    add(f"SIMGuard stream report: CDRs from {start} to {end} UTC")
    add("")
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(s["dead_letter_reasons"].items())) or "none"
    add(f"CDRs read from Kafka   {s['records_in']:,}: {s['valid']:,} processed, "
        f"{s['dead_lettered']:,} dead-lettered ({reasons})")
    add(f"                       dead-letter topic {w['dead_letter_topic']}")
    by_type = report["blocks_by_type"]
    add(f"Blocks                 {sum(by_type.values()):,} blocklist entries: "
        + (", ".join(f"{k} {v:,}" for k, v in by_type.items()) or "none"))
    add(f"                       {report['numbers_blocked']:,} numbers blocked outright, "
        f"{report['trunk_rules']:,} trunk-scoped rules for spoofed CLIs")
    rv = report["reviews_by_type"]
    add(f"Reviews for analysts   {sum(rv.values()):,}: " + (", ".join(f"{k} {v:,}" for k, v in rv.items()) or "none"))
    add(f"Spared by allowlist    {report['spared_by_allowlist']:,} numbers scored like fraud but were not blocked: "
        "they are on the allowlist (emergency, short codes, registered businesses)")
    add("")
    add("Against the simulator's ground truth")
    sm = report["sims"]
    add(f"  fraud SIMs           precision {_pct(sm['precision'])} ({sm['tp']:,} of {sm['tp'] + sm['fp']:,} "
        f"blocked SIMs are fraud), recall {_pct(sm['recall'])} ({sm['tp']:,} of {sm['tp'] + sm['fn']:,} "
        "active fraud SIMs blocked)")
    add("                       by type: " + ", ".join(
        f"{t} {v['caught']}/{v['of']}" for t, v in sm["recall_by_type"].items()))
    if sm["false_positives_by_population"]:
        add("                       legitimate SIMs blocked, by population: " + ", ".join(
            f"{k} {v}" for k, v in sm["false_positives_by_population"].items()))
    sc = report["spoofed_calls"]
    add(f"  spoofed calls        precision {_pct(sc['precision'])} ({sc['tp']:,} of {sc['tp'] + sc['fp']:,} "
        f"flagged calls are spoofed), recall {_pct(sc['recall'])} ({sc['tp']:,} of {sc['tp'] + sc['fn']:,})")
    d = report["delay"]
    add(f"  detection delay      over {d['sims']:,} fraud SIMs blocked, from the first fraudulent call to the "
        "block's observed (event) time:")
    add(f"                       minutes median {_num(d['minutes']['median'])}, p95 {_num(d['minutes']['p95'])}; "
        f"calls made meanwhile median {_num(d['calls']['median'])}, p95 {_num(d['calls']['p95'])}")
    for t, v in d["by_type"].items():
        add(f"                       {t}: {_num(v['minutes']['median'])} min / {_num(v['calls']['median'])} calls "
            f"(median), {_num(v['minutes']['p95'])} min / {_num(v['calls']['p95'])} calls (p95)")
    add("                       (observed time: the scoring time of the row that blocked it, the end of the "
        "minute or micro-batch; spoofed calls are decided one by one, on the call itself)")
    add("")
    add(f"Blocklists (version {w['head_version']:,})")
    published = w.get("kafka_published", {})
    behind = {op: v for op, v in published.items() if v < w["head_version"]}
    if not behind:
        state = f"published up to version {w['head_version']:,} for every operator"
    else:
        state = ("NOT fully published (" + ", ".join(f"{op} at version {v:,}" for op, v in behind.items())
                 + f"): run {cmd('blocklist publish')}")
    add(f"  Kafka: {state}; one compacted topic per operator on {w['kafka_bootstrap']}:")
    add(f"         {', '.join(w['kafka_topics'])}")
    add(f"  HTTP: {cmd('serve')}   then   {_curl(w, env_file)}")
    for path in w["csv"]:
        add(f"  CSV: {path}")
    if not w["csv"]:
        add(f"  CSV: {cmd('blocklist export --operator viettel --out blocklist.csv')}")
    add(f"  one number's story (why it was blocked): {cmd('blocklist show <number>')}")
    models = ", ".join(f"{k} v{'/'.join(v)}" for k, v in report["models"].items()) or "none"
    add(f"Models (MLflow registry): {models}")
    uri = w["mlflow"]
    ui = f"--backend-store-uri {uri}" if uri.startswith("sqlite") else f"(tracking server {uri})"
    add(f"  MLflow UI: .venv/bin/mlflow ui {ui} --port 5000   then open http://127.0.0.1:5000")
    return "\n".join(lines)


def _curl(where: dict[str, Any], env_file: str | Path | None) -> str:
    """A ``GET /blocklist`` an operator can paste: its token from the run's environment file
    when that file sets one (the token itself is never printed), else a placeholder."""
    ops = where.get("api_operators") or []
    url = where["serve_url"]
    if not ops:
        return (f"curl -H 'Authorization: Bearer <token>' '{url}' (set an operator's token first: "
                "blocklist.operators.<operator>.api_token)")
    op = ops[0]
    var = f"SIMGUARD_BLOCKLIST__OPERATORS__{op.upper()}__API_TOKEN"
    if env_file is not None and f"{var}=" in Path(env_file).read_text():
        return f"(source {env_file} && curl -H \"Authorization: Bearer ${var}\" '{url}')   ({op}'s list)"
    return f"curl -H 'Authorization: Bearer <{op}'s api_token>' '{url}'"


def report_json(report: dict[str, Any]) -> str:
    def clean(v: Any) -> Any:
        if isinstance(v, float) and v != v:
            return None
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        if isinstance(v, np.generic):
            return clean(v.item())
        return v

    return json.dumps(clean(report), sort_keys=True)
