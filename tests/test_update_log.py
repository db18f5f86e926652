"""Compaction of the feature update logs: a reader sees exactly the newest row per key, with or
without compaction, re-run batches change nothing, and old folders are deleted only once a
newer generation has superseded the one that holds their rows (Spark, no Kafka)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from features.errors import ConfigError
from features.settings import FeatureSettings
from streaming.features_stream import COMPACTED, LogRetention, latest, log_horizon, write_update_log
from streaming.job import StreamJob, split_too_late
from streaming.settings import StreamSettings

pytestmark = [pytest.mark.spark]

HOUR = 3600


def _batch(spark, rows: list[tuple[str, int, int]]):
    return spark.createDataFrame(rows, "cell_id string, bucket long, cell_sims int")


def _latest(spark, state: Path) -> dict[tuple[str, int], int]:
    return {(r.cell_id, r.bucket): r.cell_sims for r in latest(spark, state, "cell").collect()}


def _updates(i: int) -> list[tuple[str, int, int]]:
    """Batch i: the current hour's bucket of three cells, and a late update to the hour before."""
    hour = i * HOUR
    return [(f"C{c}", hour, 10 * i + c) for c in range(3)] + [("C0", hour - HOUR, 1000 + i)]


def _folders(log: Path) -> tuple[list[int], list[int]]:
    batches = sorted(int(p.name.split("=")[1]) for p in log.iterdir() if p.name.startswith("batch_id="))
    gens = sorted(int(p.name.split("=")[1]) for p in (log / COMPACTED).iterdir()) if (log / COMPACTED).exists() else []
    return batches, gens


def test_compacted_logs_read_the_same_as_uncompacted_ones(spark, tmp_path) -> None:
    plain, compacted = tmp_path / "plain", tmp_path / "compacted"
    retention = LogRetention(compact_every=3, keep_s=100 * HOUR)
    expected: dict[tuple[str, int], int] = {}
    for i in range(10):
        rows = _updates(i)
        write_update_log(_batch(spark, rows), i, plain / "cell", "cell")
        write_update_log(_batch(spark, rows), i, compacted / "cell", "cell", retention)
        expected.update({(c, b): v for c, b, v in rows})
        assert _latest(spark, compacted) == expected == _latest(spark, plain), f"after batch {i}"

    # generations 3, 6 and 9 were written; the one of 9 let the folders up to 6 go, and
    # generation 3 with them: what a reader of generation 6 lists is still there
    assert _folders(compacted / "cell") == ([7, 8, 9], [6, 9])
    assert _folders(plain / "cell") == (list(range(10)), [])

    # a re-run of the last batch (a crash after its generation committed) changes nothing
    write_update_log(_batch(spark, _updates(9)), 9, compacted / "cell", "cell", retention)
    assert _latest(spark, compacted) == expected
    assert _folders(compacted / "cell") == ([7, 8, 9], [6, 9])

    # a time bound reads through generations and batch folders alike
    bound = latest(spark, compacted, "cell", where="bucket >= 7200").collect()
    assert {(r.cell_id, r.bucket): r.cell_sims for r in bound} == {k: v for k, v in expected.items() if k[1] >= 7200}


def test_a_generation_keeps_keep_s_of_event_time_behind_the_newest_bucket(spark, tmp_path) -> None:
    retention = LogRetention(compact_every=5, keep_s=2 * HOUR)
    expected: dict[tuple[str, int], int] = {}
    for i in range(6):
        rows = _updates(i)
        write_update_log(_batch(spark, rows), i, tmp_path / "cell", "cell", retention)
        expected.update({(c, b): v for c, b, v in rows})
    # generation 5: newest bucket 5 h; buckets from 3 h on are kept, batch 5's folder too
    assert {b for _, b in _latest(spark, tmp_path)} == {3 * HOUR, 4 * HOUR, 5 * HOUR}
    assert _latest(spark, tmp_path) == {k: v for k, v in expected.items() if k[1] >= 3 * HOUR}


def test_timestamp_buckets_are_kept_by_event_time_too(spark, tmp_path) -> None:
    t0 = dt.datetime(2026, 11, 2)
    retention = LogRetention(compact_every=2, keep_s=HOUR)
    for i in range(3):
        rows = [("T1", t0 + dt.timedelta(hours=i), i, i, 0)]
        frame = spark.createDataFrame(
            rows, "in_trunk_id string, trunk_bucket timestamp, trunk_calls long, trunk_suspect long, trunk_bad long"
        )
        write_update_log(frame, i, tmp_path / "trunk", "trunk", retention)
    got = sorted((r.trunk_bucket, r.trunk_calls) for r in latest(spark, tmp_path, "trunk").collect())
    assert got == [(t0 + dt.timedelta(hours=1), 1), (t0 + dt.timedelta(hours=2), 2)]


def test_calls_whose_context_is_gone_are_left_out_and_counted(spark) -> None:
    t = dt.datetime(2026, 11, 2, 12)
    calls = spark.createDataFrame(
        [("a", t), ("b", t - dt.timedelta(hours=1)), ("c", t - dt.timedelta(hours=30))],
        "record_id string, start_time timestamp",
    )
    horizon = t - dt.timedelta(hours=24)
    kept, first, too_late = split_too_late(calls, horizon=horizon)
    assert too_late == 1 and sorted(r.record_id for r in kept.collect()) == ["a", "b"]
    assert first == horizon
    kept, first, too_late = split_too_late(calls.where("record_id != 'c'"), horizon=horizon)
    assert (too_late, first, kept.count()) == (0, t - dt.timedelta(hours=1), 2)
    # nothing compacted yet: every call is scored, however old (a backfill's day in one batch)
    kept, first, too_late = split_too_late(calls, horizon=None)
    assert (too_late, first, kept.count()) == (0, t - dt.timedelta(hours=30), 3)
    _, first, too_late = split_too_late(calls.where("false"), horizon=horizon)
    assert (first, too_late) == (None, 0)


def test_the_horizon_is_what_the_newest_generation_dropped(spark, tmp_path) -> None:
    log = tmp_path / "cell"
    retention = LogRetention(compact_every=4, keep_s=2 * HOUR)
    for i in range(4):
        write_update_log(_batch(spark, _updates(i)), i, log, "cell", retention)
        assert log_horizon(log) is None  # no generation yet: nothing dropped
    write_update_log(_batch(spark, _updates(4)), 4, log, "cell", retention)
    assert log_horizon(log) == 4 * HOUR - 2 * HOUR


def test_log_keep_s_shorter_than_the_features_look_back_is_refused(tmp_path) -> None:
    features = FeatureSettings()
    with pytest.raises(ConfigError, match="log_keep_s"):
        StreamJob(
            spark=None,  # type: ignore[arg-type]
            kafka_options={},
            cdr_topic="t",
            dead_letter_topic="d",
            stream=StreamSettings(log_keep_s=features.window_s),
            features=features,
            state_dir=tmp_path,
            spam=None,  # type: ignore[arg-type]
            spoof=None,  # type: ignore[arg-type]
            sink=None,  # type: ignore[arg-type]
        )
