"""Parity: the streaming path (Kafka -> Structured Streaming aggregates in update mode, many
micro-batches) and the batch path (a static DataFrame) give identical feature rows for the same
CDRs (component + integration tier: real broker, official connector)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from factories import T0, cdr, spark_frame

from features.calls import build_call_features
from features.schema import record_to_json
from features.settings import FeatureSettings
from features.sim import build_sim_features
from streaming.features_stream import Trigger, assemble_from_state, start_feature_streams
from streaming.source import kafka_stream, parse_cdr_json

pytestmark = [pytest.mark.spark, pytest.mark.kafka]

SETTINGS = FeatureSettings()


def mixed_traffic(seed: int = 7) -> list[dict]:
    """36 hours of people, a robocaller, a small SIM box and gateway calls, in event-time order."""
    rng = np.random.default_rng(seed)
    people = [f"+8496{1000000 + k:07d}" for k in range(25)]
    records: list[dict] = []

    def add(**kw) -> None:
        records.append(cdr(len(records), **kw))

    for _ in range(400):
        a, b = rng.choice(people, 2, replace=False)
        answered = rng.random() < 0.8
        add(a_number=a, b_number=b, start_time=T0 + dt.timedelta(seconds=int(rng.integers(0, 36 * 3600))),
            release_cause="answered" if answered else "no_answer", duration_s=float(np.round(rng.lognormal(4, 1), 3)),
            cell_id=f"C{int(rng.integers(0, 6))}", a_imei=f"35{abs(hash(a)) % 10**13:013d}",
            event_type="sms" if rng.random() < 0.2 else "voice")
    for i in range(150):
        add(a_number="+84970000001", b_number=f"+8491300{i:04d}",
            start_time=T0 + dt.timedelta(hours=20, seconds=40 * i),
            release_cause="answered" if i % 4 == 0 else "no_answer", duration_s=float(2 + i % 5), cell_id="C9")
    for k in range(6):
        for i in range(30):
            add(a_number=f"+8498000{k:04d}", b_number=f"+8496{5000000 + 97 * i + k:07d}",
                start_time=T0 + dt.timedelta(hours=1, minutes=37 * i + k), a_imei="350000000000777",
                cell_id="BOX", duration_s=float(30 + i))
    for i in range(40):
        add(a_number="+88216000001", b_number=f"+8491400{i:04d}", start_time=T0 + dt.timedelta(hours=30, seconds=9 * i),
            release_cause="cancelled", in_trunk_type="international_gateway", in_trunk_id="IGW", a_imsi=None,
            a_imei=None, cell_id=None, lac=None, operator="vinaphone")
        add(a_number=people[i % 5], b_number=f"+8491600{i:04d}", start_time=T0 + dt.timedelta(hours=30, seconds=11 * i),
            in_trunk_type="international_gateway", in_trunk_id="IGW", a_imsi=None, a_imei=None, cell_id=None, lac=None,
            operator="vinaphone", a_roaming=bool(i % 2))
    records.sort(key=lambda r: (r["start_time"], r["record_id"]))
    return records


def canonical(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return frame.sort_values(keys).reset_index(drop=True)


def test_streaming_and_batch_features_are_identical(spark, kafka_bootstrap, new_topic, tmp_path) -> None:
    from kafka import KafkaProducer

    records = mixed_traffic()
    topic = new_topic(partitions=1)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap.split(","))
    for r in records:
        producer.send(topic, key=r["a_number"].encode(), value=record_to_json(r))
    producer.flush()
    producer.close()

    stream = parse_cdr_json(
        kafka_stream(spark, kafka_options={"kafka.bootstrap.servers": kafka_bootstrap}, topic=topic,
                     max_offsets_per_trigger=250)
    )
    queries = start_feature_streams(
        stream, settings=SETTINGS, state_dir=tmp_path / "state", checkpoint_dir=tmp_path / "checkpoints",
        trigger=Trigger(available_now=True),
    )
    for q in queries.values():
        q.awaitTermination(300)
        assert q.exception() is None
    batches = {name: len(q.recentProgress) for name, q in queries.items()}
    assert min(batches.values()) >= 4, f"wanted several micro-batches, got {batches}"

    static = spark_frame(spark, records)
    stream_sim, stream_calls = assemble_from_state(spark, tmp_path / "state", cdrs=static, settings=SETTINGS)
    keys = ["entity", "window_start", "window_end"]
    got = canonical(stream_sim.toPandas(), keys)
    want = canonical(build_sim_features(static, settings=SETTINGS).toPandas(), keys)
    assert len(want) > 50 and {"+84970000001", "+88216000001", "+84980000003"} <= set(want["entity"])
    pd.testing.assert_frame_equal(got, want, check_exact=True)

    got_calls = canonical(stream_calls.toPandas(), ["record_id"])
    want_calls = canonical(build_call_features(static, settings=SETTINGS).toPandas(), ["record_id"])
    assert len(want_calls) == 80
    pd.testing.assert_frame_equal(got_calls, want_calls, check_exact=True)
