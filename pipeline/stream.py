"""Composition of the streaming job from settings (``simguard stream``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config import Settings
from streaming.blocklist.sink import BlocklistSink
from streaming.job import StreamJob
from streaming.scoring import ChampionScorer

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


def state_dir(settings: Settings) -> Path:
    return (settings.stream.state_dir or settings.home_abs / "stream").expanduser().resolve()


def build_stream_job(spark: SparkSession, settings: Settings, *, sink: BlocklistSink | None = None) -> StreamJob:
    registry = settings.mlflow.registry_uri
    m = settings.models
    return StreamJob(
        spark=spark,
        kafka_options=settings.kafka.spark_options(),
        cdr_topic=settings.kafka.topics.cdrs,
        dead_letter_topic=settings.kafka.topics.dead_letter,
        stream=settings.stream,
        features=settings.features,
        state_dir=state_dir(settings),
        spam=ChampionScorer(m.spam_sim_name, settings.mlflow_tracking_uri, registry, alias=m.champion_alias),
        spoof=ChampionScorer(m.spoof_call_name, settings.mlflow_tracking_uri, registry, alias=m.champion_alias),
        sink=sink or BlocklistSink.from_settings(settings),
        reasons_top_k=m.reasons_top_k,
    )


def run_stream(spark: SparkSession, settings: Settings, *, available_now: bool,
               timeout_s: float | None = None) -> dict[str, Any]:
    k = settings.kafka
    log.info(
        "stream: CDRs from %s on %s (%s%s), blocklist database %s, MLflow %s",
        k.topics.cdrs, k.bootstrap_servers, k.security_protocol,
        f", {k.sasl_mechanism} user {k.sasl_username}" if k.sasl_mechanism else "",
        settings.shown_database_url, settings.shown_mlflow_uri,
    )
    sink = BlocklistSink.from_settings(settings)
    try:
        job = build_stream_job(spark, settings, sink=sink)
        return job.run(available_now=available_now, timeout_s=timeout_s)
    finally:
        sink.close()
