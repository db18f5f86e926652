"""Kafka in: the CDR topic as a streaming DataFrame of raw Kafka records (``streaming.validate``
turns their values into canonical records or dead letters).

The topic's batch twin is the Parquet folder that ``simguard ingest`` and ``simguard simulate``
write: both carry ``features.schema`` records with ``start_time`` as their event time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def kafka_stream(
    spark: SparkSession,
    *,
    kafka_options: dict[str, str],
    topic: str,
    starting_offsets: str = "earliest",
    max_offsets_per_trigger: int | None = None,
) -> DataFrame:
    """Raw Kafka records (key, value, topic, partition, offset, timestamp) of ``topic``."""
    reader = (
        spark.readStream.format("kafka")
        .options(**kafka_options)
        .option("subscribe", topic)
        .option("startingOffsets", starting_offsets)
        .option("failOnDataLoss", "true")
    )
    if max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(max_offsets_per_trigger))
    return reader.load()

