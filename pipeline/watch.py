"""``simguard blocklist watch``: an operator's blocklist topic as it fills, with what led to each block.

One consumer reads the operator's topic (``{blocklist_prefix}.{operator}``) and the CDR topic.
For every block it reports:

- **latency**: the Kafka timestamp of the block record on the operator's topic minus the Kafka
  timestamp of the CDR that led to it, taken as the number's last CDR that had landed when the
  block was decided (the entry's ``created_at``): the CDR whose arrival the decision followed;
- **the calls before it**: the number's CDRs in the CDR topic that had landed by then (count,
  how long since the first, the last few).

A block is reported once the CDR topic has been read past its decision time (or to its end), so
the calls before it are complete even though the two topics are read side by side.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from features.errors import PlatformError
from pipeline.config import KafkaSettings


@dataclass(frozen=True)
class Call:
    landed_ms: int
    start_time: str
    b_number: str | None
    duration_s: float | None


@dataclass
class SeenBlock:
    """A block as it reached the operator's topic."""

    entry: dict[str, Any]
    published_ms: int
    calls: list[Call] = field(default_factory=list)

    @property
    def decided_ms(self) -> int:
        created = self.entry.get("created_at")
        if not created:
            return self.published_ms
        return int(dt.datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp() * 1000)

    @property
    def latency_s(self) -> float | None:
        return (self.published_ms - self.calls[-1].landed_ms) / 1000 if self.calls else None

    def describe(self, *, last_calls: int = 3) -> list[str]:
        e = self.entry
        at = dt.datetime.fromtimestamp(self.published_ms / 1000, dt.UTC).strftime("%H:%M:%SZ")
        scope = "" if e.get("scope") == "all" else f" [{e.get('scope')}]"
        score = f"{e['score']:.3f}" if isinstance(e.get("score"), float | int) else "-"
        head = f"{at} BLOCK {e.get('number')}{scope} {e.get('fraud_type')} (score {score}, version {e.get('version')})"
        if not self.calls:
            return [head + ": no CDR of the number in the CDR topic read"]
        span_min = (self.calls[-1].landed_ms - self.calls[0].landed_ms) / 60000
        lines = [
            f"{head}: latency {self.latency_s:.1f} s after its last CDR landed; "
            f"{len(self.calls)} calls in {span_min:.1f} min before it"
        ]
        if e.get("reasons"):
            lines.append("    reasons: " + "; ".join(str(r) for r in e["reasons"]))
        shown = ", ".join(
            f"{c.start_time[11:19]} -> {c.b_number} ({c.duration_s or 0:.0f} s)" for c in self.calls[-last_calls:]
        )
        lines.append(f"    last calls: {shown}")
        return lines


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarize_blocks(blocks: list[SeenBlock]) -> str:
    """One line: how many blocks, latency p50 / p95, calls before a block (median)."""
    if not blocks:
        return "no block reached the topic"
    latencies = [b.latency_s for b in blocks if b.latency_s is not None]
    calls = [float(len(b.calls)) for b in blocks]
    text = f"{len(blocks)} blocks"
    if latencies:
        text += f"; latency p50 {_quantile(latencies, 0.5):.1f} s, p95 {_quantile(latencies, 0.95):.1f} s"
    return text + f"; calls before a block: median {_quantile(calls, 0.5):.0f}"


def watch_blocks(
    kafka: KafkaSettings,
    *,
    operator: str,
    on_block: Callable[[SeenBlock], None],
    from_beginning: bool = False,
    cdr_lookback_s: float = 86400.0,
    duration_s: float | None = None,
    stop: threading.Event | None = None,
    poll_ms: int = 500,
) -> list[SeenBlock]:
    """Follow ``operator``'s blocklist topic until ``duration_s`` passed or ``stop`` is set;
    call ``on_block`` for each block (``from_beginning``: also those already on the topic).
    The CDR topic is read from ``cdr_lookback_s`` before now. Returns the blocks seen."""
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    topics = kafka.topics
    block_topic, cdr_topic = f"{topics.blocklist_prefix}.{operator}", topics.cdrs
    try:
        consumer = KafkaConsumer(**kafka.client_options(), client_id="simguard-watch", group_id=None,
                                 enable_auto_commit=False, auto_offset_reset="earliest")
    except KafkaError as exc:
        raise PlatformError(f"cannot reach Kafka at {kafka.bootstrap_servers} ({type(exc).__name__})") from None
    deadline = None if duration_s is None else time.monotonic() + duration_s
    started_ms = int(time.time() * 1000)
    calls: dict[str, list[Call]] = defaultdict(list)
    #: per CDR partition: the newest Kafka timestamp read
    cdr_reached: dict[int, int] = {}
    assigned: set[str] = set()
    pending: list[SeenBlock] = []
    seen: list[SeenBlock] = []
    try:
        while not (stop is not None and stop.is_set()) and (deadline is None or time.monotonic() < deadline):
            missing = {block_topic, cdr_topic} - assigned
            if missing:
                _assign_new(consumer, missing & set(consumer.topics()), assigned, block_topic=block_topic,
                            from_beginning=from_beginning, since_ms=started_ms - int(cdr_lookback_s * 1000))
            if not assigned:
                time.sleep(poll_ms / 1000)
                continue
            for tp, records in consumer.poll(timeout_ms=poll_ms).items():
                for r in records:
                    if tp.topic == cdr_topic:
                        cdr_reached[tp.partition] = r.timestamp
                        try:
                            cdr = json.loads(r.value)
                            calls[str(cdr["a_number"])].append(
                                Call(r.timestamp, str(cdr.get("start_time") or ""), cdr.get("b_number"),
                                     cdr.get("duration_s"))
                            )
                        except (ValueError, KeyError, TypeError):
                            continue  # malformed: the stream dead-letters it
                    elif r.value is not None:
                        entry = json.loads(r.value)
                        if entry.get("action") == "block":
                            pending.append(SeenBlock(entry, r.timestamp))
            if pending:
                caught_up = _cdrs_read_to(consumer, cdr_topic, cdr_reached) if cdr_topic in assigned else None
                for block in list(pending):
                    if caught_up is None or caught_up >= block.decided_ms:
                        # a number's CDRs share a partition when keyed by caller (replay, ingest);
                        # sorted anyway, whatever the producer's keys
                        block.calls = sorted((c for c in calls.get(block.entry.get("number"), [])
                                              if c.landed_ms <= block.decided_ms), key=lambda c: c.landed_ms)
                        on_block(block)
                        seen.append(block)
                        pending.remove(block)
    except KafkaError as exc:
        raise PlatformError(f"reading {block_topic} and {cdr_topic} failed: {exc}") from None
    finally:
        consumer.close()
    return seen


def _assign_new(consumer: Any, topics: set[str], assigned: set[str], *, block_topic: str, from_beginning: bool,
                since_ms: int) -> None:
    from kafka import TopicPartition

    if not topics:
        return
    parts = [TopicPartition(t, p) for t in sorted(topics) for p in sorted(consumer.partitions_for_topic(t) or [])]
    if not parts:
        return
    consumer.assign([*consumer.assignment(), *parts])
    for tp in parts:
        if tp.topic == block_topic and from_beginning:
            consumer.seek_to_beginning(tp)
        elif tp.topic == block_topic:
            consumer.seek_to_end(tp)
        else:
            offset = consumer.offsets_for_times({tp: since_ms}).get(tp)
            if offset is None:
                consumer.seek_to_end(tp)
            else:
                consumer.seek(tp, offset.offset)
    assigned.update(topics)


def _cdrs_read_to(consumer: Any, cdr_topic: str, reached: dict[int, int]) -> int:
    """The time (ms) up to which every CDR partition has been read: a partition read to its end
    counts as read up to now."""
    parts = [tp for tp in consumer.assignment() if tp.topic == cdr_topic]
    ends = consumer.end_offsets(parts)
    now = int(time.time() * 1000)
    out = now
    for tp in parts:
        if consumer.position(tp) >= ends.get(tp, 0):
            continue
        out = min(out, reached.get(tp.partition, 0))
    return out
