"""Batch feature job: canonical CDR Parquet in, per-SIM and per-call feature tables out.

Training, evaluation, backfill and batch scoring all read features through this job, which
applies the same definitions (``features.sim``, ``features.calls``) as the streaming job.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from features.calls import build_call_features
from features.errors import SchemaError
from features.numbering import NumberingPlan
from features.schema import FIELD_NAMES, spark_schema
from features.settings import FeatureSettings
from features.sim_state import build_sim_features

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

SIM_TABLE = "sim_features"
CALL_TABLE = "call_features"


@dataclass(frozen=True)
class FeatureTables:
    sim: Path
    calls: Path


def location_uri(where: str | Path) -> str:
    """A folder given as a local path or a URI (``file:``, ``hdfs://``, ``s3a://``) as a URI."""
    text = str(where)
    if len(urlsplit(text).scheme) > 1:  # a one-letter scheme is a drive letter
        return text
    return Path(text).expanduser().resolve().as_uri()


def read_cdrs(spark: SparkSession, cdr_dir: str | Path) -> DataFrame:
    """Canonical CDRs from a Parquet folder (``simguard ingest`` / ``simguard simulate`` output),
    given as a local path or a URI of any Hadoop file system Spark can read."""
    uri = location_uri(cdr_dir)
    local = urlsplit(uri).scheme == "file"
    where = unquote(urlsplit(uri).path) if local else uri
    if local and (not Path(where).exists() or not any(Path(where).rglob("*.parquet"))):
        raise SchemaError(f"no CDR Parquet files under {where}: run `simguard simulate` or `simguard ingest`")
    from pyspark.errors import AnalysisException

    try:
        return spark.read.schema(spark_schema()).parquet(where).select(*FIELD_NAMES)
    except AnalysisException as exc:  # a missing remote folder
        raise SchemaError(f"no CDR Parquet files at {uri}: {str(exc).splitlines()[0]}") from None


def build_features(
    spark: SparkSession,
    cdr_dir: str | Path,
    *,
    features: FeatureSettings,
    out_dir: str | Path,
    plan: NumberingPlan | None = None,
    full_days: int | None = None,
    between: tuple[dt.datetime, dt.datetime] | None = None,
) -> FeatureTables:
    """Write ``<out>/sim_features`` and ``<out>/call_features`` (Parquet) and return their paths.
    ``full_days``: the last days (validation and test) keep every SIM scoring point; the days
    before keep a sample (``features.train_points_per_day``). ``None``: every point everywhere.
    ``between`` (start, end): the CDRs that start in ``[start, end)`` alone, the rows a stream
    started at ``start`` with an empty state computes."""
    from pyspark.sql import functions as F

    out = Path(out_dir)
    cdrs = read_cdrs(spark, cdr_dir)
    if between is not None:
        start, end = (F.lit(t.isoformat()).cast("timestamp") for t in between)
        cdrs = cdrs.where((F.col("start_time") >= start) & (F.col("start_time") < end))
    tables = FeatureTables(sim=out / SIM_TABLE, calls=out / CALL_TABLE)
    sample_before = None
    if full_days is not None:
        last = cdrs.agg(F.max(F.col("start_time").cast("double"))).first()[0]
        if last is not None:
            sample_before = (last // 86400 - (full_days - 1)) * 86400
    sim = build_sim_features(cdrs, settings=features, plan=plan, sample_before=sample_before)
    sim.write.mode("overwrite").parquet(str(tables.sim))
    build_call_features(cdrs, settings=features, plan=plan).write.mode("overwrite").parquet(str(tables.calls))
    return tables
