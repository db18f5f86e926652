"""``simguard doctor``: one line per platform component, with a fix-it hint when one is missing."""

from __future__ import annotations

from dataclasses import dataclass

from features.errors import SimGuardError
from pipeline.config import Settings


@dataclass(frozen=True)
class Check:
    component: str
    ok: bool
    detail: str
    hint: str = ""


def check_java() -> Check:
    from pipeline.broker import java_version

    try:
        path, major = java_version()
    except SimGuardError as exc:
        return Check("java", False, str(exc), "install Java 17: apt-get install openjdk-17-jre-headless")
    if major < 17:
        return Check("java", False, f"Java {major} at {path}", "Kafka 4 and Spark 4 need Java 17 or later")
    return Check("java", True, f"Java {major} at {path}")


def check_jars(settings: Settings) -> Check:
    from pipeline.local import local_broker
    from pipeline.spark import connector_jars, features_jar, pyspark_version

    broker = local_broker(settings)
    try:
        kafka = sorted(broker.jars.glob("kafka_2.13-*.jar"))
        if not kafka:
            raise SimGuardError(f"Kafka broker jars missing in {broker.jars}")
        spark = connector_jars(broker.jars.parent)
        features_jar(broker.jars.parent)
    except SimGuardError as exc:
        return Check("jars", False, str(exc).split(": run")[0], "run `make setup`")
    return Check(
        "jars",
        True,
        f"{kafka[0].stem}, spark-sql-kafka {pyspark_version()} (+{len(spark) - 1} deps), simguard-features "
        f"in {broker.jars.parent}",
    )


def check_kafka(settings: Settings) -> Check:
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    servers = settings.kafka.bootstrap_servers
    try:
        admin = KafkaAdminClient(
            **settings.kafka.client_options(),
            request_timeout_ms=4000,
            client_id="simguard-doctor",
        )
        try:
            topics = admin.list_topics()
        finally:
            admin.close()
    except (KafkaError, OSError, ValueError) as exc:
        return Check(
            "kafka",
            False,
            f"cannot reach {servers} ({type(exc).__name__})",
            "start the local broker with `make kafka-up`, or set kafka.bootstrap_servers",
        )
    return Check("kafka", True, f"{servers}, {len(topics)} topics")


def check_mlflow(settings: Settings) -> Check:
    uri, shown, redact = settings.mlflow_tracking_uri, settings.shown_mlflow_uri, settings.redactor()
    try:
        if uri.startswith("sqlite:///"):
            from pathlib import Path

            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        import logging

        from mlflow.tracking import MlflowClient

        # the SQLite store logs its table creation at INFO; doctor prints one line per component
        logging.getLogger("mlflow").setLevel(logging.WARNING)

        client = MlflowClient(tracking_uri=uri, registry_uri=settings.mlflow.registry_uri or uri)
        experiments = client.search_experiments(max_results=100)
        models = client.search_registered_models(max_results=100)
    except Exception as exc:
        first = redact((str(exc).splitlines() or [type(exc).__name__])[0])[:160]
        return Check("mlflow", False, f"{shown}: {first}", "check mlflow.tracking_uri")
    return Check("mlflow", True, f"{shown}, {len(experiments)} experiments, {len(models)} registered models")


def check_database(settings: Settings) -> Check:
    import sqlalchemy as sa

    url, shown, redact = settings.database_url, settings.shown_database_url, settings.redactor()
    try:
        if url.startswith("sqlite:///"):
            from pathlib import Path

            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        first = redact((str(exc).splitlines() or [type(exc).__name__])[0])[:160]
        return Check("database", False, f"{shown}: {first}", "check database.url")
    return Check("database", True, shown)


def check_spark() -> Check:
    from pipeline.spark import pyspark_version

    try:
        version = pyspark_version()
    except ImportError:
        return Check("spark", False, "pyspark is not installed", "run `make setup`")
    return Check("spark", True, f"pyspark {version}")


def run_checks(settings: Settings) -> list[Check]:
    return [
        check_java(),
        check_spark(),
        check_jars(settings),
        check_kafka(settings),
        check_mlflow(settings),
        check_database(settings),
    ]
