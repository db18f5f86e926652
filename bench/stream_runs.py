"""What a stream run left behind, read back for the streaming benchmarks: its micro-batches (when
each finished and how far event time had got) and the archived CDRs with their Kafka timestamps."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd


def batches(database_url: str) -> pd.DataFrame:
    """Per micro-batch: ``planned_at`` (when its batch function started), ``finished_at`` (its
    decisions stored; the distribution thread publishes them right after), ``newest_event`` (the
    newest CDR it read, epoch s) and its stage timings, from the stream's batch records."""
    from streaming.blocklist.batches import read_batches
    from streaming.blocklist.db import make_engine

    engine = make_engine(database_url)
    try:
        rows = read_batches(engine)
    finally:
        engine.dispose()
    out = pd.DataFrame(rows)
    if out.empty:
        return pd.DataFrame(columns=["batch_id", "planned_at", "finished_at", "newest_event", "stages_s"])
    out["planned_at"] = out["finished_at"] - out["duration_s"]
    return out.sort_values("batch_id").reset_index(drop=True)


def deciding_batch(created_at: pd.Series, runs: pd.DataFrame) -> np.ndarray:
    """Position in ``runs`` of the micro-batch that stored each decision (the last one planned
    before it; micro-batches run one after the other); -1 if none."""
    seconds = pd.to_datetime(created_at, utc=True).astype("int64").to_numpy() / 1e9
    return np.searchsorted(runs["planned_at"].to_numpy(), seconds, side="right") - 1


def archived(spark, state_uri: str) -> pd.DataFrame:
    """Every valid record the stream archived: record id, calling number, event time, Kafka
    timestamp (``landed_at``, epoch s) and the micro-batch that read it."""
    from pyspark.sql import functions as F

    frame = (
        spark.read.format("delta").load(f"{state_uri}/archive")
        .where(F.col("_valid"))
        .select("record_id", "a_number", "start_time", "source_timestamp", "batch_id")
        .dropDuplicates(["record_id"])
        .toPandas()
    )
    frame["start_time"] = pd.to_datetime(frame["start_time"], utc=True)
    frame["landed_at"] = pd.to_datetime(frame["source_timestamp"], utc=True).astype("int64") / 1e9
    return frame


def bench_environment(*, home: Path, work: Path, **settings: str) -> None:
    """The settings a benchmark's stream run shares, as environment overrides: the champions of
    ``home``, its state, blocklist database and nothing on the metrics port under ``work``."""
    os.environ.update({
        "SIMGUARD_HOME": str(home.resolve()),
        "SIMGUARD_STREAM__STATE_URI": (work / "stream").as_uri(),
        "SIMGUARD_DATABASE__URL": f"sqlite:///{work / 'blocklist.db'}",
        "SIMGUARD_STREAM__METRICS_PORT": "0",
        **settings,
    })


def start_broker(work: Path):
    """A local KRaft broker on free ports, its data under ``work``."""
    from pipeline.broker import LocalBroker, free_port
    from pipeline.config import load_settings

    settings = load_settings()
    broker = LocalBroker(home=work / "kafka", jars_dir=settings.jars_dir, port=free_port(),
                         controller_port=free_port(), settings=settings.local_broker)
    broker.start()
    return broker


def use_fresh_topics(bootstrap: str, prefix: str) -> str:
    """Point the settings at ``bootstrap`` and at new topic names; returns the CDR topic."""
    topic = f"{prefix}.{int(time.time())}"
    os.environ.update({
        "SIMGUARD_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "SIMGUARD_KAFKA__TOPICS__CDRS": topic,
        "SIMGUARD_KAFKA__TOPICS__DEAD_LETTER": f"{topic}.dead-letter",
        "SIMGUARD_KAFKA__TOPICS__BLOCKLIST_PREFIX": f"{topic}.blocklist",
    })
    return topic


def published_at(bootstrap: str, topic: str) -> dict[int, float]:
    """Blocklist version -> when it reached the operator's topic (the record's Kafka timestamp,
    epoch s), read from the beginning of ``topic``."""
    import json

    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap.split(","), auto_offset_reset="earliest",
                             consumer_timeout_ms=5000, enable_auto_commit=False)
    try:
        return {int(json.loads(m.value)["version"]): m.timestamp / 1000 for m in consumer if m.value}
    finally:
        consumer.close()
