"""Parity: the streaming job (Kafka -> validation -> Delta state -> features as of each
micro-batch) and the batch definitions give identical feature rows for the same CDRs.

The job runs as ``simguard stream`` runs it (``streaming.job.StreamJob``, real broker, official
connector, many micro-batches), with stand-in scorers that pass every row on to a recording
sink. For every micro-batch, the rows it decided must equal what ``features.sim`` and
``features.calls`` compute from a static DataFrame of the CDRs the stream had seen by then (those
up to the batch's newest event), at the same scoring points.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from factories import T0, PassThrough, RecordingSink, cdr, spark_frame

from features.calls import build_call_features, call_feature_names
from features.schema import record_to_json
from features.settings import FeatureSettings
from features.sim import ENTITY, KEY_COLUMNS, sim_feature_names, sim_features_at, sim_state
from features.sim_windows import AS_OF
from features.validation import ValidationRules
from streaming.job import StreamJob
from streaming.settings import StreamSettings

pytestmark = [pytest.mark.spark, pytest.mark.kafka]

SETTINGS = FeatureSettings()
BATCH = 250


def mixed_traffic(seed: int = 7) -> list[dict]:
    """36 hours of people, a robocaller, a small SIM box and gateway calls, in event-time order
    (every record at its own microsecond, so a micro-batch boundary never splits equal times)."""
    rng = np.random.default_rng(seed)
    people = [f"+8496{1000000 + k:07d}" for k in range(25)]
    records: list[dict] = []

    def add(**kw) -> None:
        kw["start_time"] = kw["start_time"] + dt.timedelta(microseconds=len(records))
        records.append(cdr(len(records), **kw))

    for _ in range(400):
        a, b = rng.choice(people, 2, replace=False)
        answered = rng.random() < 0.8
        sms = rng.random() < 0.2
        add(a_number=a, b_number=b, start_time=T0 + dt.timedelta(seconds=int(rng.integers(0, 36 * 3600))),
            release_cause="answered" if answered else "no_answer",
            duration_s=0.0 if sms else float(np.round(rng.lognormal(4, 1), 3)),
            cell_id=f"C{int(rng.integers(0, 6))}", a_imei=f"35{abs(hash(a)) % 10**13:013d}",
            event_type="sms" if sms else "voice")
    for i in range(150):
        add(a_number="+84970000001", b_number=f"+8491300{i:04d}",
            start_time=T0 + dt.timedelta(hours=20, seconds=40 * i),
            release_cause="answered" if i % 4 == 0 else "no_answer", duration_s=float(2 + i % 5), cell_id="C9")
    for k in range(6):
        for i in range(30):
            add(a_number=f"+8498000{k:04d}", b_number=f"+8496{5000000 + 97 * i + k:07d}",
                start_time=T0 + dt.timedelta(hours=1, minutes=37 * i + k), a_imei="350000000000777",
                cell_id="BOX", duration_s=float(30 + i))
    for i in range(40):
        add(a_number="+88216000001", b_number=f"+8491400{i:04d}", start_time=T0 + dt.timedelta(hours=30, seconds=9 * i),
            release_cause="cancelled", in_trunk_type="international_gateway", in_trunk_id="IGW", a_imsi=None,
            a_imei=None, cell_id=None, lac=None, operator="vinaphone")
        add(a_number=people[i % 5], b_number=f"+8491600{i:04d}", start_time=T0 + dt.timedelta(hours=30, seconds=11 * i),
            in_trunk_type="international_gateway", in_trunk_id="IGW", a_imsi=None, a_imei=None, cell_id=None, lac=None,
            operator="vinaphone", a_roaming=bool(i % 2))
    records.sort(key=lambda r: (r["start_time"], r["record_id"]))
    return records


def _job(spark, kafka_bootstrap, new_topic, tmp_path, records: list[dict], *, batch: int = BATCH):
    from kafka import KafkaProducer

    topic = new_topic(partitions=1)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap.split(","))
    for r in records:
        producer.send(topic, key=r["a_number"].encode(), value=record_to_json(r))
    producer.flush()
    producer.close()
    sink = RecordingSink()
    job = StreamJob(
        spark=spark,
        kafka_options={"kafka.bootstrap.servers": kafka_bootstrap},
        cdr_topic=topic,
        dead_letter_topic=new_topic(),
        stream=StreamSettings(
            max_offsets_per_trigger=batch, metrics_port=0, archive=False,
            validation=ValidationRules(max_past_days=36500),
        ),
        features=SETTINGS,
        state_uri=(tmp_path / "stream").as_uri(),
        spam=PassThrough("spam", sim_feature_names(SETTINGS), [ENTITY, "window_end"]),
        spoof=PassThrough("spoof", call_feature_names(SETTINGS), ["record_id"]),
        sink=sink,
    )
    return job, sink


def _assert_rows_equal_batch(
    spark, sink: RecordingSink, records: list[dict], *, in_arrival_order: bool = False
) -> tuple[int, int]:
    """Every row the stream decided equals the batch definitions' row at the same point, from the
    CDRs up to its micro-batch's newest event (``in_arrival_order``: from the CDRs the stream had
    read by the end of its micro-batch, ``records`` in topic order); returns (SIM rows, call rows)
    compared."""
    from pyspark.sql import functions as F

    static = spark_frame(spark, records).persist()
    first_minute = pd.Timestamp(min(r["start_time"] for r in records)).tz_convert(None).floor("min")
    read_through = np.cumsum([sink.batches[b]["records_in"] for b in sorted(sink.batches)])
    sim_rows, call_rows = 0, 0
    for kind, batch_id, got in sink.rows:
        if in_arrival_order:
            seen = spark_frame(spark, records[: int(read_through[sorted(sink.batches).index(batch_id)])])
        else:
            seen = static.where(F.col("start_time") <= F.lit(sink.batches[batch_id]["newest_event"]).cast("timestamp"))
        if kind == "sim":
            _assert_sim_rows_equal(spark, got, seen)
            sim_rows += len(got)
            # a window reaching before the state's first record is judged at the cold threshold
            cold = pd.to_datetime(got["window_start"]) < first_minute
            assert (got["model_threshold"].to_numpy() == np.where(cold, 0.9, 0.5)).all()
            # the evidence is the long window's newest calls, in time order
            for e in got["evidence"]:
                calls = e["recent_calls"]
                assert len(calls) == min(50, e["features"]["calls_out_24h"]), e
                assert [c["time"] for c in calls] == sorted(c["time"] for c in calls)
                assert not calls or calls[-1]["time"] <= e["window_end"]
        else:
            want = build_call_features(seen, settings=SETTINGS).toPandas()
            want = want[want["record_id"].isin(got["record_id"])]
            _assert_frames_equal(got, want, list(want.columns), ["record_id"])
            call_rows += len(got)
    static.unpersist()
    return sim_rows, call_rows


def _assert_frames_equal(got: pd.DataFrame, want: pd.DataFrame, cols: list[str], keys: list[str]) -> None:
    got = got[cols].sort_values(keys).reset_index(drop=True)
    want = want[cols].sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_exact=True, check_dtype=False)


def _assert_sim_rows_equal(spark, got: pd.DataFrame, cdrs) -> None:
    """The stream's SIM rows ``got`` equal the batch definitions' rows from ``cdrs`` at the same
    points (entity, window end)."""
    points = spark.createDataFrame(
        pd.DataFrame({ENTITY: got[ENTITY], AS_OF: pd.to_datetime(got["window_end"]).astype("int64") / 1e9})
    )
    rows, members = sim_state(cdrs, settings=SETTINGS)
    want = sim_features_at(rows, members, points, settings=SETTINGS).toPandas()
    _assert_frames_equal(got, want, [*KEY_COLUMNS, *sim_feature_names(SETTINGS)], [ENTITY, "window_end"])


def test_stream_job_rows_equal_batch_features_at_the_same_points(spark, kafka_bootstrap, new_topic, tmp_path) -> None:
    records = mixed_traffic()
    job, sink = _job(spark, kafka_bootstrap, new_topic, tmp_path, records)
    job.run(available_now=True, timeout_s=900)
    print({b: r["stages_s"] for b, r in sink.batches.items()})
    assert len(sink.batches) >= len(records) // BATCH, sink.batches.keys()
    assert sum(b["valid"] for b in sink.batches.values()) == len(records)
    sim_rows, call_rows = _assert_rows_equal_batch(spark, sink, records)
    assert sim_rows > 30 and call_rows == 80
    # 36 hours from an empty state: the first day's rows are cold, the rest are not
    thresholds = pd.concat([g for k, _, g in sink.rows if k == "sim"])["model_threshold"]
    assert set(thresholds) == {0.5, 0.9}
    assert _assert_read_rows_equal_whole_day(spark, sink, records) > 30


def test_late_records_give_the_batch_rows(spark, kafka_bootstrap, new_topic, tmp_path) -> None:
    """Every fifth record of the SIM box and of the people arrives three hours late. Every row
    still equals the batch definitions' over the records read by then: the processors keep a late
    record in its own minute, and count its SIM in its cell's and IMEI's context from then on."""
    records = mixed_traffic()
    late = [r for i, r in enumerate(records) if i % 5 == 0 and r["in_trunk_type"] == "subscriber"]
    order = [r for r in records if r not in late]
    for r in late:
        due = r["start_time"] + dt.timedelta(hours=3)
        at = next((i for i, o in enumerate(order) if o["start_time"] >= due), len(order))
        order.insert(at, r)
    job, sink = _job(spark, kafka_bootstrap, new_topic, tmp_path, order, batch=120)
    job.run(available_now=True, timeout_s=900)
    batches = [sink.batches[b] for b in sorted(sink.batches)]
    assert sum(b["valid"] for b in batches) == len(records)
    sim_rows, call_rows = _assert_rows_equal_batch(spark, sink, order, in_arrival_order=True)
    assert sim_rows > 30 and call_rows == 80


def test_a_row_is_not_changed_by_sims_that_come_later_in_its_hour(
    spark, kafka_bootstrap, new_topic, tmp_path
) -> None:
    """A SIM box's SIMs start one after another in one cell and hour, and micro-batches end
    between them: a row scored once its micro-batch read past its point is the batch job's row
    over the whole day (a job that counted the hour's later SIMs would differ)."""
    records = []
    for k in range(4):
        for j in range(3):
            records.append(cdr(
                len(records), a_number=f"+8498000{k:04d}", b_number=f"+8496{5000000 + 10 * k + j:07d}",
                start_time=T0 + dt.timedelta(hours=1, minutes=10 * k + 3 * j), a_imei="350000000000777",
                cell_id="BOX", duration_s=40.0,
            ))
    job, sink = _job(spark, kafka_bootstrap, new_topic, tmp_path, records, batch=3)
    # every row here would be cold; a version trained before cold thresholds has one threshold
    # for all rows and marks none cold, which keeps the stand-in's picks (the rows compared)
    # spread over each micro-batch rather than on its best-scoring points
    job.spam.model.has_cold_threshold = False
    job.run(available_now=True, timeout_s=900)
    assert len(sink.batches) == 4
    sims = pd.concat([g for k, _, g in sink.rows if k == "sim"])
    assert set(sims["model_threshold"]) == {0.5} and not sims["cold"].any()
    # one row per SIM and micro-batch reaches the sink (its first decisive one)
    assert _assert_read_rows_equal_whole_day(spark, sink, records) >= 3
    cohort = pd.concat([g for k, _, g in sink.rows if k == "sim"]).set_index([ENTITY, "window_end"])
    assert cohort.loc[("+84980000000", pd.Timestamp(T0.replace(tzinfo=None) + dt.timedelta(hours=1, minutes=1)))][
        "cell_cohort_peak_1h_24h"
    ] == 1


def _assert_read_rows_equal_whole_day(spark, sink: RecordingSink, records: list[dict]) -> int:
    """Rows scored at or before their micro-batch's newest event equal the batch definitions'
    over all the CDRs (nothing read later changes them); returns how many were compared."""
    read = []
    for kind, batch_id, got in sink.rows:
        if kind == "sim":
            newest = pd.Timestamp(sink.batches[batch_id]["newest_event"], unit="s")
            read.append(got[pd.to_datetime(got["window_end"]) <= newest])
    got = pd.concat(read)
    _assert_sim_rows_equal(spark, got, spark_frame(spark, records))
    return len(got)


def test_a_warm_start_scores_as_a_job_that_read_the_day_before(spark, kafka_bootstrap, new_topic, tmp_path) -> None:
    """The first 10 hours loaded with ``warm`` (a batch of canonical CDRs, no decisions), the rest
    streamed in two micro-batches: the stream's rows are those of the batch definitions over all
    the CDRs, and a SIM of the SIM box (15 calls before the cut) carries its history. Loaded once:
    a restart skips it, and a state that already streamed refuses another."""
    from features.errors import ConfigError

    records = mixed_traffic()
    cut = T0 + dt.timedelta(hours=10)
    before = [r for r in records if r["start_time"] < cut]
    after = [r for r in records if r["start_time"] >= cut]
    job, sink = _job(spark, kafka_bootstrap, new_topic, tmp_path, after, batch=len(after) // 2 + 1)
    warmed = job.warm(spark_frame(spark, before), source="file:///archive/day-1")
    assert warmed["loaded"] and warmed["records"] == len(before)
    assert job.warm(spark_frame(spark, before), source="file:///archive/day-1") == {
        "warm_from": "file:///archive/day-1", "loaded": False,
    }
    job.run(available_now=True, timeout_s=900)
    assert sum(b["valid"] for b in sink.batches.values()) == len(after)
    sim_rows, call_rows = _assert_rows_equal_batch(spark, sink, records)
    assert sim_rows > 30 and call_rows == 80
    boxes = pd.concat([g for k, _, g in sink.rows if k == "sim"])
    box = boxes[boxes[ENTITY] == "+84980000000"].sort_values("window_end").iloc[0]
    # its first row after the cut already counts the calls it made before it
    assert box["calls_out_24h"] > 15
    with pytest.raises(ConfigError, match="already holds records"):
        job.warm(spark_frame(spark, before), source="file:///archive/other-day")
