"""Configuration: YAML in ``configs/`` validated into frozen pydantic models.

Loading order: the YAML file (``--config`` or ``SIMGUARD_CONFIG``, else ``configs/default.yaml``),
then environment overrides ``SIMGUARD_<SECTION>__<FIELD>`` (``__`` separates nesting levels, e.g.
``SIMGUARD_KAFKA__BOOTSTRAP_SERVERS=broker:9092``). Values from the environment are parsed as YAML
scalars, so ``SIMGUARD_SPARK__CONF__spark.sql.shuffle.partitions=8`` gives the integer 8.

Every error is one line naming the file (or variable), the field and what was wrong.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from features.errors import ConfigError
from features.settings import FeatureSettings
from models.settings import ModelSettings
from streaming.blocklist.settings import BlocklistSettings, ServiceSettings
from streaming.policy import PolicySettings
from streaming.settings import StreamSettings

ENV_PREFIX = "SIMGUARD_"
#: environment variables with this prefix that are not field overrides
_ENV_NOT_OVERRIDES = {"SIMGUARD_CONFIG", "SIMGUARD_TEST_POSTGRES_URL"}

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "configs" / "default.yaml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TopicSettings(_Section):
    cdrs: str = "simguard.cdrs"
    dead_letter: str = "simguard.cdrs.dead-letter"
    #: per-operator compacted blocklist topics are named ``{blocklist_prefix}.{operator}``
    blocklist_prefix: str = "simguard.blocklist"


class KafkaSettings(_Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    topics: TopicSettings = TopicSettings()

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_mechanism and self.sasl_username and self.sasl_password
        ):
            raise ValueError(
                f"security_protocol {self.security_protocol} needs sasl_mechanism, "
                "sasl_username and sasl_password"
            )
        return self

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python clients (producer, consumer, admin)."""
        opts: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            "security_protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            opts["sasl_mechanism"] = self.sasl_mechanism
            opts["sasl_plain_username"] = self.sasl_username
            opts["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else None
            )
        if self.ssl_cafile:
            opts["ssl_cafile"] = str(self.ssl_cafile)
        return opts

    def spark_options(self) -> dict[str, str]:
        """Options for Spark's ``format("kafka")`` source and sink (``kafka.``-prefixed)."""
        opts = {
            "kafka.bootstrap.servers": self.bootstrap_servers,
            "kafka.security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism and self.sasl_password is not None:
            module = (
                "org.apache.kafka.common.security.plain.PlainLoginModule"
                if self.sasl_mechanism == "PLAIN"
                else "org.apache.kafka.common.security.scram.ScramLoginModule"
            )
            opts["kafka.sasl.mechanism"] = self.sasl_mechanism
            opts["kafka.sasl.jaas.config"] = (
                f'{module} required username="{self.sasl_username}" '
                f'password="{self.sasl_password.get_secret_value()}";'
            )
        if self.ssl_cafile:
            opts["kafka.ssl.truststore.location"] = str(self.ssl_cafile)
            opts["kafka.ssl.truststore.type"] = "PEM"
        return opts


class LocalBrokerSettings(_Section):
    """The single-node KRaft broker that ``simguard kafka up`` runs on this machine."""

    port: int = Field(9092, ge=1, le=65535)
    controller_port: int = Field(9093, ge=1, le=65535)
    heap_mb: int = Field(512, ge=128)
    partitions: int = Field(2, ge=1)
    start_timeout_s: float = Field(60.0, gt=0)


class SparkSettings(_Section):
    #: ``None`` leaves the master to ``spark-submit`` (YARN, Kubernetes, standalone)
    master: str | None = "local[2]"
    app_name: str = "simguard"
    #: how the Kafka connector reaches the driver and executors:
    #: ``local_jars`` — the jars ``make setup`` fetched from Maven Central (local runs);
    #: ``packages`` — ``spark.jars.packages`` at the installed pyspark version (cluster with
    #: access to Maven Central or a mirror); ``provided`` — already on the cluster's classpath.
    connector: Literal["local_jars", "packages", "provided"] = "local_jars"
    conf: dict[str, str | int | float | bool] = Field(default_factory=dict)


class MlflowSettings(_Section):
    #: ``None``: a SQLite store under ``home``; any MLflow tracking URI works unchanged
    tracking_uri: str | None = None
    registry_uri: str | None = None
    experiment: str = "simguard"


class DatabaseSettings(_Section):
    #: ``None``: SQLite under ``home``; ``postgresql+psycopg://user:pw@host/db`` for PostgreSQL
    url: SecretStr | None = None


class Settings(_Section):
    #: state folder: broker data and logs, MLflow store, database, checkpoints
    home: Path = Path(".simguard")
    #: JVM jars fetched by ``make setup`` (Kafka broker and Spark's Kafka connector)
    jars_dir: Path = Path(".simguard/jars")
    kafka: KafkaSettings = KafkaSettings()
    local_broker: LocalBrokerSettings = LocalBrokerSettings()
    spark: SparkSettings = SparkSettings()
    mlflow: MlflowSettings = MlflowSettings()
    database: DatabaseSettings = DatabaseSettings()
    features: FeatureSettings = FeatureSettings()
    models: ModelSettings = ModelSettings()
    stream: StreamSettings = StreamSettings()
    #: block / review thresholds and TTL per fraud type
    policy: PolicySettings = PolicySettings()
    #: operators (webhooks, API tokens), analysts, distribution channels
    blocklist: BlocklistSettings = BlocklistSettings()
    #: ``simguard serve``
    service: ServiceSettings = ServiceSettings()

    @property
    def home_abs(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def mlflow_tracking_uri(self) -> str:
        if self.mlflow.tracking_uri:
            return self.mlflow.tracking_uri
        return f"sqlite:///{self.home_abs / 'mlflow' / 'mlflow.db'}"

    @property
    def mlflow_artifact_root(self) -> str:
        return (self.home_abs / "mlflow" / "artifacts").as_uri()

    @property
    def database_url(self) -> str:
        if self.database.url is not None:
            return self.database.url.get_secret_value()
        return f"sqlite:///{self.home_abs / 'simguard.db'}"


def _set_path(tree: dict[str, Any], path: list[str], value: Any) -> None:
    node = tree
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[path[-1]] = value


def env_overrides(environ: Mapping[str, str]) -> list[tuple[str, list[str], Any]]:
    """(variable, field path, parsed value) for every ``SIMGUARD_A__B`` variable."""
    found = []
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or name in _ENV_NOT_OVERRIDES:
            continue
        parts = name[len(ENV_PREFIX) :].split("__")
        # field names are lower case; keys of the free-form spark.conf mapping keep their case
        lowered = [p.lower() for p in parts]
        path = lowered[:2] + parts[2:] if lowered[:2] == ["spark", "conf"] else lowered
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        if isinstance(value, (dict, list)):
            value = raw
        found.append((name, path, value))
    return found


def _describe(err: ValidationError, source: str, env_names: dict[tuple[str, ...], str]) -> str:
    first = err.errors()[0]
    loc = tuple(str(p) for p in first["loc"])
    field = ".".join(loc) or "(top level)"
    where = source
    for path, var in env_names.items():
        if loc[: len(path)] == path:
            where = f"environment variable {var}"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key (check the spelling against configs/default.yaml)"
    elif "input" in first and not isinstance(first["input"], (dict, list)):
        msg = f"{msg} (got {first['input']!r})"
    extra = f" (and {len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{where}: {field}: {msg}{extra}"


def load_settings(
    path: str | Path | None = None, *, environ: Mapping[str, str] | None = None
) -> Settings:
    """Load and validate settings; raise ``ConfigError`` with a one-line message."""
    environ = os.environ if environ is None else environ
    if path is None:
        path = environ.get("SIMGUARD_CONFIG") or DEFAULT_CONFIG
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}:{line}: {problem} (invalid YAML)") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    env_names: dict[tuple[str, ...], str] = {}
    for var, field_path, value in env_overrides(environ):
        _set_path(raw, field_path, value)
        env_names[tuple(field_path)] = var
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, str(path), env_names)) from None
