"""An analyst's overturn in the console reaches the operators' Kafka topics like any entry
(integration tier: the session's real broker)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from console_data import populate

from console.actions import ConsoleStore
from streaming.blocklist.publish_kafka import KafkaPublisher

pytestmark = pytest.mark.kafka
OPERATORS = ("viettel", "vinaphone", "mobifone", "vietnamobile")


def test_an_overturn_is_published_on_every_operators_topic(kafka_bootstrap: str, tmp_path: Path) -> None:
    from kafka import KafkaConsumer
    from kafka.admin import KafkaAdminClient

    store = ConsoleStore.open(f"sqlite:///{tmp_path / 'bl.db'}")
    prefix = f"test.console.{uuid.uuid4().hex[:10]}"
    number = populate(store)["blocks"][0]
    store.decide(number, "overturn", comment="a family phone", actor="lan", request_id="kafka-0001")
    pub = KafkaPublisher(
        store, client_options={"bootstrap_servers": kafka_bootstrap.split(",")}, topic_prefix=prefix,
        operators=OPERATORS,
    )  # fmt: skip
    try:
        assert pub.publish() == dict.fromkeys(OPERATORS, store.head_version())
        consumer = KafkaConsumer(
            f"{prefix}.viettel", bootstrap_servers=kafka_bootstrap.split(","), auto_offset_reset="earliest",
            enable_auto_commit=False, group_id=None, consumer_timeout_ms=3000,
        )  # fmt: skip
        records = [(m.key.decode(), json.loads(m.value)) for m in consumer]
        consumer.close()
        last = [v for k, v in records if k == f"all|{number}"][-1]
        assert (last["action"], last["decided_by"], last["note"]) == ("unblock", "analyst", "a family phone")
        assert last["version"] == store.head_version()
    finally:
        pub.close()
        store.close()
        admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap.split(","), client_id="tests")
        try:
            admin.delete_topics([t for t in admin.list_topics() if t.startswith(prefix)])
        finally:
            admin.close()
