"""Kafka channel against the real broker: compacted topic per operator, keys ``scope|number``,
unblock records, and a publisher that resumes after a restart or a crash without a gap
(integration tier)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from factories import fixed_policy

from streaming.blocklist import publish_kafka
from streaming.blocklist.errors import PublishError
from streaming.blocklist.publish_kafka import KafkaPublisher
from streaming.blocklist.store import BlocklistStore
from streaming.policy import StaticAllowlist, decide_calls, decide_sims

pytestmark = pytest.mark.kafka

NOW = dt.datetime(2026, 11, 2, 7, 0, tzinfo=dt.UTC)
T = pd.Timestamp("2026-11-02T06:00", tz="UTC")
OPERATORS = ("viettel", "vinaphone", "mobifone", "vietnamobile")


@pytest.fixture
def prefix(kafka_bootstrap: str) -> Iterator[str]:
    """A fresh topic prefix; the operator topics the publisher creates under it are deleted."""
    from kafka.admin import KafkaAdminClient

    name = f"test.blocklist.{uuid.uuid4().hex[:10]}"
    yield name
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap.split(","), client_id="tests")
    try:
        admin.delete_topics([t for t in admin.list_topics() if t.startswith(name)])
    except Exception:
        pass
    admin.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[BlocklistStore]:
    s = BlocklistStore.open(f"sqlite:///{tmp_path / 'bl.db'}")
    yield s
    s.close()


def publisher(store: BlocklistStore, bootstrap: str, prefix: str) -> KafkaPublisher:
    return KafkaPublisher(
        store, client_options={"bootstrap_servers": bootstrap.split(",")}, topic_prefix=prefix, operators=OPERATORS
    )


def block(store: BlocklistStore, numbers: list[str], *, batch: str) -> None:
    frame = pd.DataFrame(
        {
            "number": numbers,
            "fraud_type": "spam_robocall",
            "score": 0.99,
            "operator": "viettel",
            "reasons": [["many short calls"]] * len(numbers),
            "model_name": "simguard-spam-sim",
            "model_version": "7",
            "window_end": T,
        }
    )
    store.apply_decisions(
        decide_sims(frame, policy=fixed_policy(), allowlist=StaticAllowlist(), batch_key=batch), now=NOW
    )


def read_topic(bootstrap: str, topic: str, *, expect: int) -> list[tuple[str, dict | None]]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap.split(","),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=3000,
    )
    out: list[tuple[str, dict | None]] = []
    try:
        for msg in consumer:
            out.append((msg.key.decode(), json.loads(msg.value) if msg.value is not None else None))
            if len(out) >= expect:
                break
    finally:
        consumer.close()
    return out


def test_publishes_every_entry_to_a_compacted_topic_per_operator(kafka_bootstrap: str, prefix: str, store) -> None:
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    block(store, ["+84961000001", "+84912345678"], batch="s:1")  # a Viettel and a VinaPhone number
    calls = pd.DataFrame(
        {
            "cli": ["+84971000001"],
            "in_trunk_type": ["international_gateway"],
            "in_trunk_id": ["GW-1"],
            "operator": ["mobifone"],
            "score": [0.97],
            "reasons": [["domestic CLI on an international gateway"]],
            "model_version": ["2"],
            "start_time": [T],
        }
    )
    store.apply_decisions(
        decide_calls(calls, policy=fixed_policy(), allowlist=StaticAllowlist(), batch_key="c:1"), now=NOW
    )
    store.unblock("+84961000001", analyst="lan", reason="appeal", request_id="r1", now=NOW)
    pub = publisher(store, kafka_bootstrap, prefix)
    try:
        assert pub.publish() == dict.fromkeys(OPERATORS, 4)
        assert pub.publish() == dict.fromkeys(OPERATORS, 0)  # caught up
    finally:
        pub.close()

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap.split(","), client_id="tests")
    try:
        topics = [f"{prefix}.{op}" for op in OPERATORS]
        described = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t, {"cleanup.policy": None}) for t in topics],
            config_filter="all",
        )
        assert all(publish_kafka._config_value(described, t, "cleanup.policy") == "compact" for t in topics)
    finally:
        admin.close()

    for op in OPERATORS:
        records = read_topic(kafka_bootstrap, f"{prefix}.{op}", expect=4)
        assert [k for k, _ in records] == [
            "all|+84961000001",
            "all|+84912345678",
            "trunk:international_gateway|+84971000001",
            "all|+84961000001",
        ]
        values = [v for _, v in records]
        assert all(v is not None for v in values)  # unblocks are records with a version, not tombstones
        assert [(v["version"], v["action"]) for v in values] == [
            (1, "block"),
            (2, "block"),
            (3, "block"),
            (4, "unblock"),
        ]
        assert values[0]["reasons"] == ["many short calls"] and values[0]["model_version"] == "7"
        assert values[0]["expires_at"].startswith("2026-12-02T07:00:00")
        # the home operator bars outgoing calls, every other operator bars incoming ones
        assert values[0]["enforce"] == ("bar_outgoing_calls" if op == "viettel" else "reject_incoming_calls")
        assert values[1]["enforce"] == ("bar_outgoing_calls" if op == "vinaphone" else "reject_incoming_calls")
        assert values[2]["enforce"] == "reject_cli_on_trunk" and values[2]["roaming_exception"] is True


def test_resumes_after_a_restart_and_a_crash_without_a_gap(
    kafka_bootstrap: str, prefix: str, store, monkeypatch: pytest.MonkeyPatch
) -> None:
    block(store, [f"+8496100000{i}" for i in range(3)], batch="s:1")
    first = publisher(store, kafka_bootstrap, prefix)
    assert first.publish()["viettel"] == 3
    first.close()  # a clean restart

    block(store, [f"+8496100001{i}" for i in range(3)], batch="s:2")
    second = publisher(store, kafka_bootstrap, prefix)
    assert second.cursor("viettel") == 3
    # a crash after the broker acknowledged versions 4..6 but before the cursor moved
    real_advance = publish_kafka.advance_cursor

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("killed")

    monkeypatch.setattr(publish_kafka, "advance_cursor", crash)
    with pytest.raises(RuntimeError, match="killed"):
        second.publish()
    second.close()
    monkeypatch.setattr(publish_kafka, "advance_cursor", real_advance)

    block(store, [f"+8496100002{i}" for i in range(2)], batch="s:3")
    third = publisher(store, kafka_bootstrap, prefix)
    assert third.cursor("viettel") == 3
    sent = third.publish()
    third.close()
    assert sent["viettel"] == 5  # 4..6 again (at least once), then 7..8

    records = read_topic(kafka_bootstrap, f"{prefix}.viettel", expect=11)
    versions = [v["version"] for _, v in records]
    assert versions == [1, 2, 3, 4, 5, 6, 4, 5, 6, 7, 8]
    # a consumer keeping the highest version per key sees every version exactly once, no gap
    assert sorted(set(versions)) == list(range(1, 9))


def test_refuses_an_existing_topic_that_is_not_compacted(kafka_bootstrap: str, prefix: str, store) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap.split(","), client_id="tests")
    try:
        admin.create_topics([NewTopic(f"{prefix}.viettel", 1, 1, topic_configs={"cleanup.policy": "delete"})])
    finally:
        admin.close()
    pub = publisher(store, kafka_bootstrap, prefix)
    try:
        with pytest.raises(PublishError, match=r"cleanup.policy=delete: blocklist topics must be compacted"):
            pub.ensure_topics()
    finally:
        pub.close()
