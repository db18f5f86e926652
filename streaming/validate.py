"""Parse and validate Kafka CDR values inside Spark with the one validation definition.

``features.validation.validate_json_values`` runs on each Arrow batch through ``mapInPandas``.
Every input row comes out exactly once: either valid (canonical typed columns) or dead
(``reason_code``, ``reason``, the raw value as text, and the source topic, partition and offset),
so records in = valid + dead-lettered, always.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pandas as pd

from features.schema import FIELD_NAMES
from features.validation import ValidationRules, validate_json_values

if TYPE_CHECKING:
    from pyspark.sql import DataFrame
    from pyspark.sql.types import StructType

VALID = "_valid"
SOURCE_COLUMNS = ("source_topic", "source_partition", "source_offset", "source_timestamp")
DEAD_COLUMNS = ("reason_code", "reason", "raw")


def validated_schema() -> StructType:
    from pyspark.sql import types as T

    from features.schema import spark_schema

    fields = [T.StructField(f.name, f.dataType, True) for f in spark_schema().fields]
    fields += [
        T.StructField(VALID, T.BooleanType(), False),
        T.StructField("reason_code", T.StringType(), True),
        T.StructField("reason", T.StringType(), True),
        T.StructField("raw", T.StringType(), True),
        T.StructField("source_topic", T.StringType(), False),
        T.StructField("source_partition", T.IntegerType(), False),
        T.StructField("source_offset", T.LongType(), False),
        # when the record landed in Kafka (its log timestamp): processing latency starts here
        T.StructField("source_timestamp", T.TimestampType(), True),
    ]
    return T.StructType(fields)


def _validate_batches(rules: ValidationRules):
    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            if batch.empty:
                continue
            now = dt.datetime.now(dt.UTC)
            result = validate_json_values(list(batch["value"]), now=now, rules=rules)
            source = batch[["topic", "partition", "offset", "timestamp"]].reset_index(drop=True)
            source.columns = list(SOURCE_COLUMNS)
            # valid rows keep their typed columns; a dead row's fields are null (their text
            # travels in `raw`), its verdict in the dead-letter columns
            out = result.valid.reindex(range(len(batch)))
            out[VALID] = out.index.isin(result.valid.index)
            for c in DEAD_COLUMNS:
                out[c] = result.dead[c].astype(object).reindex(out.index)
            out = out.join(source)
            yield out[[*FIELD_NAMES, VALID, *DEAD_COLUMNS, *SOURCE_COLUMNS]]

    return run


def validate_stream(raw: DataFrame, *, rules: ValidationRules) -> DataFrame:
    """Kafka rows (``value``, ``topic``, ``partition``, ``offset``, ``timestamp``) -> validated rows."""
    return raw.select("value", "topic", "partition", "offset", "timestamp").mapInPandas(
        _validate_batches(rules), schema=validated_schema()
    )


def dead_letter_payload(frame: DataFrame) -> DataFrame:
    """Kafka sink rows for the dead-letter topic: key = source coordinates, JSON value."""
    from pyspark.sql import functions as F

    key = F.concat_ws(":", "source_topic", "source_partition", "source_offset")
    value = F.to_json(
        F.struct(
            "reason_code",
            "reason",
            "raw",
            F.struct(
                F.col("source_topic").alias("topic"),
                F.col("source_partition").alias("partition"),
                F.col("source_offset").alias("offset"),
            ).alias("source"),
        )
    )
    return frame.where(~F.col(VALID)).select(key.alias("key"), value.alias("value"))


def parse_dead_letter(value: bytes) -> dict:
    """One dead-letter record back as a dict (for consumers and tests)."""
    return json.loads(value)
