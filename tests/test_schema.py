"""The three forms of the CDR contract agree: Spark StructType, Arrow/Parquet schema, JSON."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.schema import (
    CDR_FIELDS,
    FIELD_NAMES,
    REQUIRED_FIELDS,
    arrow_schema,
    format_timestamp,
    json_schema,
    record_from_json,
    record_to_json,
    spark_schema,
)

UTC = dt.UTC

RECORDS: list[dict[str, Any]] = [
    {
        "record_id": "vt-0001",
        "operator": "viettel",
        "event_type": "voice",
        "a_number": "+84912345678",
        "b_number": "+84321234567",
        "a_imsi": "452040000000001",
        "a_imei": "356938035643809",
        "start_time": dt.datetime(2024, 4, 22, 10, 56, 0, 123456, tzinfo=UTC),
        "answer_time": dt.datetime(2024, 4, 22, 10, 56, 7, 1, tzinfo=UTC),  # one microsecond
        "duration_s": 296.021628,
        "release_cause": "answered",
        "cell_id": "45204-1201-77",
        "lac": "1201",
        "in_trunk_type": "subscriber",
        "in_trunk_id": None,
        "a_roaming": False,
    },
    {
        # trunk ingress: every nullable field null; a time across a DST change elsewhere
        "record_id": "vt-0002",
        "operator": "viettel",
        "event_type": "sms",
        "a_number": "+882123456789",
        "b_number": "+84912345678",
        "a_imsi": None,
        "a_imei": None,
        "start_time": dt.datetime(2024, 3, 31, 1, 30, tzinfo=UTC),
        "answer_time": None,
        "duration_s": 0.0,
        "release_cause": "cancelled",
        "cell_id": None,
        "lac": None,
        "in_trunk_type": "international_gateway",
        "in_trunk_id": "IGW-HN-07",
        "a_roaming": True,
    },
    {
        # non-ASCII text and a time after 2038 (32-bit epoch overflow)
        "record_id": "vt-0003-\u00e9\u4e2d",
        "operator": "mobifone",
        "event_type": "voice",
        "a_number": "+84701234567",
        "b_number": "113",
        "a_imsi": "452010000000009",
        "a_imei": None,
        "start_time": dt.datetime(2040, 1, 1, 0, 0, 0, 999999, tzinfo=UTC),
        "answer_time": dt.datetime(2040, 1, 1, 0, 0, 1, tzinfo=UTC),
        "duration_s": 0.5,
        "release_cause": "answered",
        "cell_id": "c",
        "lac": "l",
        "in_trunk_type": "domestic_interconnect",
        "in_trunk_id": "DI-1",
        "a_roaming": False,
    },
]

# kind -> (Spark simpleString, Arrow type, JSON Schema type)
KIND_TYPES = {
    "string": ("string", pa.string(), "string"),
    "enum": ("string", pa.string(), "string"),
    "timestamp": ("timestamp", pa.timestamp("us", tz="UTC"), "string"),
    "double": ("double", pa.float64(), "number"),
    "boolean": ("boolean", pa.bool_(), "boolean"),
}


def _json_type(spec: dict[str, Any]) -> tuple[str, bool]:
    """(JSON type, nullable) of one property of the JSON Schema."""
    if "anyOf" in spec:
        (inner,) = [s for s in spec["anyOf"] if s.get("type") != "null"]
        return inner["type"], True
    return spec["type"], False


def test_names_order_nullability_and_types_agree() -> None:
    spark = spark_schema()
    arrow = arrow_schema()
    props = json_schema()["properties"]
    assert [f.name for f in spark.fields] == list(FIELD_NAMES) == arrow.names == list(props)
    required = set(json_schema()["required"])
    assert required == set(REQUIRED_FIELDS)
    for f, sf, af in zip(CDR_FIELDS, spark.fields, arrow, strict=True):
        spark_type, arrow_type, json_type = KIND_TYPES[f.kind]
        assert sf.dataType.simpleString() == spark_type, f.name
        assert af.type == arrow_type, f.name
        assert _json_type(props[f.name]) == (json_type, f.nullable), f.name
        assert sf.nullable is af.nullable is f.nullable is (f.name not in required), f.name
        if f.kind == "enum":
            spec = props[f.name]["anyOf"][0] if f.nullable else props[f.name]
            assert tuple(spec["enum"]) == f.values
    assert json_schema()["additionalProperties"] is False


def test_json_round_trip_is_exact() -> None:
    for record in RECORDS:
        value = record_to_json(record)
        assert set(json.loads(value)) == set(FIELD_NAMES)
        assert record_from_json(value) == record
    assert (
        format_timestamp(dt.datetime(2024, 1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))))
        == "2024-01-01T00:00:00.000000Z"
    )


def _write_parquet(path: Path) -> None:
    table = pa.Table.from_pylist(RECORDS, schema=arrow_schema())
    pq.write_table(table, path)
    # the file carries the contract, nullability included
    assert pq.read_schema(path).equals(arrow_schema(), check_metadata=True)


def _comparable(df: Any) -> list[tuple[Any, ...]]:
    """Rows with timestamps as exact microseconds since the epoch (independent of any zone)."""
    from pyspark.sql import functions as F

    cols = [F.unix_micros(F.col(f.name)).alias(f.name) if f.kind == "timestamp" else F.col(f.name) for f in CDR_FIELDS]
    return [tuple(r) for r in df.select(*cols).orderBy("record_id").collect()]


def _expected() -> list[tuple[Any, ...]]:
    epoch = dt.datetime(1970, 1, 1, tzinfo=UTC)
    rows = []
    for record in RECORDS:
        row = []
        for f in CDR_FIELDS:
            value = record[f.name]
            if f.kind == "timestamp" and value is not None:
                value = (value - epoch) // dt.timedelta(microseconds=1)
            row.append(value)
        rows.append(tuple(row))
    return sorted(rows, key=lambda r: r[0])


@pytest.mark.spark
def test_spark_reads_json_and_parquet_identically(spark: Any, tmp_path: Path) -> None:
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    values = [(record_to_json(r).decode("utf-8"),) for r in RECORDS]
    raw = spark.createDataFrame(values, T.StructType([T.StructField("value", T.StringType())]))
    from_kafka = raw.select(F.from_json("value", spark_schema(), {"mode": "FAILFAST"}).alias("r")).select("r.*")

    path = tmp_path / "cdrs.parquet"
    _write_parquet(path)
    from_parquet = spark.read.parquet(str(path))

    assert [(f.name, f.dataType) for f in from_parquet.schema.fields] == [
        (f.name, f.dataType) for f in spark_schema().fields
    ]
    assert from_kafka.schema == spark_schema().__class__(
        [T.StructField(f.name, f.dataType, True) for f in spark_schema().fields]
    )  # from_json makes every field nullable; the validator enforces the required ones
    json_rows, parquet_rows = _comparable(from_kafka), _comparable(from_parquet)
    assert json_rows == parquet_rows == _expected()


@pytest.mark.spark
def test_spark_timestamps_do_not_depend_on_the_session_zone(spark: Any, tmp_path: Path) -> None:
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    path = tmp_path / "cdrs.parquet"
    _write_parquet(path)
    values = [(record_to_json(r).decode("utf-8"),) for r in RECORDS]
    previous = spark.conf.get("spark.sql.session.timeZone")
    try:
        spark.conf.set("spark.sql.session.timeZone", "Asia/Ho_Chi_Minh")
        raw = spark.createDataFrame(values, T.StructType([T.StructField("value", T.StringType())]))
        from_kafka = raw.select(F.from_json("value", spark_schema()).alias("r")).select("r.*")
        assert _comparable(from_kafka) == _comparable(spark.read.parquet(str(path))) == _expected()
    finally:
        spark.conf.set("spark.sql.session.timeZone", previous)
