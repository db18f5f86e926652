"""Small hand-made canonical CDRs for feature tests (no simulator needed)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa

from features.schema import arrow_schema

T0 = dt.datetime(2026, 11, 2, 0, 0, tzinfo=dt.UTC)


def cdr(i: int, **overrides: Any) -> dict[str, Any]:
    """One answered subscriber call; ``overrides`` replace any field."""
    start = overrides.pop("start_time", T0 + dt.timedelta(minutes=7 * i))
    record = {
        "record_id": f"r{i:06d}",
        "operator": "viettel",
        "event_type": "voice",
        "a_number": "+84961000001",
        "b_number": f"+8491{2000000 + i:07d}",
        "a_imsi": "452040000000001",
        "a_imei": "356938035643809",
        "start_time": start,
        "answer_time": start + dt.timedelta(seconds=5),
        "duration_s": 42.0,
        "release_cause": "answered",
        "cell_id": "C0001",
        "lac": "L01",
        "in_trunk_type": "subscriber",
        "in_trunk_id": None,
        "a_roaming": False,
    }
    record.update(overrides)
    if record["release_cause"] != "answered":
        record["answer_time"] = None
        record["duration_s"] = 0.0
    return record


def table(records: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(records, schema=arrow_schema())


def spark_frame(spark: Any, records: list[dict[str, Any]]) -> Any:
    """A Spark DataFrame of canonical CDRs via Arrow (the Parquet path's types)."""
    from features.schema import spark_schema

    return spark.createDataFrame(table(records).to_pandas(), schema=spark_schema())


def fixed_policy():
    """A policy with fixed block thresholds (the defaults block above the model version's own
    threshold, ``block_above: null``): for tests of the policy and store mechanics."""
    from streaming.policy import FraudTypePolicy, PolicySettings

    return PolicySettings(
        spam_robocall=FraudTypePolicy(block_above=0.95, review_above=0.7, ttl_hours=720),
        simbox=FraudTypePolicy(block_above=0.97, review_above=0.6, ttl_hours=2160),
        wangiri=FraudTypePolicy(block_above=0.9, review_above=0.6, ttl_hours=168),
        spoofed_call=FraudTypePolicy(block_above=0.9, review_above=0.6, ttl_hours=24),
    )


# -- stand-ins for the streaming job's champions and decision sink ---------------------------


class _Model:
    #: rows whose window starts before the state's first record are judged at ``cold_threshold``
    version, threshold, cold_threshold, has_cold_threshold = 1, 0.5, 0.9, True
    quantiles = None  # no population: the reasons carry no percentile

    def __init__(self, names: list[str]) -> None:
        self.feature_names = tuple(names)

    def reasons(self, frame, *, top_k, feature_settings):
        return [[] for _ in range(len(frame))]


class PassThrough:
    """A stand-in champion: a score from a hash of the row's keys, every row kept."""

    def __init__(self, name: str, names: list[str], keys: list[str]) -> None:
        self.name, self.model, self.keys = name, _Model(names), keys

    def refresh(self, spark):
        return self.model

    def score(self, frame, *, keep):
        from pyspark.sql import functions as F

        score = (F.abs(F.xxhash64(*[F.col(k) for k in self.keys])) % 1000) / 1000
        return frame.select(*keep).withColumn("score", score).withColumn("fraud_type", F.lit("spam_robocall"))


class RecordingSink:
    """A decision sink that keeps what the job hands it: every row scoring above ``floor``."""

    def __init__(self, floor: float = -1.0) -> None:
        self.floor = floor
        self.rows: list[tuple[str, int, Any]] = []
        self.batches: dict[int, dict] = {}

    def min_score(self, kind, *, model_threshold=None):
        return self.floor

    def block_thresholds(self, rows):
        return rows["model_threshold"].to_numpy(dtype=float)

    def apply(self, candidates, *, kind, query, batch_id):
        self.rows.append((kind, batch_id, candidates.copy()))
        return {}

    def record_batch(self, query, batch_id, record):
        self.batches[batch_id] = record
