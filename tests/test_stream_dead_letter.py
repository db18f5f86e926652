"""Malformed records on the CDR topic go to the dead-letter topic with reasons and source
coordinates, the job keeps running, and records in = valid + dead-lettered; a late record is
scored as of its own time (real broker, Spark's Kafka source and sink)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from factories import PassThrough, RecordingSink, cdr

from features.calls import call_feature_names
from features.schema import record_to_json
from features.settings import FeatureSettings
from features.sim import sim_feature_names
from features.validation import ValidationRules
from streaming.job import StreamJob
from streaming.settings import StreamSettings

pytestmark = [pytest.mark.spark, pytest.mark.kafka]


def recording_job(
    spark, kafka_bootstrap: str, tmp_path, *, cdr_topic: str, dead_letter_topic: str, stream: StreamSettings
) -> tuple[StreamJob, RecordingSink]:
    """The job with stand-in champions and a sink that records every scored row."""
    sink = RecordingSink()
    settings = FeatureSettings()
    job = StreamJob(
        spark=spark,
        kafka_options={"kafka.bootstrap.servers": kafka_bootstrap},
        cdr_topic=cdr_topic,
        dead_letter_topic=dead_letter_topic,
        stream=stream,
        features=settings,
        state_uri=(tmp_path / "stream").as_uri(),
        spam=PassThrough("spam", sim_feature_names(settings), ["entity", "window_end"]),
        spoof=PassThrough("spoof", call_feature_names(settings), ["record_id"]),
        sink=sink,
    )
    return job, sink


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

    job, sink = recording_job(
        spark,
        kafka_bootstrap,
        tmp_path,
        cdr_topic=cdr_topic,
        dead_letter_topic=dlq_topic,
        stream=StreamSettings(max_offsets_per_trigger=15, metrics_port=0, validation=ValidationRules()),
    )
    job.run(available_now=True, timeout_s=600)
    records = sink.batches.values()
    assert sum(r["records_in"] for r in records) == len(sent)
    assert sum(r["valid"] for r in records) == len(good) and sum(r["dead_lettered"] for r in records) == len(bad)
    reasons: dict[str, int] = {}
    for r in records:
        for code, n in r["dead_letter_reasons"].items():
            reasons[code] = reasons.get(code, 0) + n
    assert reasons == {code: 1 for code in bad}
    # several micro-batches read from Kafka, each validated once; the metrics count them all
    assert len(sink.batches) >= 3
    assert job.metrics.registry.get_sample_value("simguard_records_in_total") == len(sent)
    dead = job.metrics.registry.get_sample_value("simguard_records_dead_lettered_total", {"reason_code": "bad_json"})
    assert dead == 1

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


def test_a_late_record_is_scored_as_of_its_own_time_and_archived(spark, kafka_bootstrap, new_topic, tmp_path) -> None:
    """A record hours behind the others still counts: its SIM is scored as of the record's own
    minute, with the state as it is then, and the record is kept in the stream's archive."""
    from kafka import KafkaProducer

    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    on_time = [record_to_json(cdr(i, start_time=now - dt.timedelta(minutes=30 + i))) for i in range(20)]
    # on a minute boundary: the record starts where its minute does
    late_start = now.replace(second=0) - dt.timedelta(hours=5)
    late = record_to_json(cdr(99, a_number="+84961000099", start_time=late_start))
    topic = new_topic(partitions=1)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap.split(","))
    for value in [*on_time, late]:
        producer.send(topic, value=value)
    producer.flush()
    producer.close()

    job, sink = recording_job(
        spark, kafka_bootstrap, tmp_path, cdr_topic=topic, dead_letter_topic=new_topic(partitions=1),
        # the late record comes alone in the third micro-batch
        stream=StreamSettings(max_offsets_per_trigger=10, metrics_port=0, validation=ValidationRules()),
    )
    job.run(available_now=True, timeout_s=600)
    assert sum(r["valid"] for r in sink.batches.values()) == 21 and len(sink.batches) == 3
    rows = {b: frame for kind, b, frame in sink.rows if kind == "sim"}
    late_rows = rows[2][rows[2]["entity"] == "+84961000099"]
    assert len(late_rows) == 1
    row = late_rows.iloc[0]
    # its SIM is scored as of the end of the record's own minute
    assert row["window_end"] == late_start.replace(tzinfo=None) + dt.timedelta(minutes=1)
    assert row["calls_out_24h"] == 1
    # the batches before it scored the on-time records' SIM hours later, in their own minutes
    for kind, batch, frame in sink.rows:
        if kind == "sim" and batch < 2:
            assert (frame["window_end"] > late_start.replace(tzinfo=None) + dt.timedelta(hours=4)).all()
    kept = {r["record_id"] for r in spark.read.format("delta").load(job.archive_uri).select("record_id").collect()}
    assert "r000099" in kept and len(kept) == 21
