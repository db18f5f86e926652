"""Spark reads Kafka through the official spark-sql-kafka connector (component + integration)."""

from __future__ import annotations

import json

import pytest

from pipeline.spark import connector_jars

pytestmark = [pytest.mark.spark, pytest.mark.kafka]


def test_connector_matches_installed_pyspark(spark, base_settings) -> None:
    import pyspark

    jars = spark.sparkContext.getConf().get("spark.jars")
    assert f"spark-sql-kafka-0-10_2.13-{pyspark.__version__}.jar" in jars
    assert {p.name for p in connector_jars(base_settings.jars_dir)} <= {j.rsplit("/", 1)[-1] for j in jars.split(",")}


def test_spark_reads_json_records_written_with_kafka_python(spark, kafka_bootstrap, new_topic) -> None:
    from kafka import KafkaProducer
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    topic = new_topic(partitions=2)
    records = [{"a_number": f"+8496{i:07d}", "calls": i} for i in range(40)]
    producer = KafkaProducer(
        bootstrap_servers=kafka_bootstrap.split(","),
        key_serializer=str.encode,
        value_serializer=lambda v: json.dumps(v).encode(),
    )
    for rec in records:
        producer.send(topic, key=rec["a_number"], value=rec)
    producer.flush()
    producer.close()

    schema = T.StructType([T.StructField("a_number", T.StringType()), T.StructField("calls", T.LongType())])
    frame = (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", kafka_bootstrap)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .load()
    )
    assert {"key", "value", "topic", "partition", "offset", "timestamp"} <= set(frame.columns)
    parsed = frame.select(
        F.col("key").cast("string").alias("key"),
        F.from_json(F.col("value").cast("string"), schema).alias("v"),
        "partition",
    ).select("key", "v.*", "partition")
    rows = parsed.collect()
    assert sorted((r.a_number, r.calls) for r in rows) == sorted((r["a_number"], r["calls"]) for r in records)
    assert all(r.key == r.a_number for r in rows)
    assert len({r.partition for r in rows}) == 2


def test_structured_streaming_available_now_from_kafka(spark, kafka_bootstrap, new_topic, tmp_path) -> None:
    from kafka import KafkaProducer

    topic = new_topic()
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap.split(","))
    for i in range(25):
        producer.send(topic, value=f"record-{i}".encode())
    producer.flush()
    producer.close()

    out = tmp_path / "out"
    query = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", kafka_bootstrap)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .load()
        .selectExpr("CAST(value AS STRING) AS value")
        .writeStream.format("parquet")
        .option("path", str(out))
        .option("checkpointLocation", str(tmp_path / "checkpoint"))
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination(120)
    assert query.exception() is None
    values = sorted(r.value for r in spark.read.parquet(str(out)).collect())
    assert values == sorted(f"record-{i}" for i in range(25))
