"""The stream's Kafka topics: created when missing, or waited for (``simguard stream``).

Spark's Kafka source asks the broker's admin API for the offsets of the topic it subscribes to,
and a topic that does not exist yet ends the query with ``UnknownTopicOrPartitionException``.
A stream started before any CDR arrived (a carrier's first try, a live demo) therefore makes
sure its input and dead-letter topics exist before it starts: it creates the missing ones with
the broker's default partitions and replication, or, where topics are managed by someone else
(``--wait-for-topics``, or a broker that refuses the creation), waits for them, saying so in
one line.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from features.errors import PlatformError
from pipeline.config import KafkaSettings

#: what a command prints (one line each)
Say = Callable[[str], None]


@dataclass(frozen=True)
class TopicsReady:
    """What :func:`ensure_topics` did: topics it created, topics it waited for."""

    created: tuple[str, ...] = ()
    waited_for: tuple[str, ...] = ()
    #: the wait ended because a stop was asked for (a signal), not because the topics appeared
    stopped: bool = False


def _admin(kafka: KafkaSettings, timeout_s: float):  # type: ignore[no-untyped-def]
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        return KafkaAdminClient(
            **kafka.client_options(),
            client_id="simguard-stream-topics",
            request_timeout_ms=int(timeout_s * 1000),
        )
    except KafkaError as exc:
        raise PlatformError(
            f"cannot reach Kafka at {kafka.bootstrap_servers} ({type(exc).__name__}); start it with "
            "`simguard kafka up` or set kafka.bootstrap_servers"
        ) from None


def ensure_topics(
    kafka: KafkaSettings,
    topics: Sequence[str],
    *,
    create: bool = True,
    wait_timeout_s: float | None = None,
    poll_s: float = 1.0,
    say: Say = print,
    stop: threading.Event | None = None,
    request_timeout_s: float = 30.0,
) -> TopicsReady:
    """Make sure every topic in ``topics`` exists before a stream subscribes to it.

    ``create``: create the missing ones (broker defaults for partitions and replication); a
    broker that refuses (authorisation, policy) makes it wait instead. Waiting polls every
    ``poll_s`` seconds until the topics exist, ``stop`` is set, or ``wait_timeout_s`` passed
    (``None``: no limit; then ``PlatformError``). Prints one line when it creates or waits.
    """
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    wanted = list(dict.fromkeys(topics))
    admin = _admin(kafka, request_timeout_s)
    try:
        missing = [t for t in wanted if t not in set(admin.list_topics())]
        if not missing:
            return TopicsReady()
        refused = ""
        if create:
            created: list[str] = []
            for name in missing:
                try:
                    admin.create_topics({name: {}}, wait_for_metadata=True)
                    created.append(name)
                except TopicAlreadyExistsError:
                    created.append(name)  # made by someone else meanwhile: it exists, which is what counts
                except KafkaError as exc:
                    refused = f"the broker refused to create {name} ({type(exc).__name__}); "
                    break
            if not refused:
                partitions = _partitions(admin, created)
                listed = ", ".join(f"{t} ({partitions.get(t, '?')} partitions)" for t in created)
                say(f"created Kafka topic(s) {listed} on {kafka.bootstrap_servers}: they did not exist yet")
                return TopicsReady(created=tuple(created))
        deadline = None if wait_timeout_s is None else time.monotonic() + wait_timeout_s
        say(
            f"{refused}waiting for Kafka topic(s) {', '.join(missing)} to exist on {kafka.bootstrap_servers} "
            "(create them, or start the producer; Ctrl-C stops)"
        )
        while True:
            missing = [t for t in missing if t not in set(admin.list_topics())]
            if not missing:
                return TopicsReady(waited_for=tuple(wanted))
            if stop is not None and stop.is_set():
                return TopicsReady(stopped=True)
            if deadline is not None and time.monotonic() > deadline:
                raise PlatformError(
                    f"Kafka topic(s) {', '.join(missing)} still do not exist after {wait_timeout_s:g} s: "
                    "create them (kafka-topics.sh --create) or let `simguard stream` create them"
                )
            if stop is not None:
                stop.wait(poll_s)
            else:
                time.sleep(poll_s)
    except KafkaError as exc:
        raise PlatformError(f"cannot check the stream's topics on {kafka.bootstrap_servers}: {exc}") from None
    finally:
        admin.close()


def _partitions(admin, names: Sequence[str]) -> dict[str, int]:  # type: ignore[no-untyped-def]
    try:
        described = admin.describe_topics(list(names))
        return {t.get("name") or t.get("topic"): len(t.get("partitions") or []) for t in described}
    except Exception:  # only for the message
        return {}
