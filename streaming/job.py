"""``simguard stream``: Kafka CDRs -> validation -> features as of now -> models -> decisions.

One Structured Streaming query reads the CDR topic and validates every record (in Python,
``features.validation``, the definition batch ingest uses). Its output is the union of two
branches of the same micro-batch, handed to :meth:`StreamJob._batch`:

- the validated records, valid or not;
- the per-SIM features as of every scoring point the valid records make (the JVM processors of
  ``features.sim_state``: the cross-SIM context keyed by cell and IMEI, then the trailing 24 h and
  1 h windows keyed by SIM, their state in the query's checkpoint, RocksDB), with the SIM's
  recent calls. A warm start's CDRs come in through a second source, a Parquet folder beside the
  state, as state only: they make no points.

Per micro-batch, :meth:`StreamJob._batch`

1. sends invalid records to the dead-letter topic with their reason and Kafka coordinates, and
   counts them (records in = valid + dead-lettered);
2. appends the batch's CLI and trunk aggregates to the state table (``streaming.state``, Delta
   Lake), once per (query id, batch id);
3. scores the SIM points, and every voice call that arrived on a trunk (``features.calls``);
4. turns scores into decisions (policy, blocklist store) with deterministic keys (query id,
   batch id, number, scope, scoring time) and the evidence an analyst checks them against;
5. keeps the validated records in an archive table and its own batch record in the database.

The call stage (3) and the archive (5) run on a second thread beside the SIM stage, their Spark
jobs in the micro-batch's job group; the decisions of both are stored after, in a fixed order.

Distribution to the operators (Kafka topics, webhooks, expiry) runs beside the query in its own
thread, woken after each batch that decided something: a slow webhook never delays detection.
A micro-batch that Spark re-runs after a crash appends nothing twice and decides nothing twice,
so the blocklist and its versions come out as from an uninterrupted run.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from features.calls import CALL_KEY_COLUMNS, assemble_call_features, merge_cli_rows, merge_trunk_rows, trunk_calls
from features.errors import ConfigError
from features.numbering import NumberingPlan
from features.schema import FIELD_NAMES, spark_schema
from features.settings import FeatureSettings
from features.sim import ENTITY, KEY_COLUMNS, WINDOW_END, WINDOW_START, sim_feature_names
from features.sim_state import named_features, processor_events, sim_points
from models.scoring import SCORE
from streaming.blocklist.loop import DistributionLoop
from streaming.evidence import call_evidence, sim_evidence, with_reasons
from streaming.metrics import StreamMetrics
from streaming.policy import COLD, MODEL_THRESHOLD
from streaming.scoring import ChampionScorer, first_decisive_rows
from streaming.settings import StreamSettings
from streaming.source import kafka_stream
from streaming.stages import Stages
from streaming.state import StateTable, state_rows
from streaming.validate import VALID, dead_letter_payload, validate_stream, validated_schema

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery

log = logging.getLogger("simguard.stream")

QUERY = "detect"
#: which branch a row of the query's output comes from
ROW, RECORD, POINT = "_row", "record", "point"


@dataclass(frozen=True)
class Trigger:
    """``available_now``: process what is there and stop; else every ``interval_s`` seconds."""

    available_now: bool = False
    interval_s: float = 10.0

    def apply(self, writer):
        if self.available_now:
            return writer.trigger(availableNow=True)
        return writer.trigger(processingTime=f"{self.interval_s} seconds")


class DecisionSink(Protocol):
    """Where scores become decisions (policy, blocklist store)."""

    def min_score(self, kind: str, *, model_threshold: float | None = None) -> float:
        """Scores at or below this can only be allowed: they need not leave the executors."""

    def block_thresholds(self, rows: pd.DataFrame) -> np.ndarray:
        """Per scored row: the score above which the policy blocks it."""

    def apply(self, candidates: pd.DataFrame, *, kind: str, query: str, batch_id: int) -> dict[str, int]:
        """Decide and store; returns counts (e.g. ``block:simbox``) for the batch's metrics."""

    def record_batch(self, query: str, batch_id: int, record: dict[str, Any]) -> None:
        """Keep the batch's record (a re-run batch overwrites its own)."""


class Publisher(Protocol):
    def distribute(self) -> Any:
        """Publish and deliver what was decided; never raises for a channel that is down."""


#: the message of Spark 4.1's NullPointerException in ``KafkaMicroBatchStream.metrics``
KAFKA_METRICS_NPE = 'because the return value of "scala.Option.get()" is null'


@dataclass
class StreamJob:
    spark: SparkSession
    kafka_options: dict[str, str]
    cdr_topic: str
    dead_letter_topic: str
    stream: StreamSettings
    features: FeatureSettings
    #: checkpoint, state and archive live under this URI (any Hadoop file system)
    state_uri: str
    spam: ChampionScorer
    spoof: ChampionScorer
    sink: DecisionSink
    publisher: Publisher | None = None
    reasons_top_k: int = 3
    plan: NumberingPlan | None = None
    metrics: StreamMetrics = field(default_factory=StreamMetrics)
    _stop_requested: bool = field(default=False, init=False, repr=False)

    def request_stop(self) -> None:
        """Start the query no more (not even again after a failure); whoever stops the running
        query (a signal handler's thread) then ends ``run``."""
        self._stop_requested = True

    def __post_init__(self) -> None:
        need = self.lookback_s
        if self.stream.state_keep_s < need:
            raise ConfigError(
                f"stream.state_keep_s is {self.stream.state_keep_s} s, shorter than the features' look-back of "
                f"{need} s (window, owner look-back and an hour): raise it"
            )
        self.state_uri = self.state_uri.rstrip("/")
        self.state = StateTable(self.spark, f"{self.state_uri}/state")
        #: epoch s of the minute of the state's first record (read at the first SIM stage that finds one)
        self._first_record: float | None = None
        self._query: StreamingQuery | None = None
        self._query_id: str | None = None
        self._started = threading.Event()
        self._loop: DistributionLoop | None = None
        # the call stage and the archive run beside the SIM stage: its stages are small and
        # mostly one task, so a second thread of Spark jobs uses the cores it leaves idle
        self._beside = ThreadPoolExecutor(max_workers=1, thread_name_prefix="simguard-beside")

    @property
    def lookback_s(self) -> int:
        """How far behind a record the features read the state."""
        f = self.features
        return max(f.window_s, f.owner_lookback_s + f.concurrency_window_s, f.trunk_bucket_s) + 3600

    @property
    def checkpoint(self) -> str:
        return f"{self.state_uri}/checkpoints/{QUERY}"

    @property
    def archive_uri(self) -> str:
        return f"{self.state_uri}/archive"

    @property
    def warm_uri(self) -> str:
        """The warm start's CDRs (Parquet), the query's second source."""
        return f"{self.state_uri}/warm"

    # -- a warm start ----------------------------------------------------------------------------
    def warm(self, cdrs: DataFrame, *, source: str) -> dict[str, Any]:
        """Fill a new state with earlier canonical CDRs (the day before the first record the
        stream will read, from the carrier's archive), so that the first micro-batches see the
        history a job that had been running would have: a cold state makes an ordinary SIM's
        first calls of the day look like a SIM box's (no calls in, nothing before). Once per
        ``source``: a restarted job skips it."""
        from pyspark.sql import functions as F

        note = f"warm:{hashlib.sha256(source.encode()).hexdigest()[:16]}"
        if note in self.state.notes():
            return {"warm_from": source, "loaded": False}
        if self.state.exists():
            raise ConfigError(
                f"the stream's state at {self.state.uri} already holds records (streamed, or warmed from another "
                "folder); a warm start fills a new state only (set stream.state_uri to a new location)"
            )
        span = cdrs.agg(F.count(F.lit(1)), F.min("start_time"), F.max("start_time")).first()
        # the SIM processors read them from here with the first micro-batch; the state table's
        # note below commits the warm start (a failure before it lets a new attempt overwrite)
        cdrs.select(*FIELD_NAMES).write.mode("overwrite").parquet(self.warm_uri)
        rows = state_rows(cdrs, settings=self.features, plan=self.plan)
        self.state.append(rows, app_id=note, batch_id=0, note=note)
        n, first, last = span
        return {"warm_from": source, "loaded": True, "records": int(n), "first": str(first), "last": str(last)}

    # -- the query ------------------------------------------------------------------------------
    def start(self, trigger: Trigger) -> StreamingQuery:
        empty = self.spark.createDataFrame([], spark_schema())
        self.state.check_layout(state_rows(empty, settings=self.features, plan=self.plan).columns)
        # the warm source must exist: an empty folder when there was no warm start
        self.spark.createDataFrame([], spark_schema()).write.mode("ignore").parquet(self.warm_uri)
        raw = kafka_stream(
            self.spark,
            kafka_options=self.kafka_options,
            topic=self.cdr_topic,
            starting_offsets=self.stream.starting_offsets,
            max_offsets_per_trigger=self.stream.max_offsets_per_trigger,
        )
        writer = (
            self._rows(validate_stream(raw, rules=self.stream.validation))
            .writeStream.queryName(f"simguard-{QUERY}")
            .option("checkpointLocation", self.checkpoint)
            .foreachBatch(self._batch)
        )
        self._started.clear()
        query = trigger.apply(writer).start()
        # the query id is kept in the checkpoint: with the batch id it keys every write
        self._query, self._query_id = query, str(query.id)
        self._started.set()
        return query

    def _rows(self, validated: DataFrame) -> DataFrame:
        """The query's output: the validated records and the SIM points they make."""
        from pyspark.sql import functions as F

        f = self.features
        valid = validated.where(F.col(VALID)).select(*FIELD_NAMES)
        warm = self.spark.readStream.schema(spark_schema()).parquet(self.warm_uri)
        events = processor_events(valid, settings=f, plan=self.plan).unionByName(
            processor_events(warm, settings=f, plan=self.plan, warm=True)
        )
        points = named_features(sim_points(events, settings=f), settings=f, plan=self.plan, evidence=True)
        return validated.withColumn(ROW, F.lit(RECORD)).unionByName(
            points.withColumn(ROW, F.lit(POINT)), allowMissingColumns=True
        )

    def _run_beside(self, stages: Stages, name: str, fn: Callable[..., Any], *args: Any) -> Future:
        """``fn(*args)`` on the job's second thread, its Spark jobs in the micro-batch's job group
        (stopping the query cancels them too)."""
        from pyspark import inheritable_thread_target

        return self._beside.submit(inheritable_thread_target(self.spark)(stages.timed(name, fn)), *args)

    def _batch(self, batch: DataFrame, batch_id: int) -> None:
        from pyspark.sql import functions as F

        self._started.wait()
        app_id = f"{QUERY}@{self._query_id}"
        started, stages = time.monotonic(), Stages()
        out = batch.persist()
        batch = out.where(F.col(ROW) == RECORD).select(*validated_schema().fieldNames())
        points = out.where(F.col(ROW) == POINT).select(*KEY_COLUMNS, *sim_feature_names(self.features), "recent_calls")
        beside: list[Future] = []
        try:
            verdicts = batch.groupBy(VALID, "reason_code").agg(
                F.count(F.lit(1)).alias("n"),
                F.max(F.col("start_time").cast("double")).alias("newest"),
            ).collect()
            valid_n = sum(r["n"] for r in verdicts if r[VALID])
            reasons = {str(r["reason_code"]): int(r["n"]) for r in verdicts if not r[VALID]}
            horizon = max((r["newest"] for r in verdicts if r[VALID] and r["newest"] is not None), default=None)
            if reasons:
                (
                    dead_letter_payload(batch)
                    .write.format("kafka")
                    .options(**self.kafka_options)
                    .option("topic", self.dead_letter_topic)
                    .save()
                )
            # the first action computes the whole micro-batch: Kafka, validation, the SIM processors
            stages.lap("read")
            counts: dict[str, int] = {}
            active = 0
            if horizon is not None:
                if self._first_record is None:
                    # before this batch appends (fixing it alters the table): the rows of a first
                    # batch are all cold anyway, their windows reach before it
                    self._first_record = self.state.first_record(reach_s=self.features.window_s)
                valid = batch.where(F.col(VALID)).select(*FIELD_NAMES)
                # the table state, then the calls that read it, beside the SIM stage
                beside.append(self._run_beside(stages, "state+calls", self._state_and_calls, valid, app_id, batch_id))
                if self.stream.archive:
                    beside.append(self._run_beside(stages, "archive", self._archive, batch, app_id, batch_id))
                active, sims = self._sim_candidates(points)
                stages.lap("sims")
                calls = beside[0].result()
                stages.lap("wait for state+calls")
                # stored in a fixed order (entries are numbered in the order of the decisions)
                sim_counts = self._decide(sims, kind="sim", batch_id=batch_id, app_id=app_id, model=self.spam)
                call_counts = self._decide(calls, kind="call", batch_id=batch_id, app_id=app_id, model=self.spoof)
                stages.lap("decide")
                counts = {k: sim_counts.get(k, 0) + call_counts.get(k, 0) for k in {*sim_counts, *call_counts}}
                if counts and self._loop is not None:
                    self._loop.wake()
            elif self.stream.archive:
                beside.append(self._run_beside(stages, "archive", self._archive, batch, app_id, batch_id))
            for done in beside:
                done.result()
            self._maintain(batch_id, horizon)
        finally:
            wait(beside)
            out.unpersist()
        record = {
            "records_in": int(valid_n + sum(reasons.values())),
            "valid": int(valid_n),
            "dead_lettered": int(sum(reasons.values())),
            "dead_letter_reasons": reasons,
            "newest_event": horizon,
            "active_sims": active,
            "decisions": dict(sorted(counts.items())),
            "duration_s": round(time.monotonic() - started, 3),
            "stages_s": stages.laps,
            # wall clock when the batch's decisions were stored (processing latency ends when the
            # distribution thread publishes them)
            "finished_at": round(time.time(), 3),
        }
        self.sink.record_batch(QUERY, batch_id, record)
        self.metrics.observe_validation(record)
        self.metrics.observe_decisions(QUERY, record)
        log.info("batch %s: %s", batch_id, record)
        # Py4J caches the methods called on a JVM object in the Python object, and each cached
        # method points back to it: the batch's DataFrames and Columns (and the JVM plans they
        # hold) are freed only by Python's cycle collector, which a long-running driver seldom
        # runs in full. Without this the JVM heap grew by 0.4-0.8 GB per ten-minute micro-batch
        # of the 10k world, and tasks failed to allocate memory after about nine of them.
        gc.collect()

    def _archive(self, batch: DataFrame, app_id: str, batch_id: int) -> None:
        from pyspark.sql import functions as F

        (
            batch.withColumn("batch_id", F.lit(batch_id).cast("long"))
            .write.format("delta")
            .mode("append")
            .option("txnAppId", app_id)
            .option("txnVersion", str(batch_id))
            .save(self.archive_uri)
        )

    def _sim_candidates(self, points: DataFrame) -> tuple[int, pd.DataFrame]:
        """(SIMs scored, the rows above the lowest score the policy acts on: one per SIM)."""
        from pyspark.sql import functions as F

        active = points.agg(F.countDistinct(ENTITY)).first()[0]
        if not active:
            return 0, pd.DataFrame()
        model = self.spam.refresh(self.spark)
        keep = [c for c in points.columns if c != "recent_calls"]
        low = self.sink.min_score("sim", model_threshold=min(model.threshold, model.cold_threshold))
        # a window that reaches before the state's first record lacks part of its history: such
        # rows are judged at the version's cold threshold (chosen on rows computed the same way)
        first_record = self._first_record
        if not model.has_cold_threshold:
            cold = F.lit(False)
        elif first_record is None:
            cold = F.lit(True)
        else:
            cold = F.col(WINDOW_START) < F.lit(first_record).cast("timestamp")
        threshold = F.when(cold, F.lit(model.cold_threshold)).otherwise(F.lit(model.threshold))
        scored = self.spam.score(points, keep=keep).withColumn(COLD, cold).withColumn(MODEL_THRESHOLD, threshold)
        flagged = scored.where(F.col(SCORE) > low)
        # the recent calls travel with the few flagged rows only, not through the model
        calls = points.select(ENTITY, WINDOW_END, "recent_calls")
        candidates = flagged.join(calls, [ENTITY, WINDOW_END], "left").toPandas()
        if not candidates.empty:
            candidates = first_decisive_rows(candidates, self.sink.block_thresholds(candidates))
            candidates["evidence"] = sim_evidence(candidates, self.spam.model.feature_names)
            candidates = candidates.drop(columns=["recent_calls"])
        return int(active), candidates

    def _state_and_calls(self, valid: DataFrame, app_id: str, batch_id: int) -> pd.DataFrame:
        """Append the batch's rows to the state table, then score the calls (which read it)."""
        # one file per kind and core, not per kind and shuffle partition of each part
        parallelism = self.spark.sparkContext.defaultParallelism
        rows = state_rows(valid, settings=self.features, plan=self.plan).coalesce(parallelism)
        self.state.append(rows, app_id=app_id, batch_id=batch_id)
        return self._call_candidates(valid)

    def _call_candidates(self, valid: DataFrame) -> pd.DataFrame:
        """The trunk calls above the lowest score the policy acts on."""
        from pyspark.sql import functions as F

        calls = trunk_calls(valid).persist()
        try:
            first = calls.agg(F.min(F.col("start_time").cast("double"))).first()[0]
            if first is None:
                return pd.DataFrame()
            f = self.features
            clis = calls.select("a_number").distinct()
            trunks = calls.select("in_trunk_id").distinct()
            cli_rows = self.state.read("cli", since=first - f.owner_lookback_s - f.concurrency_window_s)
            trunk_rows = self.state.read("trunk", since=first - f.trunk_bucket_s - f.concurrency_window_s)
            features = assemble_call_features(
                calls,
                merge_cli_rows(cli_rows.join(clis, ["a_number"], "left_semi")),
                merge_trunk_rows(trunk_rows.join(trunks, ["in_trunk_id"], "left_semi")),
                settings=f,
                plan=self.plan,
            )
            model = self.spoof.refresh(self.spark)
            scored = self.spoof.score(features, keep=list(features.columns))
            low = self.sink.min_score("call", model_threshold=model.threshold)
            candidates = scored.where(F.col(SCORE) > low).toPandas()
        finally:
            calls.unpersist()
        if not candidates.empty:
            candidates["evidence"] = call_evidence(candidates, self.spoof.model.feature_names)
        return candidates

    def _decide(
        self, candidates: pd.DataFrame, *, kind: str, batch_id: int, app_id: str, model: ChampionScorer
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
        quantiles = model.model.quantiles
        candidates["evidence"] = [
            with_reasons(ev, rs, quantiles)
            for ev, rs in zip(candidates.get("evidence", [None] * len(candidates)), reasons, strict=True)
        ]
        candidates["model_name"] = model.name
        candidates["model_version"] = int(model.model.version or 0)
        # the operating point the version was validated at: the block threshold where the
        # policy's block_above is null (streaming.policy); SIM rows carry their own (cold or not)
        if MODEL_THRESHOLD not in candidates.columns:
            candidates[MODEL_THRESHOLD] = float(model.model.threshold)
        return self.sink.apply(candidates, kind=kind, query=app_id, batch_id=batch_id)

    def _maintain(self, batch_id: int, horizon: float | None) -> None:
        every = self.stream.state_maintain_every
        if not every or horizon is None or batch_id == 0 or batch_id % every != 0 or not self.state.exists():
            return
        self.state.maintain(keep_after=horizon - self.stream.state_keep_s, vacuum_hours=1.0)

    # -- running ----------------------------------------------------------------------------------
    def run(self, *, available_now: bool, timeout_s: float | None = None) -> dict[str, Any]:
        """Run until the topic is drained (``available_now``) or until stopped."""
        self.metrics.serve(self.stream.metrics_port)
        # the listener lives as long as the job, not as long as the (shared) Spark session
        self.metrics.listen(self.spark)
        if self.publisher is not None:
            self._loop = DistributionLoop(self.publisher.distribute, interval_s=self.stream.publish_interval_s)
            self._loop.start()
        try:
            if not self._stop_requested:
                self._await(self.start(self._trigger(available_now)), available_now=available_now, timeout_s=timeout_s)
            return {}
        finally:
            if self._loop is not None:
                self._loop.stop()
                self._loop = None
            if self.publisher is not None:
                # what the last batches decided, before the job returns
                self.publisher.distribute()
            self.metrics.unlisten(self.spark)

    def _trigger(self, available_now: bool) -> Trigger:
        return Trigger(available_now=True) if available_now else Trigger(interval_s=self.stream.trigger_interval_s)

    def _await(self, query: StreamingQuery, *, available_now: bool, timeout_s: float | None) -> None:
        from pyspark.errors import StreamingQueryException

        restarted = False
        while True:
            try:
                query.awaitTermination(timeout_s)
            except StreamingQueryException:
                pass  # read below, from the query
            finally:
                if query.isActive:
                    query.stop()
                    if available_now:
                        raise TimeoutError(f"the stream did not drain its input within {timeout_s} s")
            error = query.exception()
            if error is None:
                return
            text = str(error)
            if self._stop_requested:
                return
            if not restarted and KAFKA_METRICS_NPE in text:
                # Spark 4.1's Kafka source fails the progress report of a batch re-run from the
                # offset log after a crash (no latest offsets yet; SPARK-55271), after that batch
                # committed: starting the query again plans the next batch
                first_line = text.splitlines()[0][:200]
                log.warning("the re-run batch committed, then %s; starting the query again", first_line)
                restarted = True
                query = self.start(self._trigger(available_now))
                continue
            raise error


__all__ = ["CALL_KEY_COLUMNS", "KEY_COLUMNS", "QUERY", "DecisionSink", "StreamJob", "Trigger"]
