"""Kafka in: the CDR topic as a streaming DataFrame of canonical records.

The topic's batch twin is the Parquet folder that ``simguard ingest`` and ``simguard simulate``
write: both carry ``features.schema`` records with ``start_time`` as their event time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from features.schema import FIELD_NAMES, spark_schema

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

#: the JSON timestamp form written by ``features.schema.record_to_json``
JSON_TIMESTAMP_FORMAT = "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX"


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


def parse_cdr_json(raw: DataFrame) -> DataFrame:
    """Canonical CDR columns from Kafka JSON values (well-formed records; see validation)."""
    from pyspark.sql import functions as F

    parsed = F.from_json(F.col("value").cast("string"), spark_schema(), {"timestampFormat": JSON_TIMESTAMP_FORMAT})
    return raw.select(parsed.alias("r")).select(*[F.col(f"r.{name}") for name in FIELD_NAMES])
