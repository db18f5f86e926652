"""``simguard stream --warm-from``: earlier canonical CDRs loaded into a new state once, said in
one line (the rows it gives are checked in ``test_feature_parity.py``)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from factories import T0, cdr, spark_frame
from pydantic import SecretStr

from features.errors import ConfigError

pytestmark = [pytest.mark.spark, pytest.mark.kafka]


def _run_settings(settings, tmp_path, name: str, state_uri: str):
    """The test settings with their own home, blocklist database, state and fresh topics."""
    from pipeline.config import DatabaseSettings, TopicSettings

    tag = uuid.uuid4().hex[:10]
    return settings.model_copy(update={
        "home": tmp_path / "home",
        "database": DatabaseSettings(url=SecretStr(f"sqlite:///{tmp_path / 'blocklist.db'}")),
        "stream": settings.stream.model_copy(update={"state_uri": state_uri, "metrics_port": 0}),
        "kafka": settings.kafka.model_copy(update={"topics": TopicSettings(
            cdrs=f"{name}.cdrs.{tag}", dead_letter=f"{name}.dlq.{tag}", blocklist_prefix=f"{name}.blocklist.{tag}",
        )}),
    })


def test_warm_start_loads_once_and_says_so(spark, settings, tmp_path) -> None:
    from pipeline.stream import run_stream

    archive = tmp_path / "archive" / "day=2025-03-01"
    calls = [cdr(i, start_time=T0 + dt.timedelta(minutes=i)) for i in range(3)]
    spark_frame(spark, calls).write.parquet(str(archive))
    run = _run_settings(settings, tmp_path, "warm", (tmp_path / "stream").as_uri())
    said: list[str] = []
    run_stream(spark, run, available_now=True, warm_from=archive, say=said.append)
    loaded = [line for line in said if line.startswith("warm start")]
    assert loaded == [f"warm start: 3 CDRs from {T0.replace(tzinfo=None)} to "
                      f"{(T0 + dt.timedelta(minutes=2)).replace(tzinfo=None)} loaded into the state"]
    assert not [line for line in said if line.startswith("cold start")]
    said.clear()
    # a restart, the archive given as a URI this time: the same source, the state has it already
    run_stream(spark, run, available_now=True, warm_from=archive.as_uri(), say=said.append)
    assert [line for line in said if line.startswith("warm start")] == [
        f"warm start: {archive.resolve().as_uri()} was loaded into this state before; not again"
    ]
    assert not [line for line in said if line.startswith("cold start")]
    # another folder into a state that already holds rows would count them twice
    other = tmp_path / "archive" / "day=2025-03-02"
    spark_frame(spark, calls).write.parquet(str(other))
    with pytest.raises(ConfigError, match="already holds records"):
        run_stream(spark, run, available_now=True, warm_from=other, say=said.append)


def test_a_cold_start_says_so_in_one_line(spark, settings, tmp_path) -> None:
    """No --warm-from and an empty state: the first day scores SIMs without the day before, at the
    model's cold threshold (BENCHMARKS.md: 0.880 SIM precision cold on the 10k test day, 0.079 at
    the warm threshold); with fixed block thresholds the line says those apply instead."""
    from pipeline.stream import run_stream

    state = (tmp_path / "stream").as_uri()
    run = _run_settings(settings, tmp_path, "cold", state)
    said: list[str] = []
    run_stream(spark, run, available_now=True, say=said.append)
    cold = [line for line in said if line.startswith("cold start")]
    assert len(cold) == 1 and f"the state at {state}/state is empty" in cold[0] and "--warm-from" in cold[0]
    assert "cold threshold" in cold[0]
    from pipeline.stream import _cold_effect
    from streaming.policy import FraudTypePolicy

    rule = FraudTypePolicy(block_above=0.95, review_above=0.7, ttl_hours=24)
    fixed = run.policy.model_copy(update=dict.fromkeys(("spam_robocall", "simbox", "wangiri"), rule))
    assert "fixed block_above" in _cold_effect(run.model_copy(update={"policy": fixed}))


def test_archive_locations_are_uris(spark, tmp_path) -> None:
    from features.errors import SchemaError
    from pipeline.featurize import location_uri, read_cdrs

    assert location_uri("s3a://archive/cdrs/day=2025-03-01") == "s3a://archive/cdrs/day=2025-03-01"
    assert location_uri("hdfs://nn:8020/cdrs") == "hdfs://nn:8020/cdrs"
    assert location_uri(tmp_path / "a" / ".." / "b") == (tmp_path / "b").as_uri()
    with pytest.raises(SchemaError, match="no CDR Parquet files under"):
        read_cdrs(spark, (tmp_path / "missing").as_uri())
    # a partition folder's '=' is escaped in its URI
    day = tmp_path / "cdrs" / "day=2025-03-01"
    spark_frame(spark, [cdr(0)]).write.parquet(str(day))
    assert read_cdrs(spark, day.as_uri()).count() == 1


def test_a_state_an_older_version_wrote_is_refused_in_one_line(spark, settings, tmp_path) -> None:
    from pyspark.sql import functions as F

    from features.settings import FeatureSettings
    from pipeline.stream import run_stream
    from streaming.state import StateTable, state_rows

    stream = tmp_path / "stream"
    calls = spark_frame(spark, [cdr(i, start_time=T0 + dt.timedelta(minutes=i)) for i in range(3)])
    # the layout before the SIM state moved into the query's checkpoint kept per-SIM rows
    old = state_rows(calls, settings=FeatureSettings()).withColumn("entity", F.col("a_number"))
    StateTable(spark, f"{stream.as_uri()}/state").append(old, app_id="old", batch_id=0)
    run = _run_settings(settings, tmp_path, "old", stream.as_uri())
    with pytest.raises(ConfigError, match=r"written by an older version \(column entity\)"):
        run_stream(spark, run, available_now=True, say=lambda line: None)
    # and a table that lacks a column this version writes
    newer = tmp_path / "newer"
    StateTable(spark, f"{newer.as_uri()}/state").append(
        state_rows(calls, settings=FeatureSettings()).drop("owner_callees"), app_id="old", batch_id=0
    )
    run = _run_settings(settings, tmp_path, "newer", newer.as_uri())
    with pytest.raises(ConfigError, match=r"written by an older version \(no column owner_callees\)"):
        run_stream(spark, run, available_now=True, say=lambda line: None)


def test_the_first_record_is_kept_and_a_late_record_does_not_move_it(spark, tmp_path) -> None:
    """Rows whose window starts before the state's first record are judged at the cold threshold:
    that minute is fixed once asked for, and neither a straggler in the first micro-batch (more
    than a window older than its newest record) nor a later record older than it moves it."""
    from delta.tables import DeltaTable

    from features.settings import FeatureSettings
    from streaming.state import FIRST_RECORD, StateTable, state_rows

    state = StateTable(spark, f"{(tmp_path / 'stream').as_uri()}/state")
    day = 86400.0
    assert state.first_record(reach_s=day) is None
    start = T0 + dt.timedelta(hours=5, seconds=42)

    def rows(*times: dt.datetime):
        records = [cdr(i, start_time=at) for i, at in enumerate(times)]
        return state_rows(spark_frame(spark, records), settings=FeatureSettings())

    state.append(rows(start - dt.timedelta(days=3), start, start + dt.timedelta(minutes=7)), app_id="q", batch_id=0)
    minute = (T0 + dt.timedelta(hours=5)).timestamp()
    assert state.first_record(reach_s=day) == minute
    state.append(rows(T0 + dt.timedelta(hours=1)), app_id="q", batch_id=1)
    assert state.first_record(reach_s=day) == minute
    assert StateTable(spark, state.uri).first_record(reach_s=day) == minute  # a restarted job reads it back
    assert DeltaTable.forPath(spark, state.uri).detail().first()["properties"][FIRST_RECORD] == str(int(minute))


def test_a_warm_start_counts_from_its_own_first_record(spark, tmp_path) -> None:
    """The day before loaded, then a first micro-batch of three hours: the history starts at the
    loaded day's first minute, not a window before the batch's newest record (which would judge
    the batch's first hours cold although their windows are whole). A property that is not a
    number is a one-line error naming it."""
    from delta.tables import DeltaTable

    from features.settings import FeatureSettings
    from streaming.state import FIRST_RECORD, StateTable, state_rows

    state = StateTable(spark, f"{(tmp_path / 'stream').as_uri()}/state")

    def rows(*times: dt.datetime):
        records = [cdr(i, start_time=at) for i, at in enumerate(times)]
        return state_rows(spark_frame(spark, records), settings=FeatureSettings())

    day_before = T0 - dt.timedelta(days=1)
    state.append(rows(day_before + dt.timedelta(seconds=30), day_before + dt.timedelta(hours=12),
                      day_before + dt.timedelta(hours=23, minutes=50)), app_id="warm", batch_id=0)
    state.append(rows(T0 + dt.timedelta(hours=1), T0 + dt.timedelta(hours=3)), app_id="q", batch_id=0)
    assert state.first_record(reach_s=86400.0) == day_before.timestamp()

    location = DeltaTable.forPath(spark, state.uri).detail().first()["location"]
    spark.sql(f"ALTER TABLE delta.`{location}` SET TBLPROPERTIES ('{FIRST_RECORD}' = 'yesterday')")
    with pytest.raises(ConfigError, match=f"{FIRST_RECORD}='yesterday', not epoch seconds"):
        StateTable(spark, state.uri).first_record(reach_s=86400.0)
