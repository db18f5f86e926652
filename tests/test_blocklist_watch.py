"""``simguard blocklist watch``: each block on an operator's topic with its latency and the calls
the number made before it was decided (from the CDR topic, read side by side)."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from typing import Any

import pytest
from factories import cdr

from features.schema import record_to_json
from pipeline.watch import SeenBlock, summarize_blocks, watch_blocks

pytestmark = [pytest.mark.kafka]

NUMBER = "+84961000001"


def _entry(version: int, number: str, decided: dt.datetime, action: str = "block") -> bytes:
    return json.dumps({
        "schema": 1, "version": version, "key": f"all|{number}", "number": number, "scope": "all", "action": action,
        "fraud_type": "spam_robocall", "score": 0.991, "reasons": ["calls_out_24h = 120 (high)"],
        "created_at": decided.isoformat().replace("+00:00", "Z"),
    }).encode()


def test_watch_reports_latency_and_the_calls_before_each_block(settings: Any, kafka_bootstrap: str) -> None:
    from kafka import KafkaProducer

    tag = uuid.uuid4().hex[:8]
    topics = settings.kafka.topics.model_copy(update={"cdrs": f"watch.cdrs.{tag}",
                                                      "blocklist_prefix": f"watch.blocklist.{tag}"})
    kafka = settings.kafka.model_copy(update={"topics": topics})
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap.split(","), acks="all")
    sent_ms = []
    try:
        for i in range(3):
            meta = producer.send(topics.cdrs, value=record_to_json(cdr(i, a_number=NUMBER))).get(10)
            sent_ms.append(meta.timestamp)
            producer.send(topics.cdrs, value=record_to_json(cdr(10 + i, a_number="+84961000002"))).get(10)
        time.sleep(0.3)
        decided = dt.datetime.now(dt.UTC)
        time.sleep(0.3)
        # a call after the decision is not one the block followed
        producer.send(topics.cdrs, value=record_to_json(cdr(3, a_number=NUMBER))).get(10)
        producer.send(f"{topics.blocklist_prefix}.viettel", key=f"all|{NUMBER}".encode(),
                      value=_entry(7, NUMBER, decided)).get(10)
        producer.send(f"{topics.blocklist_prefix}.viettel", key=b"x",
                              value=_entry(8, NUMBER, decided, action="unblock")).get(10)
        producer.flush()
    finally:
        producer.close()

    shown: list[SeenBlock] = []
    seen = watch_blocks(kafka, operator="viettel", on_block=shown.append, from_beginning=True, duration_s=8)
    assert seen == shown and len(seen) == 1  # the unblock is not a block
    got = seen[0]
    assert got.entry["version"] == 7
    assert [c.landed_ms for c in got.calls] == sent_ms
    assert got.latency_s == pytest.approx((got.published_ms - sent_ms[-1]) / 1000)
    assert 0.5 <= got.latency_s < 10
    lines = got.describe()
    assert NUMBER in lines[0] and "spam_robocall" in lines[0] and "3 calls" in lines[0] and "latency" in lines[0]
    assert "calls_out_24h" in lines[1]
    assert summarize_blocks(seen).startswith("1 blocks; latency p50")
