"""The per-SIM features' JVM processor (``features/jvm/SimFeatures.java``, ``features.sim_state``)
against the SQL definitions of ``features.sim``: the same rows over a batch, and over a stream
of micro-batches whose state Spark keeps between them."""

from __future__ import annotations

import datetime as dt
import itertools
import os

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from factories import T0, cdr, spark_frame
from test_feature_parity import mixed_traffic

from features.settings import FeatureSettings
from features.sim import KEY_COLUMNS, sim_features_at, sim_state
from features.sim_rows import ENTITY
from features.sim_state import EVENT_COLUMNS, build_sim_features, named_features, processor_events, sim_points
from features.sim_windows import scoring_points

pytestmark = pytest.mark.spark

SETTINGS = FeatureSettings()


def sql_features(cdrs, *, settings: FeatureSettings = SETTINGS, evidence: bool = False):
    """Every scoring point of the CDRs by the SQL definitions the stream's SIM stage uses."""
    rows, members = sim_state(cdrs, settings=settings)
    points = scoring_points(rows, settings=settings)
    return sim_features_at(rows, members, points, settings=settings, partials=False, evidence=evidence)


def _assert_same(got, want) -> None:
    assert [(f.name, f.dataType.simpleString()) for f in got.schema] == [
        (f.name, f.dataType.simpleString()) for f in want.schema
    ]
    assert got.count() == want.count() > 0
    assert got.exceptAll(want).count() == 0
    assert want.exceptAll(got).count() == 0


def test_batch_rows_equal_the_sql_definitions(spark):
    cdrs = spark_frame(spark, mixed_traffic()).persist()
    _assert_same(build_sim_features(cdrs, settings=SETTINGS), sql_features(cdrs))
    cdrs.unpersist()


def test_evidence_is_the_long_windows_newest_calls(spark):
    cdrs = spark_frame(spark, mixed_traffic()).persist()
    _assert_same(build_sim_features(cdrs, settings=SETTINGS, evidence=True), sql_features(cdrs, evidence=True))
    cdrs.unpersist()


def test_settings_reach_the_processor(spark):
    """Other windows, sub-buckets, scoring interval and ``max_calls`` than the defaults: a robocaller
    calling every 20 s for 26 hours with equal times in one minute, and callers it calls back."""
    settings = FeatureSettings(
        window_s=7200, short_window_s=600, sub_bucket_s=300, score_interval_s=600, max_calls=7,
        sequential_max_step=3, cohort_bucket_s=1800, train_points_per_day=None,
    )
    records = []
    for i in range(26 * 180):
        records.append(cdr(len(records), a_number="+84970000001", b_number=f"+8491300{i % 5000:04d}",
                           start_time=T0 + dt.timedelta(seconds=20 * i - i % 3),
                           release_cause="answered" if i % 4 == 0 else "no_answer", duration_s=float(2 + i % 5),
                           cell_id=f"C{i % 3}"))
        if i % 40 == 0:
            records.append(cdr(len(records), a_number=f"+8491300{i % 5000:04d}", b_number="+84970000001",
                               start_time=T0 + dt.timedelta(seconds=20 * i + 7), a_imei="350000000000777"))
    cdrs = spark_frame(spark, records)
    _assert_same(build_sim_features(cdrs, settings=settings), sql_features(cdrs, settings=settings))


def test_micro_batches_carry_the_state(spark, tmp_path):
    """The events cut at whole minutes into micro-batches of a file stream: every point of every
    micro-batch, with the state Spark kept since the first, equals the batch definitions' row."""
    cdrs = spark_frame(spark, mixed_traffic())
    events = processor_events(cdrs, settings=SETTINGS).toPandas().sort_values(["t", ENTITY], kind="stable")
    minute = (events["t"] // 60).astype("int64")
    cuts = sorted({int(m) for m in minute.iloc[::250]} | {int(minute.max()) + 1})
    source = tmp_path / "events"
    source.mkdir()
    schema = pa.schema([
        (ENTITY, pa.string()), ("t", pa.float64()), ("flags", pa.int32()), ("party", pa.string()),
        ("b_digits", pa.int64()), ("duration_s", pa.float64()), ("release_cause", pa.string()),
        ("cell_id", pa.string()), ("a_imei", pa.string()), ("eid", pa.string()), ("kind", pa.string()),
        ("key", pa.string()),
    ])
    assert schema.names == list(EVENT_COLUMNS)
    for i, (lo, hi) in enumerate(itertools.pairwise(cuts)):
        part = events[(minute >= lo) & (minute < hi)][list(EVENT_COLUMNS)]
        path = source / f"{i:04d}.parquet"
        pq.write_table(pa.Table.from_pandas(part, schema=schema, preserve_index=False), path)
        os.utime(path, (1_000_000 + i, 1_000_000 + i))  # the file stream takes files oldest first
    stream = spark.readStream.schema(
        processor_events(cdrs, settings=SETTINGS).select(*EVENT_COLUMNS).schema
    ).option("maxFilesPerTrigger", 1).parquet(str(source))
    got: list[pd.DataFrame] = []
    query = (
        named_features(sim_points(stream, settings=SETTINGS), settings=SETTINGS)
        .writeStream.outputMode("append")
        .option("checkpointLocation", str(tmp_path / "checkpoint"))
        .foreachBatch(lambda frame, _id: got.append(frame.toPandas()))
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    assert len(got) == len(cuts) - 1 > 5
    want = sql_features(cdrs)
    streamed = spark.createDataFrame(pd.concat(got, ignore_index=True), schema=want.schema)
    _assert_same(streamed, want)
    assert not streamed.groupBy(*KEY_COLUMNS).count().where("count > 1").take(1)
