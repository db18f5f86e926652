"""``simguard replay --shift-to-now``: a live replay sends each record when the wall clock reaches
its event time, so a live stream never sees a record from the future (before, the whole day was
moved to start now and sent at ``--rate``, and 98% of it was dead-lettered as ``time_in_future``)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from factories import cdr, table

from features.schema import record_from_json
from features.validation import ValidationRules, validate_json_values
from pipeline.simulate.populations import SimulationError
from pipeline.simulate.replay import LiveClock, replay_to_kafka

T0 = dt.datetime(2025, 3, 5, 0, 0, tzinfo=dt.UTC)


def _folder(tmp_path: Path, starts_s: list[float]) -> Path:
    """Calls starting at ``starts_s``: every other one unanswered, the others answered after 1 s
    and 2 s long."""
    folder = tmp_path / "cdrs" / "day=2025-03-05"
    folder.mkdir(parents=True)
    records = []
    for i, s in enumerate(starts_s):
        start = T0 + dt.timedelta(seconds=s)
        answered = {"answer_time": start + dt.timedelta(seconds=1), "duration_s": 2.0}
        records.append(cdr(i, start_time=start, **(answered if i % 2 else {"release_cause": "no_answer"})))
    pq.write_table(table(records), folder / "part-00000.parquet")
    return tmp_path


def test_live_clock_maps_event_time_to_wall_time(tmp_path: Path) -> None:
    files = sorted((_folder(tmp_path, [0, 60, 3600]) / "cdrs").glob("day=*/*.parquet"))
    now = dt.datetime(2026, 11, 30, 6, 0, tzinfo=dt.UTC)
    real = LiveClock.plan(files, shift_to=now, speed=None, rate=None, total=3, duration_s=None)
    assert real.event_time(T0) == now
    assert real.event_time(T0 + dt.timedelta(hours=1)) == now + dt.timedelta(hours=1)  # real time
    fast = LiveClock.plan(files, shift_to=now, speed=60, rate=None, total=3, duration_s=30)
    assert fast.event_time(T0 + dt.timedelta(hours=1)) == now + dt.timedelta(minutes=1)
    assert fast.end == now + dt.timedelta(seconds=30)
    # --rate: 3 records over an hour at 3 records/s -> the hour passes in one second
    by_rate = LiveClock.plan(files, shift_to=now, speed=None, rate=3, total=3, duration_s=None)
    assert by_rate.speed == pytest.approx(3600)
    # --start-at: from that time of day of the first day; the hour before is skipped
    later = LiveClock.plan(files, shift_to=now, speed=None, rate=None, total=3, duration_s=None,
                           start_at=dt.time(0, 30))
    assert later.first == T0 + dt.timedelta(minutes=30)
    assert later.event_time(T0 + dt.timedelta(hours=1)) == now + dt.timedelta(minutes=30)
    with pytest.raises(SimulationError, match="no record starts after"):
        LiveClock.plan(files, shift_to=now, speed=None, rate=None, total=3, duration_s=None, start_at=dt.time(2))
    with pytest.raises(SimulationError, match="not both"):
        LiveClock.plan(files, shift_to=now, speed=2, rate=3, total=3, duration_s=None)


@pytest.mark.kafka
def test_live_replay_never_sends_a_record_from_the_future(tmp_path: Path, kafka_bootstrap: str,
                                                         new_topic: Any) -> None:
    from kafka import KafkaConsumer

    # 40 records over 20 simulated minutes, replayed at 300x: about 4 s of wall time
    starts = [i * 30.0 for i in range(40)]
    folder = _folder(tmp_path, starts)
    topic = new_topic()
    begin = dt.datetime.now(dt.UTC)
    sent = replay_to_kafka(folder, topic=topic, producer_options={"bootstrap_servers": kafka_bootstrap.split(",")},
                           shift_to=begin, speed=300)
    assert sent == 40
    consumer = KafkaConsumer(topic, bootstrap_servers=kafka_bootstrap.split(","), auto_offset_reset="earliest",
                             consumer_timeout_ms=5000)
    got = [m for m in consumer]
    consumer.close()
    assert len(got) == 40
    records = [record_from_json(m.value) for m in got]
    for m, r in zip(got, records, strict=True):
        landed = dt.datetime.fromtimestamp(m.timestamp / 1000, dt.UTC)
        # sent once the call ended on the replay's clock (as a switch writes a CDR): no timestamp
        # after the wall clock, none far behind it
        for stamp in (r["start_time"], r["answer_time"]):
            assert stamp is None or stamp <= landed + dt.timedelta(milliseconds=5), (r, landed)
        assert landed - r["start_time"] < dt.timedelta(seconds=2), (r, landed)
        assert r["duration_s"] == (2.0 if r["answer_time"] else 0.0)  # durations as simulated
    # event time runs with the wall clock from the replay's start, the gaps as simulated divided
    # by the speed
    starts_out = sorted(r["start_time"] for r in records)
    assert starts_out[0] == begin
    assert starts_out[-1] - starts_out[0] == dt.timedelta(seconds=39 * 30 / 300)
    # what the stream's validation says when each record arrives, with no clock skew allowed
    # beyond a second: nothing dead-lettered
    for m in got:
        verdict = validate_json_values([m.value], now=dt.datetime.fromtimestamp(m.timestamp / 1000, dt.UTC),
                                       rules=ValidationRules(max_future_s=1))
        assert len(verdict.dead) == 0 and len(verdict.valid) == 1, verdict.dead.to_dict("records")


def test_live_options_need_shift_to(tmp_path: Path) -> None:
    folder = _folder(tmp_path, [0, 1])
    with pytest.raises(SimulationError, match="live replay"):
        replay_to_kafka(folder, topic="t", producer_options={}, speed=2)


def test_live_sends_each_cdr_when_its_call_ends_and_stops_at_the_duration() -> None:
    from pipeline.simulate.replay import _send_live

    now = dt.datetime(2026, 11, 30, 6, 0, tzinfo=dt.UTC)
    t = [now.timestamp()]

    def call(rid: str, start_s: float, ring_s: float | None, duration_s: float) -> dict[str, Any]:
        start = T0 + dt.timedelta(seconds=start_s)
        answer = start + dt.timedelta(seconds=ring_s) if ring_s is not None else None
        return {"record_id": rid, "start_time": start, "answer_time": answer, "duration_s": duration_s}

    records = [call("a", 0, None, 0), call("long", 0.5, 1, 100), call("short", 1, 1, 1), call("c", 3, None, 0),
               call("late", 20, None, 0)]
    clock = LiveClock(first=T0, now=now, speed=1.0, end=now + dt.timedelta(seconds=10))
    sent: list[tuple[str, float]] = []

    def sleep(s: float) -> None:
        t[0] += s

    _send_live(iter(records), clock, lambda r: sent.append((r["record_id"], t[0] - now.timestamp())),
               clock=lambda: t[0], sleep=sleep, failures=[], tick=None)
    # in the order the calls ended, each once it had; the 100 s call and the one starting after
    # the 10 s are not sent
    assert [rid for rid, _ in sent] == ["a", "short", "c"]
    assert [at for _, at in sent] == pytest.approx([0, 3, 3], abs=1e-6)


def test_the_history_a_live_replay_continues(tmp_path: Path) -> None:
    from pipeline.simulate.history import write_history

    # three days of calls, one every six hours; the replay starts at 12:30 of the last day
    for day in range(3):
        folder = tmp_path / "cdrs" / f"day=2025-03-0{3 + day}"
        folder.mkdir(parents=True)
        starts = [T0 + dt.timedelta(days=day - 2, hours=h) for h in (0, 6, 12, 18)]
        pq.write_table(table([cdr(10 * day + k, start_time=s) for k, s in enumerate(starts)]),
                       folder / "part-00000.parquet")
    now = dt.datetime(2026, 11, 30, 12, 30, 5, tzinfo=dt.UTC)
    out = tmp_path / "history"
    written = write_history(tmp_path, start_at=dt.time(12, 30), now=now, out=out)
    # the day before in full and the replayed day up to 12:30; the first day is too old
    shift = now - (T0 + dt.timedelta(hours=12, minutes=30))
    got = pq.read_table(out).to_pylist()
    assert sorted(r["record_id"] for r in got) == ["r000010", "r000011", "r000012", "r000013", "r000020",
                                                    "r000021", "r000022"]
    for r in got:
        day, k = divmod(int(r["record_id"][1:]), 10)
        assert r["start_time"] == T0 + dt.timedelta(days=day - 2, hours=6 * k) + shift
        assert r["answer_time"] == r["start_time"] + dt.timedelta(seconds=5)  # every timestamp moved
    assert written["records"] == 7 and written["last"] == T0 + dt.timedelta(hours=12) + shift < now
    # the replay sends the 18:00 call at its wall time: history and replay meet at now
    clock = LiveClock.plan(sorted((tmp_path / "cdrs").glob("day=2025-03-05/*.parquet")), shift_to=now, speed=None,
                           rate=None, total=4, duration_s=None, start_at=dt.time(12, 30))
    assert clock.event_time(T0 + dt.timedelta(hours=18)) == T0 + dt.timedelta(hours=18) + shift
    with pytest.raises(SimulationError, match="already holds Parquet files"):
        write_history(tmp_path, start_at=dt.time(12, 30), now=now, out=out)
    with pytest.raises(SimulationError, match="no record starts before 00:00:00"):
        write_history(tmp_path, start_at=dt.time(0), now=now, out=tmp_path / "h2", days_before=0)
