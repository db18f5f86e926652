"""The canonical CDR contract, defined once.

``CDR_FIELDS`` is the single definition. From it come the Spark ``StructType`` (Kafka parsing,
batch reads), the Arrow schema (Parquet files written by ``simguard ingest`` and ``simguard
simulate``) and the JSON form on Kafka (one object per record, ISO-8601 UTC timestamps with a
``Z``). ``tests/test_schema.py`` proves the three agree.

Field meanings follow 3GPP TS 32.298 MOCallRecord, simplified (see DOMAIN.md): ``a_number`` is the
calling line identity (CLI) as presented, ``in_trunk_type``/``in_trunk_id`` the incoming trunk
group (the key field for spoofing checks), ``cell_id``/``lac`` the serving location.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa

EventType = Literal["voice", "sms"]
EVENT_TYPES: tuple[str, ...] = ("voice", "sms")
RELEASE_CAUSES: tuple[str, ...] = (
    "answered",
    "no_answer",
    "busy",
    "rejected",
    "failed",
    "cancelled",
)
TRUNK_TYPES: tuple[str, ...] = ("subscriber", "domestic_interconnect", "international_gateway")

FieldKind = Literal["string", "timestamp", "double", "boolean", "enum"]


@dataclass(frozen=True)
class CdrField:
    name: str
    kind: FieldKind
    nullable: bool
    doc: str
    #: allowed values for ``kind == "enum"`` (stored as strings)
    values: tuple[str, ...] = ()


CDR_FIELDS: tuple[CdrField, ...] = (
    CdrField("record_id", "string", False, "unique id of the record at the reporting operator"),
    CdrField("operator", "string", False, "reporting operator (lower-case key from the numbering plan)"),
    CdrField("event_type", "enum", False, "voice call or SMS", EVENT_TYPES),
    CdrField("a_number", "string", False, "calling number / CLI as presented, E.164 with '+'"),
    CdrField("b_number", "string", False, "called number, E.164 with '+'"),
    CdrField(
        "a_imsi",
        "string",
        True,
        "IMSI of the calling SIM; null on trunk ingress, where the caller is not a subscriber here",
    ),
    CdrField("a_imei", "string", True, "IMEI of the calling device; null when not reported"),
    CdrField("start_time", "timestamp", False, "seizure time, UTC"),
    CdrField("answer_time", "timestamp", True, "answer time, UTC; null when not answered"),
    CdrField("duration_s", "double", False, "conversation seconds (0 when not answered)"),
    CdrField("release_cause", "enum", False, "how the call ended", RELEASE_CAUSES),
    CdrField("cell_id", "string", True, "serving cell; null on trunk ingress"),
    CdrField("lac", "string", True, "location area code; null on trunk ingress"),
    CdrField("in_trunk_type", "enum", False, "where the call entered the network", TRUNK_TYPES),
    CdrField("in_trunk_id", "string", True, "incoming trunk group id; null for subscriber ingress"),
    CdrField("a_roaming", "boolean", False, "the calling SIM is roaming abroad"),
)

FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in CDR_FIELDS)
FIELDS_BY_NAME: dict[str, CdrField] = {f.name: f for f in CDR_FIELDS}
REQUIRED_FIELDS: tuple[str, ...] = tuple(f.name for f in CDR_FIELDS if not f.nullable)
TIMESTAMP_FIELDS: tuple[str, ...] = tuple(f.name for f in CDR_FIELDS if f.kind == "timestamp")

_ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "enum": pa.string(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "double": pa.float64(),
    "boolean": pa.bool_(),
}


def arrow_schema() -> pa.Schema:
    """Arrow/Parquet schema of a canonical CDR file."""
    return pa.schema(
        [
            pa.field(f.name, _ARROW_TYPES[f.kind], nullable=f.nullable, metadata={"doc": f.doc})
            for f in CDR_FIELDS
        ]
    )


def spark_schema() -> Any:
    """Spark ``StructType`` of a canonical CDR (imported lazily: pure users need no Spark)."""
    from pyspark.sql import types as T

    spark_types = {
        "string": T.StringType(),
        "enum": T.StringType(),
        "timestamp": T.TimestampType(),
        "double": T.DoubleType(),
        "boolean": T.BooleanType(),
    }
    return T.StructType(
        [T.StructField(f.name, spark_types[f.kind], nullable=f.nullable) for f in CDR_FIELDS]
    )


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of one CDR as it travels on Kafka."""
    kinds = {
        "string": {"type": "string"},
        "timestamp": {"type": "string", "format": "date-time"},
        "double": {"type": "number"},
        "boolean": {"type": "boolean"},
    }
    props: dict[str, Any] = {}
    for f in CDR_FIELDS:
        spec = dict(kinds["string"]) if f.kind == "enum" else dict(kinds[f.kind])
        if f.kind == "enum":
            spec["enum"] = list(f.values)
        if f.nullable:
            spec = {"anyOf": [spec, {"type": "null"}]}
        spec["description"] = f.doc
        props[f.name] = spec
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "SIMGuard canonical CDR",
        "type": "object",
        "properties": props,
        "required": list(REQUIRED_FIELDS),
        "additionalProperties": False,
    }


def format_timestamp(value: dt.datetime) -> str:
    """ISO-8601 UTC with a ``Z`` and microseconds, the one timestamp form used on Kafka."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record_to_json(record: Mapping[str, Any]) -> bytes:
    """Serialise one canonical record (Python values) to its Kafka JSON value."""
    out: dict[str, Any] = {}
    for f in CDR_FIELDS:
        value = record.get(f.name)
        if value is not None and f.kind == "timestamp":
            value = format_timestamp(value)
        elif value is not None and f.kind == "double":
            value = float(value)
        out[f.name] = value
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def record_from_json(value: bytes | str) -> dict[str, Any]:
    """Parse a Kafka JSON value back to Python values (no validation; see ``validation``)."""
    obj = json.loads(value)
    out: dict[str, Any] = {}
    for f in CDR_FIELDS:
        v = obj.get(f.name)
        if v is not None and f.kind == "timestamp":
            v = dt.datetime.fromisoformat(v)
        out[f.name] = v
    return out
