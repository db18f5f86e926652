"""Composition of the streaming job from settings (``simguard stream``).

``run_stream`` makes sure the job's topics exist (:mod:`pipeline.topics`), runs the job, and,
given a :class:`GracefulStop`, ends it cleanly on SIGINT/SIGTERM: every query in
``spark.streams.active`` is stopped once its running micro-batch has committed, so a restart
resumes after the last committed batch and nothing is processed twice.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal

from pipeline.config import Settings
from pipeline.featurize import location_uri, read_cdrs
from pipeline.topics import Say, ensure_topics
from streaming.blocklist.batches import stream_totals
from streaming.blocklist.sink import BlocklistSink
from streaming.job import StreamJob
from streaming.scoring import ChampionScorer

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger("simguard.stream")


def state_uri(settings: Settings) -> str:
    """Where the stream keeps its checkpoint and state: ``stream.state_uri``, or a ``file://``
    URI under the home folder."""
    if settings.stream.state_uri:
        return settings.stream.state_uri
    return (settings.home_abs / "stream").expanduser().resolve().as_uri()


def build_stream_job(
    spark: SparkSession, settings: Settings, *, sink: BlocklistSink, publisher: BlocklistSink | None = None
) -> StreamJob:
    registry = settings.mlflow.registry_uri
    m = settings.models
    return StreamJob(
        spark=spark,
        kafka_options=settings.kafka.spark_options(),
        cdr_topic=settings.kafka.topics.cdrs,
        dead_letter_topic=settings.kafka.topics.dead_letter,
        stream=settings.stream,
        features=settings.features,
        state_uri=state_uri(settings),
        spam=ChampionScorer(m.spam_sim_name, settings.mlflow_tracking_uri, registry, alias=m.champion_alias),
        spoof=ChampionScorer(m.spoof_call_name, settings.mlflow_tracking_uri, registry, alias=m.champion_alias),
        sink=sink,
        publisher=publisher,
        reasons_top_k=m.reasons_top_k,
    )


def _last_batch(q: Any) -> int | None:
    progress = q.lastProgress
    return None if progress is None else progress.get("batchId")


def stop_active_queries(spark: SparkSession, *, grace_s: float = 120.0, poll_s: float = 0.05) -> dict[str, bool]:
    """Stop every query in ``spark.streams.active`` at a micro-batch boundary and wait until each
    has terminated: when no trigger of it runs (a processing-time trigger waiting for its next
    interval), or as soon as it has reported a micro-batch committed after the stop was asked
    for (an ``availableNow`` run keeps its trigger active and starts the next batch at once:
    that one is cut while it begins, and a restart runs it again from its planned offsets). A
    query at neither after ``grace_s`` is stopped anyway; its batch is re-run on restart.

    Returns, per query name, whether it stopped at a batch boundary."""
    deadline = time.monotonic() + grace_s
    clean: dict[str, bool] = {}
    seen: dict[str, int | None] = {}
    pending: dict[str, Any] = {}
    while True:
        # a backfill's next phase may have started a query meanwhile
        for q in spark.streams.active:
            if q.id not in seen:
                pending[q.id] = q
                seen[q.id] = _last_batch(q)
        if not pending:
            return clean
        for qid, q in list(pending.items()):
            name = q.name or qid
            try:
                if not q.isActive:
                    clean.setdefault(name, True)
                    del pending[qid]
                    continue
                boundary = not q.status.get("isTriggerActive", False) or _last_batch(q) != seen[qid]
                if boundary or time.monotonic() > deadline:
                    q.stop()
                    q.awaitTermination()
                    clean[name] = boundary
                    del pending[qid]
            except Exception as exc:  # e.g. it failed meanwhile: the job reports its error
                log.warning("stopping %s: %s", name, str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
                clean[name] = False
                del pending[qid]
        time.sleep(poll_s)


def _cancelled_batches(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("There was an exception while executing the Python Proxy")


class GracefulStop:
    """SIGINT / SIGTERM -> stop the stream cleanly instead of a traceback.

    Installed around ``run_stream`` by ``simguard stream``. The handler only records the signal
    and starts a thread (the main thread is inside a Py4J call and must not make another one);
    that thread asks the job to start nothing new and stops the active queries between
    micro-batches (:func:`stop_active_queries`), which ends the job's wait. A second signal
    while stopping is ignored (the stop is under way).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, spark: SparkSession, *, grace_s: float = 120.0) -> None:
        self.spark = spark
        self.grace_s = grace_s
        self.requested = threading.Event()
        #: set by ``run_stream`` when the job has returned
        self.finished = threading.Event()
        self.signal_name: str | None = None
        self.stopped_cleanly: dict[str, bool] = {}
        self.job: StreamJob | None = None
        self._thread: threading.Thread | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> GracefulStop:
        # replaces pyspark's own SIGINT handler (cancel all jobs, raise KeyboardInterrupt into
        # the Py4J call: the Py4JError traceback)
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        self.finished.set()
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self.wait()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.requested.is_set():
            return
        self.signal_name = signal.Signals(signum).name
        self.requested.set()
        self._thread = threading.Thread(target=self._stop, name="simguard-stop", daemon=True)
        self._thread.start()

    def request(self, reason: str = "request") -> None:
        """Stop as a signal would (tests, an embedding application)."""
        if not self.requested.is_set():
            self.signal_name = reason
            self.requested.set()
            self._thread = threading.Thread(target=self._stop, name="simguard-stop", daemon=True)
            self._thread.start()

    def _stop(self) -> None:
        # a batch that the stop cancels (after grace_s) fails inside its Python callback; py4j
        # logs that with a traceback, but the batch is simply re-run on restart
        logging.getLogger("py4j.clientserver").addFilter(_cancelled_batches)
        if self.job is not None:
            self.job.request_stop()
        # until the job has returned: a query it was starting when the signal came is stopped too
        while True:
            self.stopped_cleanly.update(stop_active_queries(self.spark, grace_s=self.grace_s))
            if self.finished.wait(0.5):
                return

    def attach(self, job: StreamJob) -> None:
        self.job = job
        if self.requested.is_set():
            job.request_stop()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()


def _cold_effect(settings: Settings) -> str:
    """What an empty state means for the first day's SIM decisions under this policy."""
    from streaming.policy import SIM_FRAUD_TYPES

    before = "until a day of records has been read, SIMs are scored without the day before"
    if all(settings.policy.for_type(t).block_above is not None for t in SIM_FRAUD_TYPES):
        return (f"{before} against the policy's fixed block_above, and ordinary SIMs' first calls can look like a "
                "SIM box's")
    return (f"{before} and judged at the model version's stricter cold threshold where its card has one (some "
            "fraud SIMs wait for more evidence)")


def run_stream(
    spark: SparkSession,
    settings: Settings,
    *,
    available_now: bool,
    timeout_s: float | None = None,
    topics: Literal["create", "wait", "as_is"] = "create",
    stopper: GracefulStop | None = None,
    say: Say = print,
    warm_from: str | Path | None = None,
) -> dict[str, Any]:
    """Run the job until the topic is drained (``available_now``), ``timeout_s`` passed, or
    ``stopper`` was triggered. ``topics``: create the CDR and dead-letter topics when missing,
    wait for them, or leave them to the job (``as_is``). ``warm_from``: canonical CDR Parquet
    (``simguard ingest`` output) that precedes the topic's records, loaded into a new state
    first (:meth:`StreamJob.warm`)."""
    k = settings.kafka
    log.info(
        "stream: CDRs from %s on %s (%s%s), blocklist database %s, MLflow %s",
        k.topics.cdrs, k.bootstrap_servers, k.security_protocol,
        f", {k.sasl_mechanism} user {k.sasl_username}" if k.sasl_mechanism else "",
        settings.shown_database_url, settings.shown_mlflow_uri,
    )
    if topics != "as_is":
        t = settings.kafka.topics
        ready = ensure_topics(
            settings.kafka, [t.cdrs, t.dead_letter], create=topics == "create", say=say,
            stop=stopper.requested if stopper is not None else None,
        )
        if ready.stopped:
            return {"stopped": stopper.signal_name if stopper else None, "records_in": 0}
    # decisions go to the store from the query's thread; distribution (Kafka, webhooks, expiry)
    # runs beside it on its own connection
    sink = BlocklistSink.from_settings(settings, publish_kafka=False, webhooks=False)
    publisher = BlocklistSink.from_settings(settings)
    try:
        job = build_stream_job(spark, settings, sink=sink, publisher=publisher)
        if warm_from is not None:
            warmed = job.warm(read_cdrs(spark, warm_from), source=location_uri(warm_from))
            if warmed["loaded"]:
                w = warmed
                say(f"warm start: {w['records']} CDRs from {w['first']} to {w['last']} loaded into the state")
            else:
                say(f"warm start: {warmed['warm_from']} was loaded into this state before; not again")
        elif not job.state.exists():
            say(f"cold start: the state at {job.state.uri} is empty; {_cold_effect(settings)}: load the day before "
                "with --warm-from")
        if stopper is not None:
            stopper.attach(job)
            if stopper.requested.is_set():
                return {**stream_totals(sink.store.engine), "stopped": stopper.signal_name}
        try:
            job.run(available_now=available_now, timeout_s=timeout_s)
        finally:
            if stopper is not None:
                stopper.finished.set()
        summary = stream_totals(sink.store.engine)
        if stopper is not None and stopper.requested.is_set():
            stopper.wait()
            summary = {**summary, "stopped": stopper.signal_name}
        return summary
    finally:
        publisher.close()
        sink.close()
