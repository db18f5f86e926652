"""Composition of the streaming job from settings (``simguard stream``)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pipeline.config import Settings
from streaming.blocklist.batches import stream_totals
from streaming.blocklist.sink import BlocklistSink
from streaming.job import StreamJob
from streaming.scoring import ChampionScorer

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


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


def run_stream(spark: SparkSession, settings: Settings, *, available_now: bool,
               timeout_s: float | None = None) -> dict[str, Any]:
    """Run the job; decisions go to the store from the query's thread, distribution (Kafka,
    webhooks, expiry) runs beside it on its own connection. Returns the stream's totals."""
    k = settings.kafka
    log.info(
        "stream: CDRs from %s on %s (%s%s), blocklist database %s, MLflow %s",
        k.topics.cdrs, k.bootstrap_servers, k.security_protocol,
        f", {k.sasl_mechanism} user {k.sasl_username}" if k.sasl_mechanism else "",
        settings.shown_database_url, settings.shown_mlflow_uri,
    )
    sink = BlocklistSink.from_settings(settings, publish_kafka=False, webhooks=False)
    publisher = BlocklistSink.from_settings(settings)
    try:
        job = build_stream_job(spark, settings, sink=sink, publisher=publisher)
        job.run(available_now=available_now, timeout_s=timeout_s)
        return stream_totals(sink.store.engine)
    finally:
        publisher.close()
        sink.close()


__all__ = ["build_stream_job", "run_stream", "state_uri"]
