"""Kafka channel: one compacted topic per operator, ``{blocklist_prefix}.{operator}``.

Key ``{scope}|{number}``, value the entry's JSON (:mod:`streaming.blocklist.payload`), so log
compaction keeps the latest version per key and a consumer that reads the topic from the start
gets the whole current list. An unblock is published as an ``unblock`` record, not as a
tombstone: a tombstone carries no version, so a consumer could not tell it from a late,
older record, and a new consumer would not learn that a block it may hold from a snapshot was
lifted. The keys of lifted blocks stay in the topic; there are as many as numbers ever blocked
(tens of thousands a year in Vietnam, DOMAIN.md), which compaction keeps small.

Resumable: each operator has a cursor in the database (last version acknowledged by the broker,
``acks=all``), advanced only after the producer's flush succeeded. A crash between the flush and
the cursor update resends those entries (at least once); consumers dedupe by ``version``.
Each topic has one partition by default, so an operator reads its versions in order.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from features.numbering import NumberingPlan, load_numbering_plan
from streaming.blocklist import metrics
from streaming.blocklist.cursors import Lease, advance_cursor, read_cursor
from streaming.blocklist.errors import PublishError
from streaming.blocklist.payload import entry_key, payload_json
from streaming.blocklist.settings import BlocklistKafkaSettings
from streaming.blocklist.store import BlocklistStore

log = logging.getLogger(__name__)

CHANNEL = "kafka"


class KafkaPublisher:
    """Publish new entries to every operator's topic; ``publish()`` is safe to call as often as
    wanted (each micro-batch, a background loop) and after a crash."""

    def __init__(
        self,
        store: BlocklistStore,
        *,
        client_options: dict[str, Any],
        topic_prefix: str,
        operators: Iterable[str],
        settings: BlocklistKafkaSettings | None = None,
        plan: NumberingPlan | None = None,
        lease_s: float = 60.0,
        flush_timeout_s: float = 30.0,
    ) -> None:
        self.store = store
        self.client_options = dict(client_options)
        self.topic_prefix = topic_prefix
        self.operators = tuple(operators)
        self.settings = settings or BlocklistKafkaSettings()
        self.plan = plan or load_numbering_plan()
        self.flush_timeout_s = flush_timeout_s
        self.lease = Lease(store.engine, channel=CHANNEL, lease_s=lease_s)
        self._producer: Any = None
        self._topics_ready = False

    @property
    def _timeout_ms(self) -> int:
        return int(self.settings.connect_timeout_s * 1000)

    def topic(self, operator: str) -> str:
        return f"{self.topic_prefix}.{operator}"

    # -- set-up ---------------------------------------------------------------------------------

    def ensure_topics(self) -> None:
        """Create missing operator topics as compacted; refuse an existing one that is not."""
        from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
        from kafka.errors import KafkaError, TopicAlreadyExistsError

        try:
            admin = KafkaAdminClient(
                **self.client_options, client_id="simguard-blocklist-admin", bootstrap_timeout_ms=self._timeout_ms
            )
        except KafkaError as exc:
            raise PublishError(f"cannot reach Kafka at {self._servers()}: {exc} (is the broker up?)") from None
        try:
            existing = set(admin.list_topics())
            wanted = [self.topic(op) for op in self.operators]
            missing = [t for t in wanted if t not in existing]
            for name in missing:
                try:
                    admin.create_topics(
                        [
                            NewTopic(
                                name,
                                self.settings.partitions,
                                self.settings.replication_factor,
                                topic_configs={"cleanup.policy": "compact"},
                            )
                        ]
                    )
                    log.info("created compacted blocklist topic %s", name)
                except TopicAlreadyExistsError:
                    pass  # another publisher created it between list and create
            present = [t for t in wanted if t not in missing]
            if present:
                described = admin.describe_configs(
                    [ConfigResource(ConfigResourceType.TOPIC, t, {"cleanup.policy": None}) for t in present],
                    config_filter="all",
                )
                for name in present:
                    policy = _config_value(described, name, "cleanup.policy")
                    if policy is not None and "compact" not in policy:
                        raise PublishError(
                            f"topic {name} exists with cleanup.policy={policy}: blocklist topics must be "
                            "compacted (alter it to compact, or choose another kafka.topics.blocklist_prefix)"
                        )
        except KafkaError as exc:
            raise PublishError(f"cannot set up blocklist topics on {self._servers()}: {exc}") from None
        finally:
            admin.close()
        self._topics_ready = True

    def _servers(self) -> str:
        servers = self.client_options.get("bootstrap_servers", "?")
        return ",".join(servers) if isinstance(servers, list | tuple) else str(servers)

    def _get_producer(self) -> Any:
        if self._producer is None:
            from kafka import KafkaProducer
            from kafka.errors import KafkaError

            try:
                self._producer = KafkaProducer(
                    **self.client_options,
                    client_id="simguard-blocklist",
                    acks="all",
                    enable_idempotence=True,
                    linger_ms=5,
                    bootstrap_timeout_ms=self._timeout_ms,
                    max_block_ms=self._timeout_ms,
                )
            except KafkaError as exc:
                raise PublishError(f"cannot reach Kafka at {self._servers()}: {exc} (is the broker up?)") from None
        return self._producer

    # -- publishing -----------------------------------------------------------------------------

    def cursor(self, operator: str) -> int:
        return read_cursor(self.store.engine, channel=CHANNEL, operator=operator)

    def publish(self, *, max_entries: int | None = None) -> dict[str, int]:
        """Send every entry above each operator's cursor; returns records sent per operator."""
        from kafka.errors import KafkaError

        if not self._topics_ready:
            self.ensure_topics()
        producer = self._get_producer()
        sent: dict[str, int] = {}
        for operator in self.operators:
            if not self.lease.acquire(operator):
                continue  # another process is publishing to this operator right now
            try:
                sent[operator] = self._publish_operator(producer, operator, max_entries=max_entries)
            except KafkaError as exc:
                raise PublishError(f"publishing to {self.topic(operator)} failed: {exc}") from None
            finally:
                self.lease.release(operator)
        return sent

    def _publish_operator(self, producer: Any, operator: str, *, max_entries: int | None) -> int:
        topic = self.topic(operator)
        cursor = self.cursor(operator)
        total = 0
        while max_entries is None or total < max_entries:
            limit = (
                self.settings.batch_size if max_entries is None else min(self.settings.batch_size, max_entries - total)
            )
            entries = self.store.entries_since(cursor, limit=limit)
            if not entries:
                break
            futures = [
                producer.send(
                    topic,
                    key=entry_key(e.scope, e.number).encode(),
                    value=payload_json(e, operator=operator, plan=self.plan),
                )
                for e in entries
            ]
            producer.flush(timeout=self.flush_timeout_s)
            for f in futures:
                f.get(timeout=self.flush_timeout_s)  # raises the broker's error, if any
            # only now is everything up to here acknowledged; a crash before this line resends
            cursor = entries[-1].version
            advance_cursor(self.store.engine, channel=CHANNEL, operator=operator, version=cursor)
            total += len(entries)
            metrics.KAFKA_PUBLISHED.labels(operator=operator).inc(len(entries))
        return total

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=self.flush_timeout_s)
            self._producer = None


def _config_value(described: Any, topic: str, key: str) -> str | None:
    """``cleanup.policy`` out of kafka-python's ``describe_configs`` answer (a nested dict keyed
    by resource type and name; older clients return response objects)."""
    if isinstance(described, dict):
        for by_name in described.values():
            if isinstance(by_name, dict) and topic in by_name:
                value = by_name[topic].get(key)
                if isinstance(value, dict):
                    return value.get("value")
                return value
        return None
    for response in described if isinstance(described, list) else [described]:
        for resource in getattr(response, "resources", []):
            if resource[3] != topic:
                continue
            for entry in resource[4]:
                if entry[0] == key:
                    return entry[1]
    return None
