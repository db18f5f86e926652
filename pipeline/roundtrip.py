"""A round trip through a Kafka topic: canonical CDR JSON written with kafka-python, read back by
Spark's Kafka connector and parsed with the canonical schema. ``make demo`` and ``simguard kafka
roundtrip`` use it to show that the broker, the connector and the contract fit together."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from features.errors import PlatformError
from features.schema import record_to_json, spark_schema
from pipeline.config import KafkaSettings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@dataclass(frozen=True)
class RoundTrip:
    topic: str
    sent: int
    received: int
    matched: int
    produce_s: float
    spark_read_s: float


def sample_records(n: int, *, start: dt.datetime | None = None) -> list[dict[str, Any]]:
    """``n`` well-formed canonical CDRs (a subscriber calling sequential numbers)."""
    start = start or dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    return [
        {
            "record_id": f"roundtrip-{i:08d}",
            "operator": "viettel",
            "event_type": "voice",
            "a_number": "+84961000001",
            "b_number": f"+8491{2000000 + i:07d}",
            "a_imsi": "452040000000001",
            "a_imei": "356938035643809",
            "start_time": start + dt.timedelta(seconds=30 * i),
            "answer_time": start + dt.timedelta(seconds=30 * i + 5),
            "duration_s": 12.5,
            "release_cause": "answered",
            "cell_id": "C0001",
            "lac": "L01",
            "in_trunk_type": "subscriber",
            "in_trunk_id": None,
            "a_roaming": False,
        }
        for i in range(n)
    ]


def kafka_round_trip(spark: SparkSession, kafka: KafkaSettings, *, records: int = 1000) -> RoundTrip:
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError
    from pyspark.sql import functions as F

    topic = f"simguard.roundtrip.{uuid.uuid4().hex[:10]}"
    rows = sample_records(records)
    try:
        admin = KafkaAdminClient(**kafka.client_options(), client_id="simguard-roundtrip")
        admin.create_topics([NewTopic(topic, 2, 1)])
        t0 = time.perf_counter()
        producer = KafkaProducer(**kafka.client_options(), acks="all", linger_ms=5)
        futures = [producer.send(topic, key=r["a_number"].encode(), value=record_to_json(r)) for r in rows]
        producer.flush()
        for f in futures:
            f.get(timeout=30)
        producer.close()
        produce_s = time.perf_counter() - t0
    except KafkaError as exc:
        raise PlatformError(f"Kafka at {kafka.bootstrap_servers}: {exc}; is it up (`make kafka-up`)?") from None
    try:
        t1 = time.perf_counter()
        frame = (
            spark.read.format("kafka")
            .options(**kafka.spark_options())
            .option("subscribe", topic)
            .option("startingOffsets", "earliest")
            .load()
            .select(F.from_json(F.col("value").cast("string"), spark_schema()).alias("r"))
            .select("r.*")
        )
        got = {r.record_id: r for r in frame.collect()}
        spark_read_s = time.perf_counter() - t1
        matched = sum(
            1
            for r in rows
            if r["record_id"] in got
            and got[r["record_id"]].b_number == r["b_number"]
            and got[r["record_id"]].start_time.replace(tzinfo=dt.UTC) == r["start_time"]
        )
    finally:
        admin.delete_topics([topic])
        admin.close()
    return RoundTrip(topic, len(rows), len(got), matched, produce_s, spark_read_s)
