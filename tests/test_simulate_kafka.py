"""Replaying a simulation into a real Kafka broker (integration tier): every record arrives once,
keyed by its CLI, as the canonical JSON, in event-time order within each partition."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from kafka.consumer.fetcher import ConsumerRecord
from typer.testing import CliRunner

from features.errors import PlatformError
from features.schema import FIELD_NAMES, record_from_json
from pipeline.broker import free_port
from pipeline.cli import app
from pipeline.config import Settings
from pipeline.simulate import cdr_files, load_simulator_config, replay_to_kafka, simulate

pytestmark = pytest.mark.kafka


#: every population, fewer busy business lines: these tests are about the replay
LIGHT = {
    "call_centre": {"min_count": 8, "outgoing_per_hour": {"median": 10}},
    "telemarketer": {"min_count": 4, "outgoing_per_hour": {"median": 10}},
    "taxi_dispatch": {"min_count": 3},
    "delivery_driver": {"min_count": 5},
    "roaming": {"min_count": 10},
    "simbox": {"cohort_size": [16, 16], "calls_per_sim_per_hour": {"median": 1.5}},
    "simbox_evasive": {"cohort_size": [16, 16], "calls_per_sim_per_hour": {"median": 0.8}},
    "spam_robocall": {"min_operations": 1},
    "wangiri": {"min_campaigns_per_day": 1, "calls_per_campaign": [150, 200]},
}


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("replay") / "sim"
    simulate(out, subscribers=300, days=2, seed=21, config=load_simulator_config(overrides=LIGHT))
    return out


@pytest.fixture
def tiny_dir(sim_dir: Path, tmp_path: Path) -> Path:
    """The first 400 records of the simulation, as a CDR folder of its own."""
    first = cdr_files(sim_dir)[0]
    folder = tmp_path / "tiny" / "cdrs" / first.parent.name
    folder.mkdir(parents=True)
    pq.write_table(pq.read_table(first).slice(0, 400), folder / "part-00000.parquet")
    return tmp_path / "tiny"


def consume_all(bootstrap: str, topic: str, expected: int, *, timeout_s: float = 60.0) -> list[ConsumerRecord]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap.split(","),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=5000,
    )
    records = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=1000, max_records=5000).values():
                records.extend(batch)
    finally:
        consumer.close()
    return records


def test_replay_sends_every_record_keyed_and_in_event_time_order(
    sim_dir: Path, settings: Settings, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(partitions=2)
    expected = [row for p in cdr_files(sim_dir) for row in pq.read_table(p).to_pylist()]
    progress: list[tuple[int, int]] = []
    sent = replay_to_kafka(
        sim_dir,
        topic=topic,
        producer_options=settings.kafka.client_options(),
        progress=lambda done, total: progress.append((done, total)),
    )
    assert sent == len(expected) > 10_000
    assert len({p.parent.name for p in cdr_files(sim_dir)}) == 2
    assert progress[-1] == (sent, sent)

    records = consume_all(settings.kafka.bootstrap_servers, topic, sent)
    assert len(records) == sent
    values = [record_from_json(r.value) for r in records]
    assert all(r.key.decode() == v["a_number"] for r, v in zip(records, values, strict=True))
    assert all(set(v) == set(FIELD_NAMES) for v in values)
    by_id = {row["record_id"]: row for row in expected}
    assert {v["record_id"] for v in values} == set(by_id)
    sample = values[:: max(1, len(values) // 500)]
    assert all(v == by_id[v["record_id"]] for v in sample)  # values round-trip exactly
    assert {r.partition for r in records} == {0, 1}
    for partition in (0, 1):
        times = [v["start_time"] for r, v in zip(records, values, strict=True) if r.partition == partition]
        assert times == sorted(times)


def test_replay_paces_to_the_requested_rate_and_can_shift_to_now(
    tiny_dir: Path, settings: Settings, new_topic: Callable[..., str]
) -> None:
    original = pq.read_table(cdr_files(tiny_dir)[0]).to_pylist()
    topic = new_topic()
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    started = time.perf_counter()
    sent = replay_to_kafka(
        tiny_dir, topic=topic, producer_options=settings.kafka.client_options(), rate=1000, shift_to=now, live=False
    )
    elapsed = time.perf_counter() - started
    assert sent == 400
    assert elapsed >= 0.38  # 400 records at 1000/s cannot take less than 0.4 s (minus the first)
    values = [record_from_json(r.value) for r in consume_all(settings.kafka.bootstrap_servers, topic, 400)]
    assert values[0]["start_time"] == now
    shift = now - original[0]["start_time"]
    for got, row in zip(values, original, strict=True):
        assert got["start_time"] == row["start_time"] + shift
        assert got["answer_time"] == (row["answer_time"] + shift if row["answer_time"] else None)
        assert got["record_id"] == row["record_id"]


def test_cli_simulates_into_kafka_and_replays_a_folder(
    tmp_path: Path, tiny_dir: Path, settings: Settings, new_topic: Callable[..., str]
) -> None:
    user = tmp_path / "light.yaml"
    user.write_text(yaml.safe_dump(LIGHT))
    env = {"SIMGUARD_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers}
    topic = new_topic()
    out = tmp_path / "sim"
    args = ["simulate", "--subscribers", "300", "--seed", "2", "--out", str(out), "--config-sim", str(user)]
    result = CliRunner().invoke(app, [*args, "--to-kafka", topic], env=env)
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "manifest.json").read_text())["rows"]["cdrs"]
    assert f"replayed {rows} CDRs into Kafka topic {topic}" in result.output
    assert len(consume_all(settings.kafka.bootstrap_servers, topic, rows)) == rows

    again = new_topic()
    # live, fast-forwarded: 400 records at about 2,000/s on average (tests/test_replay_live.py: real time)
    result = CliRunner().invoke(app, ["replay", str(tiny_dir), "--topic", again, "--shift-to-now", "--rate", "2000"],
                                env=env)
    assert result.exit_code == 0, result.output
    assert "replayed 400 CDRs" in result.output
    first = record_from_json(consume_all(settings.kafka.bootstrap_servers, again, 400)[0].value)
    assert abs(first["start_time"] - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)


def test_replay_to_an_unreachable_broker_is_a_platform_error(sim_dir: Path) -> None:
    options = {"bootstrap_servers": [f"127.0.0.1:{free_port()}"], "bootstrap_timeout_ms": 2000}
    with pytest.raises(PlatformError, match="Kafka"):
        replay_to_kafka(sim_dir, topic="nowhere", producer_options=options)
