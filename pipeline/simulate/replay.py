"""Replay CDR Parquet files into Kafka in event-time order.

Used by ``simguard simulate --to-kafka``, ``simguard replay`` and anything that needs a live
stream from a folder of canonical CDR files (the demo, streaming tests). Records travel as the
JSON of :func:`features.schema.record_to_json`, keyed by ``a_number`` so that every record of a
caller lands in one partition, in order (the producer is idempotent, so retries keep order).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from features.errors import PlatformError
from features.schema import FIELD_NAMES, record_to_json
from pipeline.simulate.populations import SimulationError
from pipeline.simulate.writer import cdr_files

#: ``progress(sent, total)``
ReplayProgressFn = Callable[[int, int], None]

_PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    # kafka-python spends its time per batch: big, slightly delayed batches replay fastest
    "linger_ms": 50,
    "batch_size": 1024 * 1024,
    "enable_idempotence": True,
}


def count_records(cdr_dir: str | Path) -> int:
    """Rows in a CDR folder, from the Parquet footers (nothing is read)."""
    return sum(pq.ParquetFile(p).metadata.num_rows for p in cdr_files(cdr_dir))


def replay_to_kafka(
    cdr_dir: str | Path,
    *,
    topic: str,
    producer_options: Mapping[str, Any],
    rate: float | None = None,
    shift_to: dt.datetime | None = None,
    progress: ReplayProgressFn | None = None,
    batch_rows: int = 10_000,
    flush_timeout_s: float = 120.0,
) -> int:
    """Send every CDR under ``cdr_dir`` (a simulation folder or its ``cdrs`` folder) to ``topic``
    in event-time order, at ``rate`` records per second (``None``: as fast as possible).

    ``shift_to`` moves every timestamp by one offset so that the first record starts then (e.g.
    now): a live consumer that dead-letters records older than its age limit accepts a replay of
    a simulation dated in the past, and the gaps between records stay as simulated.

    Returns the number of records the broker acknowledged; raises ``PlatformError`` when the
    broker cannot be reached or any record was not delivered.
    """
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    files = cdr_files(cdr_dir)
    if not files:
        raise SimulationError(f"{cdr_dir}: no CDR files (expected cdrs/day=YYYY-MM-DD/part-*.parquet)")
    if rate is not None and rate <= 0:
        raise SimulationError("--rate must be a positive number of records per second")
    total = sum(pq.ParquetFile(p).metadata.num_rows for p in files)
    shift = dt.timedelta(0)
    if shift_to is not None:
        if shift_to.tzinfo is None:
            raise SimulationError("shift_to must be timezone-aware (UTC)")
        first = pq.ParquetFile(files[0]).read_row_group(0, columns=["start_time"]).column(0)[0].as_py()
        shift = shift_to - first
    options = {**_PRODUCER_DEFAULTS, **dict(producer_options)}
    try:
        producer = KafkaProducer(**options)
    except KafkaError as exc:
        servers = options.get("bootstrap_servers")
        raise PlatformError(
            f"cannot reach Kafka at {servers} ({exc}); start it with `simguard kafka up` or set kafka.bootstrap_servers"
        ) from None

    failures: list[BaseException] = []

    def failed(exc: BaseException) -> None:
        failures.append(exc)

    sent = 0
    started = time.perf_counter()
    try:
        for path in files:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=list(FIELD_NAMES)):
                for record in batch.to_pylist():
                    if shift:
                        record["start_time"] += shift
                        if record["answer_time"] is not None:
                            record["answer_time"] += shift
                    if rate is not None:
                        # pace against the start, so short sleeps do not accumulate drift
                        ahead = started + sent / rate - time.perf_counter()
                        if ahead > 0:
                            time.sleep(ahead)
                    future = producer.send(
                        topic,
                        key=record["a_number"].encode("utf-8"),
                        value=record_to_json(record),
                    )
                    future.add_errback(failed)
                    sent += 1
                if progress is not None:
                    progress(sent, total)
                if failures:
                    break
            if failures:
                break
        producer.flush(timeout=flush_timeout_s)
    except KafkaError as exc:
        failures.append(exc)
    finally:
        producer.close(timeout=10)
    if failures:
        raise PlatformError(f"{len(failures)} of {sent} records were not delivered to topic {topic!r}: {failures[0]!r}")
    return sent
