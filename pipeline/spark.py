"""The one place that builds the SparkSession.

Master, connector and Spark options come from ``SparkSettings``, so the same code runs locally
(``local[2]``) and under ``spark-submit`` on YARN, Kubernetes or a standalone cluster (set
``spark.master: null`` and let ``spark-submit --master`` decide).

The official Kafka connector ``org.apache.spark:spark-sql-kafka-0-10_2.13`` is added at exactly
the installed pyspark version, with Delta Lake (the stream's state tables):

- ``local_jars``: from the cache that ``make setup`` filled from Maven Central
  (``<jars_dir>/spark-kafka``), minus jars pyspark already ships;
- ``packages``: as ``spark.jars.packages`` (the cluster resolves it from Maven Central or its
  mirror);
- ``provided``: the cluster image has it on the classpath already.

SIMGuard's own jar (the per-SIM features' state processor, ``features/jvm``, built by ``make
setup``) always goes with ``spark.jars``: the driver loads it and Spark ships it to executors.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from features.errors import PlatformError
from pipeline.config import SparkSettings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

CONNECTOR_ARTIFACT = "spark-sql-kafka-0-10_2.13"
#: Delta Lake, the stream's state tables (its version follows deploy/jvm/spark-kafka/pom.xml)
DELTA_COORDINATES = "io.delta:delta-spark_2.13:4.1.0"
#: what Delta needs in every session; ``spark.conf`` may override any of them
DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    # the state table is small per micro-batch: a few partitions rebuild its snapshot
    "spark.databricks.delta.snapshotPartitions": "2",
    # the job vacuums its own state table, which nothing else reads, after an hour
    "spark.databricks.delta.retentionDurationCheck.enabled": "false",
}


def pyspark_version() -> str:
    import pyspark

    return pyspark.__version__


def connector_coordinates() -> str:
    return f"org.apache.spark:{CONNECTOR_ARTIFACT}:{pyspark_version()}"


def _artifact(jar: Path) -> str:
    """``kafka-clients-3.9.1.jar`` -> ``kafka-clients``."""
    return re.sub(r"-\d[\w.\-]*$", "", jar.stem)


def connector_jars(jars_dir: Path) -> list[Path]:
    """The connector jar and the dependencies pyspark does not already ship."""
    folder = Path(jars_dir) / "spark-kafka"
    version = pyspark_version()
    main = folder / f"{CONNECTOR_ARTIFACT}-{version}.jar"
    if not main.exists():
        found = sorted(p.name for p in folder.glob(f"{CONNECTOR_ARTIFACT}-*.jar"))
        hint = f" (found {', '.join(found)})" if found else ""
        raise PlatformError(
            f"Spark Kafka connector {version} not found in {folder}{hint}: run `make setup`"
        )
    import pyspark

    shipped = {_artifact(p) for p in (Path(pyspark.__file__).parent / "jars").glob("*.jar")}
    return sorted(p for p in folder.glob("*.jar") if _artifact(p) not in shipped)


def features_jar(jars_dir: Path) -> Path:
    """The jar ``make setup`` builds from ``features/jvm`` against the installed pyspark."""
    jar = Path(jars_dir) / "simguard" / "simguard-features.jar"
    if not jar.exists():
        raise PlatformError(f"SIMGuard's feature processor {jar} not found: run `make setup`")
    return jar.resolve()


def build_spark(settings: SparkSettings, *, jars_dir: Path) -> SparkSession:
    """Create (or join, under ``spark-submit``) the SparkSession with the Kafka connector."""
    from pyspark.sql import SparkSession

    # Python workers must run the interpreter that has SIMGuard's dependencies (numpy, pandas,
    # lightgbm); on a cluster, set PYSPARK_PYTHON or spark.pyspark.python to the shipped env.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(settings.app_name)
    if settings.master:
        builder = builder.master(settings.master)
    jars = [features_jar(jars_dir)]
    if settings.connector == "local_jars":
        jars += connector_jars(jars_dir)
    builder = builder.config("spark.jars", ",".join(str(p) for p in jars))
    if settings.connector == "packages":
        builder = builder.config("spark.jars.packages", f"{connector_coordinates()},{DELTA_COORDINATES}")
    for key, value in DELTA_CONF.items():
        builder = builder.config(key, value)
    for key, value in settings.conf.items():
        builder = builder.config(key, str(value).lower() if isinstance(value, bool) else str(value))
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
