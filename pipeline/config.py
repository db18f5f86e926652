"""Configuration: YAML in ``configs/`` validated into frozen pydantic models (pydantic-settings).

Loading order: the YAML file (``--config`` or ``SIMGUARD_CONFIG``, else the shipped
``configs/default.yaml``), then environment overrides ``SIMGUARD_<SECTION>__<FIELD>`` (``__``
separates nesting levels, e.g. ``SIMGUARD_KAFKA__BOOTSTRAP_SERVERS=broker:9092``). A value from the
environment is taken as the string it is for every string-typed field (passwords, tokens, URLs:
``987654321``, ``yes`` and ``null`` stay strings); numbers and booleans are parsed by their fields.

Every error is one line naming the file (or variable), the field and what was wrong; it never
shows a secret's value.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict, YamlConfigSettingsSource

from console.settings import ConsoleSettings
from features.errors import ConfigError
from features.redact import Redactor, mask_url, url_secrets
from features.resources import config_file
from features.settings import FeatureSettings
from models.settings import ModelSettings
from streaming.blocklist.settings import AuditSettings, BlocklistSettings, ServiceSettings
from streaming.policy import PolicySettings
from streaming.settings import StreamSettings

ENV_PREFIX = "SIMGUARD_"
ENV_NESTED_DELIMITER = "__"
#: environment variables with this prefix that are not config keys
ENV_NOT_KEYS = {"SIMGUARD_CONFIG", "SIMGUARD_TEST_POSTGRES_URL"}
#: keys of this free-form mapping keep their case from the environment (Spark conf names)
_CASE_KEPT = ("spark", "conf")

#: the source checkout (tests and the local jars); installed packages find their files through
#: ``features.resources`` instead
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = config_file("default.yaml")


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
                f'{module} required username="{jaas_quote(self.sasl_username or "")}" '
                f'password="{jaas_quote(self.sasl_password.get_secret_value())}";'
            )
        if self.ssl_cafile:
            opts["kafka.ssl.truststore.location"] = str(self.ssl_cafile)
            opts["kafka.ssl.truststore.type"] = "PEM"
        return opts


def jaas_quote(value: str) -> str:
    """``value`` for a double-quoted JAAS option (Kafka parses it with Java's StreamTokenizer)."""
    return (
        value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    )


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


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        extra="forbid",
        frozen=True,
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        case_sensitive=False,
    )

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
    #: ``simguard console``: the analysts' web app
    console: ConsoleSettings = ConsoleSettings()
    #: the regulator's audit: log retention, number pseudonyms
    audit: AuditSettings = AuditSettings()

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

    @property
    def shown_database_url(self) -> str:
        """``database_url`` with its password masked, for anything a person sees."""
        return mask_url(self.database_url) or ""

    @property
    def shown_mlflow_uri(self) -> str:
        """``mlflow_tracking_uri`` with its credentials masked."""
        return mask_url(self.mlflow_tracking_uri) or ""

    def secret_values(self) -> list[str]:
        """Every secret these settings hold, for :class:`features.redact.Redactor`."""
        found: list[str] = []
        if self.kafka.sasl_password is not None:
            found.append(self.kafka.sasl_password.get_secret_value())
        for uri in (self.database.url.get_secret_value() if self.database.url else None,
                    self.mlflow.tracking_uri, self.mlflow.registry_uri):
            found += url_secrets(uri)
        for op in self.blocklist.operators.values():
            found += [t.get_secret_value() for t in (op.api_token, op.webhook_token) if t is not None]
            found += url_secrets(str(op.webhook_url) if op.webhook_url else None)
        found += [t.get_secret_value() for t in self.blocklist.analysts.values()]
        if self.console.secret_key is not None:
            found.append(self.console.secret_key.get_secret_value())
        if self.audit.pseudonym_key is not None:
            found.append(self.audit.pseudonym_key.get_secret_value())
        return found

    def redactor(self) -> Redactor:
        return Redactor(self.secret_values())


class _YamlFile(YamlConfigSettingsSource):
    """The config file, with one-line errors for unreadable files and invalid YAML."""

    def _read_file(self, file_path: Path) -> dict[str, Any]:
        try:
            text = Path(file_path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{file_path}: cannot read config file ({exc.strerror})") from None
        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f" line {mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or "invalid YAML"
            raise ConfigError(f"{file_path}:{line}: {problem} (invalid YAML)") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{file_path}: the top level must be a mapping of sections")
        return raw


class _Environment(EnvSettingsSource):
    """``SIMGUARD_*`` variables from a given mapping (``os.environ`` by default)."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = {k: v for k, v in environ.items() if k.upper() not in ENV_NOT_KEYS}
        super().__init__(Settings)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {k.lower(): v for k, v in self._environ.items()}


def _key_path(name: str) -> list[str]:
    """``SIMGUARD_A__B__c`` -> ``["a", "b", "c"]`` (Spark conf names keep their case)."""
    parts = name[len(ENV_PREFIX) :].split(ENV_NESTED_DELIMITER)
    lowered = [p.lower() for p in parts]
    return lowered[:2] + parts[2:] if tuple(lowered[:2]) == _CASE_KEPT else lowered


def _env_keys(environ: Mapping[str, str]) -> dict[tuple[str, ...], str]:
    """Config key path -> variable name, for every ``SIMGUARD_*`` variable that is a config key."""
    return {
        tuple(_key_path(name)): name
        for name in sorted(environ)
        if name.upper().startswith(ENV_PREFIX) and name.upper() not in ENV_NOT_KEYS
    }


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _spark_conf_from_env(env_keys: Mapping[tuple[str, ...], str], environ: Mapping[str, str]) -> dict[str, str]:
    return {path[2]: environ[var] for path, var in env_keys.items() if len(path) == 3 and path[:2] == _CASE_KEPT}


def _unknown_env_key(env_keys: Mapping[tuple[str, ...], str]) -> str | None:
    """The first variable whose top-level key is not a section (pydantic-settings ignores those)."""
    for path, var in env_keys.items():
        if path[0] not in Settings.model_fields:
            return var
    return None


def _unwrap(annotation: Any) -> Any:
    """``X | None`` -> ``X``."""
    if get_origin(annotation) in (Union, UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _is_secret(loc: Iterable[str]) -> bool:
    """Whether the field at ``loc`` (a path of keys into ``Settings``) holds a secret."""
    annotation: Any = Settings
    for part in loc:
        annotation = _unwrap(annotation)
        fields = getattr(annotation, "model_fields", None)
        if fields is not None:
            if part not in fields:
                return False
            annotation = fields[part].annotation
        elif get_origin(annotation) is dict:
            annotation = get_args(annotation)[1]
        else:
            break
    return "SecretStr" in repr(annotation)


def _describe(err: ValidationError, source: str, env_names: Mapping[tuple[str, ...], str]) -> str:
    first = err.errors()[0]
    loc = tuple(str(p) for p in first["loc"])
    field = ".".join(loc) or "(top level)"
    where = source
    for path, var in env_names.items():
        if loc[: len(path)] == path or tuple(p.lower() for p in loc[: len(path)]) == path:
            where = f"environment variable {var}"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key (check the spelling against configs/default.yaml)"
    elif "input" in first and not isinstance(first["input"], (dict, list)):
        value = first["input"]
        if _is_secret(loc):
            msg = f"{msg} (the value is a secret: not shown)"
        else:
            shown = mask_url(value) if isinstance(value, str) and "://" in value else value
            msg = f"{msg} (got {shown!r})"
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
    if not path.is_file():
        reason = "is a directory" if path.is_dir() else "No such file or directory"
        raise ConfigError(f"{path}: cannot read config file ({reason})")
    env_names = _env_keys(environ)
    unknown = _unknown_env_key(env_names)
    if unknown is not None:
        raise ConfigError(
            f"environment variable {unknown}: {'.'.join(_key_path(unknown))}: "
            "unknown key (check the spelling against configs/default.yaml)"
        )
    raw = _YamlFile(Settings, yaml_file=path)()
    from_env = _Environment(environ)()
    conf = _spark_conf_from_env(env_names, environ)
    if conf:  # the variables keep the case pydantic-settings folds (spark.sql.session.timeZone)
        from_env.setdefault("spark", {}).setdefault("conf", {})
        from_env["spark"]["conf"] = {k: v for k, v in from_env["spark"]["conf"].items() if k.lower() not in
                                     {c.lower() for c in conf}} | conf
    try:
        return Settings.model_validate(_merge(raw, from_env))
    except ValidationError as exc:
        raise ConfigError(_describe(exc, str(path), env_names)) from None
