"""Replay CDR Parquet files into Kafka in event-time order.

Used by ``simguard simulate --to-kafka``, ``simguard replay`` and anything that needs a live
stream from a folder of canonical CDR files (the demo, streaming tests). Records travel as the
JSON of :func:`features.schema.record_to_json`, keyed by ``a_number`` so that every record of a
caller lands in one partition, in order (the producer is idempotent, so retries keep order).
"""

from __future__ import annotations

import datetime as dt
import heapq
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
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


@dataclass(frozen=True)
class LiveClock:
    """How a live replay maps simulated start times to wall time: ``event_time(t)`` is when the
    record is sent and the start time it gets."""

    first: dt.datetime
    now: dt.datetime
    speed: float
    #: wall time after which nothing more is sent (``None``: until the files end)
    end: dt.datetime | None = None

    @classmethod
    def plan(cls, files: list[Path], *, shift_to: dt.datetime, speed: float | None, rate: float | None,
             total: int, duration_s: float | None, start_at: dt.time | None = None) -> LiveClock:
        if shift_to.tzinfo is None:
            raise SimulationError("shift_to must be timezone-aware (UTC)")
        if speed is not None and rate is not None:
            raise SimulationError("give a live replay's pace as --speed or as --rate, not both")
        if speed is not None and speed <= 0:
            raise SimulationError("--speed must be a positive factor (1: real time)")
        if duration_s is not None and duration_s <= 0:
            raise SimulationError("--duration must be a positive number of seconds")
        first, last = _start_range(files)
        if start_at is not None:
            # from that time of day (UTC) of the first day on; earlier records are not sent
            first = dt.datetime.combine(first.date(), start_at.replace(tzinfo=None), dt.UTC)
            if first > last:
                raise SimulationError(f"no record starts after {start_at:%H:%M} UTC on the first day")
        if rate is not None:
            span_s = (last - first).total_seconds()
            # the speed at which the records take total / rate seconds of wall time
            speed = span_s * rate / total if span_s > 0 and total else 1.0
        end = shift_to + dt.timedelta(seconds=duration_s) if duration_s is not None else None
        return cls(first=first, now=shift_to, speed=float(speed or 1.0), end=end)

    def event_time(self, start: dt.datetime) -> dt.datetime:
        return self.now + (start - self.first) / self.speed


def _start_range(files: list[Path]) -> tuple[dt.datetime, dt.datetime]:
    """The first and last start times of files sorted in event-time order."""
    first = pq.ParquetFile(files[0]).read_row_group(0, columns=["start_time"]).column(0)[0].as_py()
    last_file = pq.ParquetFile(files[-1])
    column = last_file.read_row_group(last_file.num_row_groups - 1, columns=["start_time"]).column(0)
    return first, column[len(column) - 1].as_py()


def _send_live(
    records: Iterator[dict[str, Any]],
    live: LiveClock,
    send: Callable[[dict[str, Any]], None],
    *,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    failures: list[BaseException],
    tick: Callable[[], None] | None,
) -> None:
    """Send each record, its times mapped by ``live``, once the call it describes has ended on
    the replay's clock (as a switch writes a CDR): no timestamp of a record is ever ahead of the
    wall clock when it is sent. Records come in start order; a heap holds those whose call has
    started but not ended."""
    pending: list[tuple[float, int, dict[str, Any]]] = []
    upcoming = next(records, None)
    seq = 0
    last_tick = clock()
    while upcoming is not None or pending:
        now = clock()
        if live.end is not None and now > live.end.timestamp():
            break  # calls still going on at the end: their CDRs are not written yet
        # every call that has started by now is read (start order), then those that ended are sent
        while upcoming is not None:
            if upcoming["start_time"] < live.first:
                upcoming = next(records, None)  # before the chosen start (start_at)
                continue
            start = live.event_time(upcoming["start_time"])
            if live.end is not None and start > live.end:
                upcoming = None
                break
            if start.timestamp() > now:
                break
            # the call's length (ring, then duration) on the replay's clock; duration_s itself is
            # kept as simulated
            answered = upcoming["answer_time"]
            length = (answered - upcoming["start_time"] if answered is not None else dt.timedelta(0)) + dt.timedelta(
                seconds=upcoming["duration_s"] or 0
            )
            upcoming["start_time"] = start
            if answered is not None:
                upcoming["answer_time"] = live.event_time(answered)
            ends = start + length / live.speed
            heapq.heappush(pending, (ends.timestamp(), seq, upcoming))
            seq += 1
            upcoming = next(records, None)
        while pending and pending[0][0] <= now:
            send(heapq.heappop(pending)[2])
        if failures:
            return
        wake = [t for t in (pending[0][0] if pending else None,
                            live.event_time(upcoming["start_time"]).timestamp() if upcoming is not None else None)
                if t is not None]
        if tick is not None and now - last_tick >= 1:
            tick()
            last_tick = now
        if wake and min(wake) > now:
            sleep(min(min(wake) - now, 1.0))


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
    speed: float | None = None,
    duration_s: float | None = None,
    start_at: dt.time | None = None,
    live: bool = True,
    progress: ReplayProgressFn | None = None,
    batch_rows: int = 10_000,
    flush_timeout_s: float = 120.0,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Send every CDR under ``cdr_dir`` (a simulation folder or its ``cdrs`` folder) to ``topic``
    in event-time order, at ``rate`` records per second (``None``: as fast as possible).

    ``shift_to`` (e.g. now) replays live: the first record starts then, event time runs with
    the wall clock, and each record is sent when the call it describes has ended (as a switch
    writes a CDR), so none of its timestamps is ever ahead of the wall clock (a live consumer
    dead-letters records from the future). ``speed``: event seconds per wall second (default 1:
    real time, the gaps and rates as simulated); ``rate`` instead picks the speed that sends
    ``rate`` records per second on average. Gaps between records shrink by the speed (each
    ``duration_s`` stays as simulated).
    ``live=False`` keeps the former meaning of ``shift_to`` for benchmarks: every timestamp moved
    by one offset so that the first record starts at ``shift_to`` (e.g. a day ago, so that all
    are in the past), records sent at ``rate`` whatever their times.
    ``duration_s`` stops a live replay after that many wall seconds (calls not ended by then are
    not sent); ``start_at`` starts it at
    that UTC time of day of the first day (earlier records are not sent). With ``start_at`` =
    the time of day of ``shift_to`` at real speed, timestamps move by whole days, so every
    time-of-day feature (night calls, busy hours) means what it meant.

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
    shift: dt.timedelta | None = None
    if shift_to is not None and not live:
        if shift_to.tzinfo is None:
            raise SimulationError("shift_to must be timezone-aware (UTC)")
        shift = shift_to - _start_range(files)[0]
    clock_map: LiveClock | None = None
    if shift_to is not None and live:
        clock_map = LiveClock.plan(files, shift_to=shift_to, speed=speed, rate=rate, total=total, duration_s=duration_s,
                              start_at=start_at)
        rate = None  # paced by event time
    if clock_map is None and (speed is not None or duration_s is not None or start_at is not None):
        raise SimulationError("speed and duration_s apply to a live replay (shift_to) only")
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

    def send(record: dict[str, Any]) -> None:
        nonlocal sent
        future = producer.send(topic, key=record["a_number"].encode("utf-8"), value=record_to_json(record))
        future.add_errback(failed)
        sent += 1

    def records() -> Iterator[dict[str, Any]]:
        for path in files:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=list(FIELD_NAMES)):
                yield from batch.to_pylist()
                if progress is not None:
                    progress(sent, total)
                if failures:
                    return

    try:
        if clock_map is not None:
            _send_live(records(), clock_map, send, clock=clock, sleep=sleep, failures=failures,
                       tick=(lambda: progress(sent, total)) if progress is not None else None)
        else:
            for record in records():
                if rate is not None:
                    # pace against the start, so short sleeps do not accumulate drift
                    ahead = started + sent / rate - time.perf_counter()
                    if ahead > 0:
                        time.sleep(ahead)
                if shift is not None:
                    record["start_time"] += shift
                    if record["answer_time"] is not None:
                        record["answer_time"] += shift
                send(record)
        producer.flush(timeout=flush_timeout_s)
    except KafkaError as exc:
        failures.append(exc)
    finally:
        producer.close(timeout=10)
    if failures:
        raise PlatformError(f"{len(failures)} of {sent} records were not delivered to topic {topic!r}: {failures[0]!r}")
    return sent
