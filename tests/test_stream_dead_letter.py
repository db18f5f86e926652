"""Malformed records on the CDR topic go to the dead-letter topic with reasons and source
coordinates, the job keeps running, and records in = valid + dead-lettered (real broker, Spark's
Kafka source and sink)."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from factories import cdr

from features.schema import record_to_json
from features.settings import FeatureSettings
from features.validation import ValidationRules
from streaming.job import StreamJob
from streaming.scoring import ChampionScorer
from streaming.settings import StreamSettings

pytestmark = [pytest.mark.spark, pytest.mark.kafka]


class NoDecisions:
    """The validate query takes no decisions; any call here is a test failure."""

    def min_score(self, kind: str, *, model_threshold: float | None = None) -> float:
        raise AssertionError("validate must not score")

    def apply(self, *args, **kwargs):
        raise AssertionError("validate must not decide")

    def after_batch(self) -> None:
        raise AssertionError("validate must not publish")


def validating_job(
    spark,
    kafka_bootstrap: str,
    tmp_path,
    *,
    cdr_topic: str,
    dead_letter_topic: str,
    stream: StreamSettings,
    features: FeatureSettings | None = None,
) -> StreamJob:
    """The job without models: the tests here run validation, intake and context queries only."""
    return StreamJob(
        spark=spark,
        kafka_options={"kafka.bootstrap.servers": kafka_bootstrap},
        cdr_topic=cdr_topic,
        dead_letter_topic=dead_letter_topic,
        stream=stream,
        features=features or FeatureSettings(),
        state_dir=tmp_path,
        spam=ChampionScorer("unused", "sqlite:///unused"),
        spoof=ChampionScorer("unused", "sqlite:///unused"),
        sink=NoDecisions(),
    )


def test_malformed_records_are_dead_lettered_with_reasons(spark, kafka_bootstrap, new_topic, tmp_path) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    good = [record_to_json(cdr(i, start_time=now - dt.timedelta(minutes=30 + i))) for i in range(40)]
    ok = json.loads(good[0])
    bad = {
        "bad_json": b'{"record_id": "x", ',
        "bad_type": json.dumps({**ok, "duration_s": "forty"}).encode(),
        "missing_field": json.dumps({k: v for k, v in ok.items() if k != "a_number"}).encode(),
        "value_too_large": json.dumps({**ok, "cell_id": "x" * (1024 * 1024)}).encode(),
        "bad_encoding": b'{"record_id": "\xff\xfe"}',
        "time_too_old": json.dumps(
            {**ok, "start_time": "1970-01-01T00:00:00.000000Z", "answer_time": "1970-01-01T00:00:05.000000Z"}
        ).encode(),
        "time_in_future": json.dumps(
            {**ok, "start_time": "2100-01-01T00:00:00.000000Z", "answer_time": "2100-01-01T00:00:05.000000Z"}
        ).encode(),
    }
    cdr_topic, dlq_topic = new_topic(partitions=2), new_topic(partitions=1)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap.split(","), max_request_size=4 * 1024 * 1024)
    sent = [(None, v) for v in good[:20]] + [(code, v) for code, v in bad.items()] + [(None, v) for v in good[20:]]
    for _, value in sent:
        producer.send(cdr_topic, value=value)
    producer.flush()
    producer.close()

    job = validating_job(
        spark,
        kafka_bootstrap,
        tmp_path,
        cdr_topic=cdr_topic,
        dead_letter_topic=dlq_topic,
        stream=StreamSettings(max_offsets_per_trigger=15, metrics_port=0, validation=ValidationRules()),
    )
    job.metrics.listen(spark)
    job.run_phases((("validate",), ("intake",)), timeout_s=180)
    # the progress gauges follow every micro-batch (the listener hears of it shortly after)
    deadline = time.monotonic() + 30
    while job.metrics.registry.get_sample_value("simguard_consumer_lag_records", {"query": "validate"}) is None:
        assert time.monotonic() < deadline, "no progress reached the metrics"
        time.sleep(0.2)
    job.metrics.unlisten(spark)
    summary = job.summary()
    assert summary["records_in"] == len(sent) == summary["valid"] + summary["dead_lettered"]
    assert summary["valid"] == len(good) and summary["dead_lettered"] == len(bad)
    assert summary["dead_letter_reasons"] == {code: 1 for code in bad}
    # several micro-batches read from Kafka, each validated once
    assert len([p for p in (tmp_path / "checkpoints" / "validate" / "commits").iterdir() if p.name.isdigit()]) >= 3

    consumer = KafkaConsumer(
        dlq_topic,
        bootstrap_servers=kafka_bootstrap.split(","),
        auto_offset_reset="earliest",
        consumer_timeout_ms=10000,
        group_id=f"dlq-{dlq_topic}",
    )
    letters = [json.loads(m.value) for m in consumer]
    consumer.close()
    assert sorted(x["reason_code"] for x in letters) == sorted(bad)
    for letter in letters:
        assert letter["source"]["topic"] == cdr_topic and letter["source"]["offset"] >= 0
        assert letter["reason"]
    huge = next(x for x in letters if x["reason_code"] == "value_too_large")
    assert "bytes" in huge["reason"] and len(huge["raw"]) < 1000  # the head and where to find the rest


def test_records_behind_the_watermark_are_counted_and_kept(spark, kafka_bootstrap, new_topic, tmp_path) -> None:
    """A record later than the watermark is left out of the aggregates (Spark's rule), but it is
    kept in the validated table and the job counts it, so no record disappears unnoticed."""
    from kafka import KafkaProducer

    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    on_time = [record_to_json(cdr(i, start_time=now - dt.timedelta(minutes=30 + i))) for i in range(20)]
    settings = FeatureSettings()
    # far behind the watermark (the newest event time seen, less the delay)
    late_start = now - dt.timedelta(seconds=4 * settings.watermark_delay_s + 3600)
    late = record_to_json(cdr(99, a_number="+84961000099", start_time=late_start))
    topic = new_topic(partitions=1)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap.split(","))
    for value in [*on_time, late]:
        producer.send(topic, value=value)
    producer.flush()
    producer.close()

    job = validating_job(
        spark,
        kafka_bootstrap,
        tmp_path,
        cdr_topic=topic,
        dead_letter_topic=new_topic(partitions=1),
        # one partition, 10 offsets and one validated file per trigger: `cli` reads the on-time
        # records in its batches 0 and 1 and the late one in batch 2. Spark drops a row behind the
        # watermark the batch before it set (the watermark of batch 0 is unset, so a late row in
        # batch 1 would still be aggregated, then its bucket evicted)
        stream=StreamSettings(
            max_offsets_per_trigger=10, max_files_per_trigger=1, metrics_port=0, validation=ValidationRules()
        ),
        features=settings,
    )
    job.metrics.listen(spark)
    job.run_phases((("validate",), ("intake", "cli")), timeout_s=180)
    deadline = time.monotonic() + 30
    while not job.metrics.registry.get_sample_value("simguard_late_rows_dropped_total", {"query": "cli"}):
        assert time.monotonic() < deadline, "the late record was not counted"
        time.sleep(0.2)
    job.metrics.unlisten(spark)
    assert job.metrics.registry.get_sample_value("simguard_late_rows_dropped_total", {"query": "cli"}) == 1

    summary = job.summary()
    assert summary["records_in"] == 21 == summary["valid"]
    kept = {r["record_id"] for r in spark.read.parquet(str(job.validated_table)).select("record_id").collect()}
    assert "r000099" in kept and len(kept) == 21
    # the aggregate itself never saw it: no bucket of the late CLI in the update log
    cli_log = spark.read.parquet(str(job.logs / "cli"))
    assert cli_log.where("a_number = '+84961000099'").count() == 0
    assert cli_log.where("a_number = '+84961000001'").count() > 0
