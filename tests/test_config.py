"""Config: validated YAML with environment overrides, one-line errors (unit tier)."""

from __future__ import annotations

from pathlib import Path

import pytest

from features.errors import ConfigError
from pipeline.config import PROJECT_ROOT, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_default_and_production_example_validate() -> None:
    default = load_settings(PROJECT_ROOT / "configs" / "default.yaml", environ={})
    assert default.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert default.spark.master == "local[2]"
    prod = load_settings(PROJECT_ROOT / "configs" / "production.example.yaml", environ={})
    assert prod.kafka.security_protocol == "SASL_SSL"
    assert prod.spark.master is None
    # secrets never show in a repr or a log line
    assert "change-me" not in repr(prod.kafka) and "change-me" not in repr(prod.database)
    assert prod.database_url.startswith("postgresql+psycopg://")
    assert "kafka.sasl.jaas.config" in prod.kafka.spark_options()


def test_unknown_key_is_one_line_naming_file_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, "kafka:\n  bootstrap_server: host:9092\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path, environ={})
    msg = str(err.value)
    assert "\n" not in msg
    assert str(path) in msg and "kafka.bootstrap_server" in msg and "unknown key" in msg


def test_wrong_type_is_one_line_naming_field_and_value(tmp_path: Path) -> None:
    path = write(tmp_path, "local_broker:\n  port: not-a-port\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path, environ={})
    msg = str(err.value)
    assert "\n" not in msg and "local_broker.port" in msg and "not-a-port" in msg


def test_bad_enum_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"spark\.connector"):
        load_settings(write(tmp_path, "spark:\n  connector: maven\n"), environ={})
    with pytest.raises(ConfigError, match=r"line \d+: expected"):
        load_settings(write(tmp_path, "kafka:\n  - [unclosed\n"), environ={})
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml", environ={})


def test_environment_overrides_nested_fields(tmp_path: Path) -> None:
    path = write(tmp_path, "kafka:\n  bootstrap_servers: a:1\n")
    env = {
        "SIMGUARD_KAFKA__BOOTSTRAP_SERVERS": "b:2,c:3",
        "SIMGUARD_LOCAL_BROKER__PORT": "19092",
        "SIMGUARD_SPARK__CONF__spark.sql.shuffle.partitions": "8",
        "SIMGUARD_CONFIG": "ignored-here",
        "OTHER": "x",
    }
    s = load_settings(path, environ=env)
    assert s.kafka.bootstrap_servers == "b:2,c:3"
    assert s.kafka.client_options()["bootstrap_servers"] == ["b:2", "c:3"]
    assert s.local_broker.port == 19092
    assert s.spark.conf["spark.sql.shuffle.partitions"] == "8"  # Spark takes conf values as strings


def test_bad_environment_override_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, "{}\n"), environ={"SIMGUARD_LOCAL_BROKER__PORT": "99999"})
    assert "SIMGUARD_LOCAL_BROKER__PORT" in str(err.value)
    with pytest.raises(ConfigError, match="unknown key"):
        load_settings(write(tmp_path, "{}\n"), environ={"SIMGUARD_KAFKA__NO_SUCH": "1"})


def test_sasl_without_credentials_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "kafka:\n  security_protocol: SASL_SSL\n")
    with pytest.raises(ConfigError, match="sasl_mechanism"):
        load_settings(path, environ={})


def test_settings_are_frozen() -> None:
    s = load_settings(PROJECT_ROOT / "configs" / "default.yaml", environ={})
    with pytest.raises(Exception, match="frozen"):
        s.kafka.bootstrap_servers = "x"  # type: ignore[misc]
    assert s.database_url.startswith("sqlite:///") and s.mlflow_tracking_uri.startswith("sqlite:///")


def test_openmp_threads_wait_passively_in_the_cli_and_the_spark_workers() -> None:
    """LightGBM's OpenMP threads must not spin beside Spark: the CLI sets the wait policy before
    anything loads libgomp, and the settings hand it to Spark's Python workers."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    shown = subprocess.run(
        [sys.executable, "-c", "import os, pipeline.cli; print(os.environ['OMP_WAIT_POLICY'])"],
        env=env, capture_output=True, text=True, check=True, cwd=PROJECT_ROOT,
    )
    assert shown.stdout.strip() == "passive"
    for name in ("default.yaml", "production.example.yaml"):
        conf = load_settings(PROJECT_ROOT / "configs" / name, environ={}).spark.conf
        assert conf["spark.executorEnv.OMP_WAIT_POLICY"] == "passive", name
