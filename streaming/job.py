"""``simguard stream``: Kafka CDRs -> validation -> features -> champion models -> decisions.

``ingest -> transform -> write``, as several Structured Streaming queries:

- ``validate``: reads the CDR topic, parses and validates every record once, in Python
  (``features.validation``, the definition batch ingest uses), and appends the verdicts to the
  *validated table* (``<state_dir>/validated``, Parquet) through Spark's file sink, which commits
  each micro-batch exactly once (its ``_spark_metadata`` log);
- ``intake``: reads the validated table; invalid records go to the dead-letter topic with their
  reason and source partition and offset, and the batch's counts are kept (records in = valid +
  dead-lettered);
- ``cell``, ``imei``, ``cli``, ``trunk``: the cross-SIM aggregates the features need (cell
  cohorts, IMEIs shared by SIMs, calls per CLI, calls per trunk group), in update mode with a
  watermark, into update logs;
- ``sim``: the per-SIM bucket aggregate, in update mode, so a SIM's window rows are refreshed
  and scored in every micro-batch that touches it, before its window closes;
- ``calls``: voice calls arriving on trunks, scored for spoofing.

Every query after ``validate`` reads the validated table with Spark's native Parquet reader (a
file source over a file sink's output sees committed micro-batches only, each once), so a record
is read from Kafka and validated in Python once, however many aggregates use it. The table is also
the stream's archive of canonical CDRs (the ``simguard ingest`` schema plus the verdict and the
Kafka coordinates).

Scores go to a :class:`DecisionSink` (policy, blocklist store, distribution) with deterministic
keys (query, batch id, number, scope), so a micro-batch that Spark re-runs after a crash writes
nothing twice. With ``available_now`` the queries run in phases (validation, then intake and
context, then SIM scoring, then call scoring), which makes a backfill's result, entry order
included, independent of how the run was interrupted.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pandas as pd

from features.calls import CALL_KEY_COLUMNS, assemble_call_features, trunk_calls
from features.errors import ConfigError
from features.numbering import NumberingPlan
from features.schema import FIELD_NAMES
from features.settings import FeatureSettings
from features.sim import ENTITY, KEY_COLUMNS, SLIDE, WINDOW_END, WINDOW_START, assemble_sim_features
from models.scoring import SCORE
from streaming.features_stream import (
    LogRetention,
    Trigger,
    aggregate_streams,
    latest,
    log_horizon,
    update_log_writer,
)
from streaming.metrics import StreamMetrics
from streaming.policy import BUCKET_COMPLETE
from streaming.scoring import ChampionScorer
from streaming.settings import StreamSettings
from streaming.source import kafka_stream
from streaming.validate import VALID, dead_letter_payload, validate_stream, validated_schema

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery
    from pyspark.sql.types import StructType

log = logging.getLogger("simguard.stream")

CONTEXT_QUERIES = ("cell", "imei", "cli", "trunk")
#: the queries in the order a backfill (``available_now``) runs them; each phase reads what the
#: phases before it wrote
PHASES: tuple[tuple[str, ...], ...] = (("validate",), ("intake", *CONTEXT_QUERIES), ("sim",), ("calls",))
QUERIES = tuple(name for phase in PHASES for name in phase)


class _Stages:
    """Wall seconds per stage of one micro-batch, for its batch record."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.monotonic()

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.laps[name] = round(now - self._last, 3)
        self._last = now


class DecisionSink(Protocol):
    """Where scores become decisions (policy, blocklist store, distribution)."""

    def min_score(self, kind: str, *, model_threshold: float | None = None) -> float:
        """Scores at or below this can only be allowed: they need not leave the executors.
        ``model_threshold``: the scoring version's validated threshold (see ``_decide``)."""

    def apply(self, candidates: pd.DataFrame, *, kind: str, query: str, batch_id: int) -> dict[str, int]:
        """Decide and store; returns counts (e.g. ``block:simbox``) for the batch's metrics."""

    def after_batch(self) -> None:
        """Publish and deliver what the batch decided."""


@dataclass
class StreamJob:
    spark: SparkSession
    kafka_options: dict[str, str]
    cdr_topic: str
    dead_letter_topic: str
    stream: StreamSettings
    features: FeatureSettings
    state_dir: Path
    spam: ChampionScorer
    spoof: ChampionScorer
    sink: DecisionSink
    reasons_top_k: int = 3
    plan: NumberingPlan | None = None
    metrics: StreamMetrics = field(default_factory=StreamMetrics)
    _stop_requested: bool = field(default=False, init=False, repr=False)

    def request_stop(self) -> None:
        """Start no further query or phase; whoever stops the running queries (a signal
        handler's thread) then ends ``run``."""
        self._stop_requested = True

    def __post_init__(self) -> None:
        need = self.lookback_s
        if self.stream.log_keep_s < need:
            raise ConfigError(
                f"stream.log_keep_s is {self.stream.log_keep_s} s, shorter than the features' look-back of {need} s "
                "(window, owner look-back, watermark delay and one bucket): raise it"
            )

    @property
    def lookback_s(self) -> int:
        """How far behind the newest bucket a micro-batch can read an update log."""
        f = self.features
        return f.window_s + f.owner_lookback_s + f.watermark_delay_s + max(f.slide_s, f.trunk_bucket_s)

    @property
    def retention(self) -> LogRetention:
        return LogRetention(compact_every=self.stream.log_compact_every, keep_s=self.stream.log_keep_s)

    # -- sources ---------------------------------------------------------------------------
    def _kafka_validated(self) -> DataFrame:
        raw = kafka_stream(
            self.spark,
            kafka_options=self.kafka_options,
            topic=self.cdr_topic,
            starting_offsets=self.stream.starting_offsets,
            max_offsets_per_trigger=self.stream.max_offsets_per_trigger,
        )
        return validate_stream(raw, rules=self.stream.validation)

    def _validated(self) -> DataFrame:
        """The validated table as a stream (committed micro-batches of ``validate`` only)."""
        self.validated_table.mkdir(parents=True, exist_ok=True)
        reader = self.spark.readStream.schema(validated_schema())
        if self.stream.max_files_per_trigger:
            reader = reader.option("maxFilesPerTrigger", str(self.stream.max_files_per_trigger))
        return reader.parquet(str(self.validated_table))

    def _valid_cdrs(self) -> DataFrame:
        from pyspark.sql import functions as F

        return self._validated().where(F.col(VALID)).select(*FIELD_NAMES)

    @property
    def validated_table(self) -> Path:
        return self.state_dir / "validated"

    @property
    def logs(self) -> Path:
        return self.state_dir / "state"

    @property
    def checkpoints(self) -> Path:
        return self.state_dir / "checkpoints"

    # -- queries ---------------------------------------------------------------------------
    def _start(
        self,
        name: str,
        frame: DataFrame,
        fn: Callable[[DataFrame, int], None],
        *,
        trigger: Trigger,
        mode: str = "update",
    ) -> StreamingQuery:
        writer = (
            frame.writeStream.outputMode(mode)
            .queryName(f"simguard-{name}")
            .option("checkpointLocation", str(self.checkpoints / name))
            .foreachBatch(fn)
        )
        return trigger.apply(writer).start()

    def _intake_batch(self, batch: DataFrame, batch_id: int) -> None:
        from pyspark.sql import functions as F

        started = time.monotonic()
        batch = batch.persist()
        try:
            counts = {r["_valid"]: r["n"] for r in batch.groupBy(VALID).agg(F.count("*").alias("n")).collect()}
            reasons = {
                r["reason_code"]: r["n"]
                for r in batch.where(~F.col(VALID)).groupBy("reason_code").agg(F.count("*").alias("n")).collect()
            }
            if reasons:
                (
                    dead_letter_payload(batch)
                    .write.format("kafka")
                    .options(**self.kafka_options)
                    .option("topic", self.dead_letter_topic)
                    .save()
                )
        finally:
            batch.unpersist()
        record = {
            "batch_id": batch_id,
            "records_in": int(counts.get(True, 0) + counts.get(False, 0)),
            "valid": int(counts.get(True, 0)),
            "dead_lettered": int(counts.get(False, 0)),
            "dead_letter_reasons": {str(k): int(v) for k, v in reasons.items()},
            "duration_s": round(time.monotonic() - started, 3),
        }
        self._write_batch_record("intake", batch_id, record)
        self.metrics.observe_validation(record)
        log.info("intake batch %s: %s", batch_id, record)

    def _write_batch_record(self, query: str, batch_id: int, record: dict[str, Any]) -> None:
        # one file per batch id: a re-run batch overwrites its own record
        folder = self.state_dir / "batches" / query
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{batch_id:08d}.json").write_text(json.dumps(record, sort_keys=True))

    def _log_writer(self, name: str) -> Callable[[DataFrame, int], None]:
        return update_log_writer(self.logs / name, name, self.retention)

    def _score_sims(self, batch: DataFrame, batch_id: int) -> None:
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        started, stages = time.monotonic(), _Stages()
        self._log_writer("sim")(batch, batch_id)
        stages.lap("aggregate")
        # the buckets this batch updated, and every current bucket of those SIMs: a window row
        # merges the SIM's buckets of the last 24 h up to the updated one
        buckets = self.spark.read.parquet(str(self.logs / "sim" / f"batch_id={batch_id}"))
        updated = buckets.select(ENTITY, SLIDE)
        # the newest outgoing call the batch holds (epoch s) marks how far event time has got: a
        # bucket ending after it is scored half-filled. From the batch's own rows, so a batch
        # Spark re-runs after a crash decides the same way.
        first, newest = buckets.agg(F.min(SLIDE), F.max(F.array_max(F.col("calls.t")))).first()
        if first is None:
            # a batch that only moved the watermark (state eviction): no SIM to score
            self._finish("sim", batch_id, started, active=0, counts={}, stages=stages)
            return
        # a window row ending at an updated bucket merges the buckets of the window before it:
        # older buckets (and their context) are not read
        since = first - (self.features.window_s - self.features.slide_s)
        # used twice (the cross-SIM context and the window merge): ranked once
        history = (
            self._latest_or_empty("sim", where=F.col(SLIDE) >= since)
            .join(updated.select(ENTITY).distinct(), [ENTITY], "left_semi")
            .persist()
        )
        features = assemble_sim_features(
            history,
            self._latest_or_empty("cell", where=F.col("bucket") >= since),
            self._latest_or_empty("imei", where=F.col(SLIDE) >= since),
            settings=self.features,
            plan=self.plan,
            ends=updated,
        )
        model = self.spam.refresh(self.spark)
        scored = self.spam.score(features, keep=list(features.columns))
        complete = F.col(WINDOW_END) <= F.lit(newest).cast("timestamp") if newest is not None else F.lit(False)
        scored = scored.withColumn(BUCKET_COMPLETE, complete)
        if self.stream.latest_window_only:
            # the SIM's windows up to the updated bucket (6 h to 24 h long): decide on the one
            # that scores highest, one decision per SIM and bucket
            top = Window.partitionBy(ENTITY).orderBy(F.col(SCORE).desc(), F.col(WINDOW_START).desc())
            scored = scored.withColumn("_n", F.row_number().over(top)).where("_n = 1").drop("_n")
        low = self.sink.min_score("sim", model_threshold=model.threshold)
        candidates = scored.where(F.col(SCORE) > low).toPandas()
        stages.lap("features_and_scores")
        counts = self._decide(candidates, kind="sim", query="sim", batch_id=batch_id, model=self.spam)
        stages.lap("decide")
        active = history.select(ENTITY).distinct().count()
        history.unpersist()
        self._finish("sim", batch_id, started, active=active, counts=counts, stages=stages)

    def _score_calls(self, batch: DataFrame, batch_id: int) -> None:
        from pyspark.sql import functions as F

        started, stages = time.monotonic(), _Stages()
        batch, first, too_late = split_too_late(batch, horizon=self._calls_horizon())
        if too_late:
            log.warning(
                "calls batch %s: %d trunk calls older than the context the update logs still keep are not "
                "scored; they stay in the validated table",
                batch_id,
                too_late,
            )
        if first is None:
            self._finish("calls", batch_id, started, active=None, counts={}, stages=stages, too_late=too_late)
            return
        # the CLI buckets of the owner look-back before the batch's first call, the trunk
        # buckets from its hour on: older buckets are not read
        cli_since = first - dt.timedelta(seconds=self.features.owner_lookback_s + self.features.window_s)
        trunk_since = first - dt.timedelta(seconds=self.features.trunk_bucket_s)
        features = assemble_call_features(
            batch,
            self._latest_or_empty("cli", where=F.col("bucket_start") >= F.lit(cli_since)),
            self._latest_or_empty("trunk", where=F.col("trunk_bucket") >= F.lit(trunk_since)),
            settings=self.features,
            plan=self.plan,
        )
        model = self.spoof.refresh(self.spark)
        scored = self.spoof.score(features, keep=list(features.columns))
        low = self.sink.min_score("call", model_threshold=model.threshold)
        candidates = scored.where(F.col(SCORE) > low).toPandas()
        stages.lap("features_and_scores")
        counts = self._decide(candidates, kind="call", query="calls", batch_id=batch_id, model=self.spoof)
        stages.lap("decide")
        self._finish("calls", batch_id, started, active=None, counts=counts, stages=stages, too_late=too_late)

    def _calls_horizon(self) -> dt.datetime | None:
        """The earliest start a trunk call can have and still find its whole look-back in the
        CLI and trunk logs (their compaction drops old buckets); None: nothing dropped yet. Read
        just before the logs are: a generation committed in between moves it on by one compaction
        interval of event time, which matters only for a call about a day late."""
        f = self.features
        bounds = [
            h + lookback
            for h, lookback in (
                (log_horizon(self.logs / "cli"), f.owner_lookback_s + f.window_s),
                (log_horizon(self.logs / "trunk"), f.trunk_bucket_s),
            )
            if h is not None
        ]
        # naive UTC, like the timestamps Spark hands back (session time zone UTC)
        return dt.datetime.fromtimestamp(max(bounds), dt.UTC).replace(tzinfo=None) if bounds else None

    def _decide(
        self, candidates: pd.DataFrame, *, kind: str, query: str, batch_id: int, model: ChampionScorer
    ) -> dict[str, int]:
        if candidates.empty:
            return {}
        assert model.model is not None
        # Spark hands rows over in no particular order; the store numbers new entries in the
        # order of the decisions, so a fixed order makes versions independent of the run
        order = [ENTITY, WINDOW_START] if kind == "sim" else ["record_id"]
        candidates = candidates.sort_values(order, kind="stable").reset_index(drop=True)
        reasons = model.model.reasons(candidates, top_k=self.reasons_top_k, feature_settings=self.features)
        candidates["reasons"] = [[r.text for r in rs] for rs in reasons]
        candidates["model_name"] = model.name
        candidates["model_version"] = int(model.model.version or 0)
        # the operating point the version was validated at: the block threshold where the
        # policy's block_above is null (streaming.policy)
        candidates["model_threshold"] = float(model.model.threshold)
        # batch ids restart with a new checkpoint; the query id (kept in the checkpoint) does not
        return self.sink.apply(candidates, kind=kind, query=f"{query}@{self._query_id(query)}", batch_id=batch_id)

    def _query_id(self, name: str) -> str:
        meta = self.checkpoints / name / "metadata"
        return str(json.loads(meta.read_text())["id"]) if meta.exists() else "new"

    def _finish(
        self,
        query: str,
        batch_id: int,
        started: float,
        *,
        active: int | None,
        counts: dict[str, int],
        stages: _Stages,
        too_late: int | None = None,
    ) -> None:
        self.sink.after_batch()
        stages.lap("publish")
        record = {
            "batch_id": batch_id,
            "active_sims": active,
            "decisions": counts,
            "duration_s": round(time.monotonic() - started, 3),
            "stages_s": stages.laps,
            # wall clock when the batch's decisions were published (processing latency ends here)
            "finished_at": round(time.time(), 3),
        }
        if too_late is not None:
            record["too_late"] = too_late
        self._write_batch_record(query, batch_id, record)
        self.metrics.observe_decisions(query, record)
        log.info("%s batch %s: %s", query, batch_id, record)

    def _latest_or_empty(self, name: str, *, where: Column | None = None) -> DataFrame:
        folder = self.logs / name
        if folder.exists() and any(folder.rglob("*.parquet")):
            return latest(self.spark, self.logs, name, where=where)
        return self._empty_aggregate(name)

    def _empty_aggregate(self, name: str) -> DataFrame:
        return self.spark.createDataFrame([], schema=self._aggregate_schemas[name])

    # -- running ---------------------------------------------------------------------------
    def start_queries(self, names: tuple[str, ...], *, trigger: Trigger) -> dict[str, StreamingQuery]:
        queries: dict[str, StreamingQuery] = {}
        aggregates: dict[str, DataFrame] = {}
        if set(names) & {*CONTEXT_QUERIES, "sim"}:
            aggregates = aggregate_streams(self._valid_cdrs(), settings=self.features, plan=self.plan)
        for name in names:
            if name == "validate":
                writer = (
                    self._kafka_validated()
                    .writeStream.outputMode("append")
                    .queryName("simguard-validate")
                    .format("parquet")
                    .option("path", str(self.validated_table))
                    .option("checkpointLocation", str(self.checkpoints / name))
                )
                queries[name] = trigger.apply(writer).start()
            elif name == "intake":
                queries[name] = self._start(name, self._validated(), self._intake_batch, trigger=trigger, mode="append")
            elif name in CONTEXT_QUERIES:
                queries[name] = self._start(name, aggregates[name], self._log_writer(name), trigger=trigger)
            elif name == "sim":
                queries[name] = self._start(name, aggregates["sim"], self._score_sims, trigger=trigger)
            elif name == "calls":
                queries[name] = self._start(
                    name, trunk_calls(self._valid_cdrs()), self._score_calls, trigger=trigger, mode="append"
                )
            else:
                raise ValueError(f"unknown query {name}")
        return queries

    @cached_property
    def _aggregate_schemas(self) -> dict[str, StructType]:
        """Row schemas of the aggregates (an update log not written yet reads as an empty frame)."""
        aggregates = aggregate_streams(self._valid_cdrs(), settings=self.features, plan=self.plan)
        return {name: frame.schema for name, frame in aggregates.items()}

    def run(self, *, available_now: bool, timeout_s: float | None = None) -> dict[str, Any]:
        """Run until the topic is drained (``available_now``) or until stopped."""
        self.metrics.serve(self.stream.metrics_port)
        # the listener lives as long as the job, not as long as the (shared) Spark session
        self.metrics.listen(self.spark)
        try:
            if available_now:
                self.run_phases(PHASES, timeout_s=timeout_s)
                return self.summary()
            queries = self.start_queries(QUERIES, trigger=Trigger(interval_s=self.stream.trigger_interval_s))
            try:
                self.spark.streams.awaitAnyTermination(timeout_s)
            finally:
                for q in queries.values():
                    q.stop()
            for q in queries.values():
                if q.exception() is not None:
                    raise q.exception()  # type: ignore[misc]
            return self.summary()
        finally:
            self.metrics.unlisten(self.spark)

    def run_phases(self, phases: tuple[tuple[str, ...], ...], *, timeout_s: float | None = None) -> None:
        """Each phase's queries with ``availableNow``, concurrently; a phase starts when the one
        before it has drained its input."""
        trigger = Trigger(available_now=True)
        for phase in phases:
            if self._stop_requested:
                break
            pending = {name: self._uncommitted_batch(name) for name in phase}
            queries = self.start_queries(phase, trigger=trigger)
            for name, q in queries.items():
                q.awaitTermination(timeout_s)
                batch = pending[name]
                if q.exception() is not None and batch is not None and self._committed(name, batch):
                    # Spark 4.1's Kafka source fails the progress report of a batch re-run
                    # from the offset log after a crash (KafkaMicroBatchStream.metrics: no
                    # latest offsets yet, NullPointerException), after the batch committed.
                    # The batch is done; starting the query again plans the next one.
                    log.warning(
                        "%s: batch %s re-run after a restart, committed, then %s; starting the query again",
                        name,
                        batch,
                        str(q.exception()).splitlines()[0][:200],
                    )
                    q = self.start_queries((name,), trigger=trigger)[name]
                    q.awaitTermination(timeout_s)
                if q.exception() is not None:
                    raise q.exception()  # type: ignore[misc]
                if q.isActive:
                    q.stop()
                    raise TimeoutError(f"query {name} did not drain its input within {timeout_s} s")

    def _uncommitted_batch(self, name: str) -> int | None:
        """The batch a previous run planned (offset log) but did not commit (a crash), if any."""
        offsets = [int(p.name) for p in (self.checkpoints / name / "offsets").glob("[0-9]*") if p.name.isdigit()]
        if not offsets or self._committed(name, max(offsets)):
            return None
        return max(offsets)

    def _committed(self, name: str, batch: int) -> bool:
        return (self.checkpoints / name / "commits" / str(batch)).exists()

    def summary(self) -> dict[str, Any]:
        """Totals over the batch records (each batch counted once, whatever was re-run)."""
        return summarize(self.state_dir)


def split_too_late(calls: DataFrame, *, horizon: dt.datetime | None) -> tuple[DataFrame, dt.datetime | None, int]:
    """(the calls to score, the earliest start among them, how many were left out): a call that
    starts before ``horizon`` would read context that the update logs' compaction has dropped,
    so it is left out (None: keep all). The earliest start is None when there are no calls."""
    from pyspark.sql import functions as F

    first = calls.agg(F.min("start_time")).first()[0]
    if first is None:
        return calls, None, 0
    if horizon is None or first >= horizon:
        return calls, first, 0
    too_late = calls.where(F.col("start_time") < F.lit(horizon)).count()
    return calls.where(F.col("start_time") >= F.lit(horizon)), horizon, too_late


def summarize(state_dir: Path) -> dict[str, Any]:
    """A stream's totals from the batch records under ``state_dir`` (each batch counted once,
    whatever was re-run): records in, valid, dead-lettered by reason, decisions by action and
    fraud type. Readable after the job stopped (``simguard report``)."""
    out: dict[str, Any] = {
        "records_in": 0,
        "valid": 0,
        "dead_lettered": 0,
        "dead_letter_reasons": {},
        "decisions": {},
        # trunk calls not scored because they arrived after their context was compacted away
        "calls_too_late": 0,
    }
    folder = Path(state_dir) / "batches"
    for path in sorted((folder / "intake").glob("*.json")) if folder.exists() else []:
        rec = json.loads(path.read_text())
        for k in ("records_in", "valid", "dead_lettered"):
            out[k] += rec[k]
        for k, v in rec["dead_letter_reasons"].items():
            out["dead_letter_reasons"][k] = out["dead_letter_reasons"].get(k, 0) + v
    for query in ("sim", "calls"):
        for path in sorted((folder / query).glob("*.json")) if folder.exists() else []:
            rec = json.loads(path.read_text())
            for k, v in rec["decisions"].items():
                out["decisions"][k] = out["decisions"].get(k, 0) + v
            out["calls_too_late"] += int(rec.get("too_late") or 0)
    return out


__all__ = ["CALL_KEY_COLUMNS", "KEY_COLUMNS", "DecisionSink", "StreamJob", "split_too_late", "summarize"]
