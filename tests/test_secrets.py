"""Secrets given through config files and the environment: taken as strings, escaped in the JAAS
option, never in a config error, masked in URLs and log records (unit tier).

The commands' own output is grepped in ``test_secrets_cli.py``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from features.errors import ConfigError
from pipeline.config import load_settings

SASL = "kafka:\n  security_protocol: SASL_SSL\n  sasl_mechanism: PLAIN\n  sasl_username: simguard\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_environment_values_of_string_fields_stay_strings(tmp_path: Path) -> None:
    env = {
        "SIMGUARD_KAFKA__SASL_PASSWORD": "987654321",
        "SIMGUARD_BLOCKLIST__ANALYSTS__alice": "yes",
        "SIMGUARD_BLOCKLIST__OPERATORS__viettel__api_token": "null",
        "SIMGUARD_BLOCKLIST__OPERATORS__vinaphone__API_TOKEN": "12345",
        "SIMGUARD_KAFKA__SASL_USERNAME": "true",
        "SIMGUARD_MLFLOW__EXPERIMENT": "007",
    }
    s = load_settings(write(tmp_path, SASL), environ=env)
    assert s.kafka.sasl_password is not None and s.kafka.sasl_password.get_secret_value() == "987654321"
    assert s.kafka.sasl_username == "true" and s.mlflow.experiment == "007"
    assert s.blocklist.analysts["alice"].get_secret_value() == "yes"
    # "null" is a token like any other: it does not remove the token
    assert s.blocklist.operators["viettel"].api_token.get_secret_value() == "null"
    assert s.blocklist.operators["vinaphone"].api_token.get_secret_value() == "12345"
    # numbers and booleans are still parsed by their own fields
    s = load_settings(write(tmp_path, "{}\n"), environ={"SIMGUARD_LOCAL_BROKER__PORT": "19092",
                                                        "SIMGUARD_SERVICE__PUBLISH_KAFKA": "false"})
    assert s.local_broker.port == 19092 and s.service.publish_kafka is False


def test_spark_conf_names_keep_their_case_from_the_environment(tmp_path: Path) -> None:
    env = {"SIMGUARD_SPARK__CONF__spark.sql.session.timeZone": "Asia/Ho_Chi_Minh"}
    s = load_settings(write(tmp_path, "spark:\n  conf:\n    spark.sql.session.timeZone: UTC\n"), environ=env)
    assert s.spark.conf == {"spark.sql.session.timeZone": "Asia/Ho_Chi_Minh"}


def test_unknown_keys_from_file_or_environment_are_one_line(tmp_path: Path) -> None:
    for env, needle in (({"SIMGUARD_NO_SUCH_SECTION": "1"}, "SIMGUARD_NO_SUCH_SECTION"),
                        ({"SIMGUARD_KAFKA__NO_SUCH": "1"}, "kafka.no_such")):
        with pytest.raises(ConfigError) as err:
            load_settings(write(tmp_path, "{}\n"), environ=env)
        assert "\n" not in str(err.value) and needle in str(err.value) and "unknown key" in str(err.value)
    # variables that are not config keys are left alone
    load_settings(write(tmp_path, "{}\n"), environ={"SIMGUARD_CONFIG": "x", "SIMGUARD_TEST_POSTGRES_URL": "y",
                                                    "REQUIRE_SHARED_DATA": "1"})


def test_config_errors_never_show_a_secret(tmp_path: Path) -> None:
    secrets = ["db-Secret-4711", "987654321", "hook-Secret-77", "tok-viettel-9f3a"]
    text = SASL + (
        "database:\n  url: postgresql+psycopg://simguard:db-Secret-4711@db:5432/simguard\n"
        "blocklist:\n  operators:\n    viettel:\n      webhook_url: ftp://hook:hook-Secret-77@operator.example/in\n"
        "      api_token: tok-viettel-9f3a\n"
    )
    env = {"SIMGUARD_KAFKA__SASL_PASSWORD": "987654321"}
    # an invalid URL holding credentials: named, its password masked
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, text), environ=env)
    msg = str(err.value)
    assert "blocklist.operators.viettel.webhook_url" in msg and "hook:***@operator.example" in msg
    # two callers sharing a token; a bad port next to the secrets
    shared_token = {"SIMGUARD_BLOCKLIST__ANALYSTS__alice": "tok-viettel-9f3a"}
    for extra_env in (shared_token, {"SIMGUARD_LOCAL_BROKER__PORT": "x"}):
        fixed = text.replace("ftp://", "https://")
        with pytest.raises(ConfigError) as err:
            load_settings(write(tmp_path, fixed), environ={**env, **extra_env})
        msg = str(err.value)
        assert not [s for s in secrets if s in msg], msg


def test_a_wrongly_typed_secret_is_named_but_not_shown(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, SASL + "  sasl_password: [hunter-222]\n"), environ={})
    assert "kafka.sasl_password" in str(err.value) and "hunter-222" not in str(err.value)


def _jaas_option(jaas: str, name: str) -> str:
    """The value of ``name="..."`` as Java's StreamTokenizer reads a quoted JAAS option."""
    match = re.search(rf'{name}="((?:[^"\\]|\\.)*)"', jaas)
    assert match, jaas
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r"}.get(m.group(1), m.group(1)), match.group(1))


@pytest.mark.parametrize("password", ['pa"ss', "back\\slash", 'x"; evil=true; y="', "line\nbreak"])
def test_sasl_password_is_escaped_in_the_jaas_string(tmp_path: Path, password: str) -> None:
    s = load_settings(write(tmp_path, SASL), environ={"SIMGUARD_KAFKA__SASL_PASSWORD": password})
    jaas = s.kafka.spark_options()["kafka.sasl.jaas.config"]
    assert _jaas_option(jaas, "password") == password and _jaas_option(jaas, "username") == "simguard"
    # exactly two options, however the password tries to end its quotes
    assert re.findall(r'(\w+)="(?:[^"\\]|\\.)*"', jaas) == ["username", "password"] and jaas.endswith('";')


@pytest.mark.parametrize(
    ("url", "masked", "secret"),
    [
        ("postgresql+psycopg://sg:p@ss:w0rd@db:5432/x", "postgresql+psycopg://sg:***@db:5432/x", "p@ss:w0rd"),
        ("http://user:pass123@mlflow:5000", "http://user:***@mlflow:5000", "pass123"),
        ("https://tokenonly@host/x", "https://***@host/x", "tokenonly"),
        ("https://host/x?api_key=abc123&n=1", "https://host/x?api_key=***&n=1", "abc123"),
        ("sqlite:////tmp/a.db", "sqlite:////tmp/a.db", None),
    ],
)
def test_mask_url(url: str, masked: str, secret: str | None) -> None:
    from features.redact import mask_url, url_secrets

    assert mask_url(url) == masked
    assert url_secrets(url) == ([secret] if secret else [])


def test_log_records_are_redacted_whatever_the_handler(caplog: pytest.LogCaptureFixture) -> None:
    from features.redact import Redactor, install_log_redaction

    before = logging.getLogRecordFactory()
    try:
        install_log_redaction(Redactor(["s3cr3t-value", "p@ss word"]))
        install_log_redaction(Redactor(["s3cr3t-value", "p@ss word"]))  # twice: still one layer
        log = logging.getLogger("simguard.test.child")
        with caplog.at_level(logging.INFO):
            log.info("connecting with %s to %s", "s3cr3t-value", "postgresql://u:p%40ss%20word@h/db")
            try:
                raise RuntimeError("auth failed for s3cr3t-value")
            except RuntimeError:
                log.exception("failed")
        text = caplog.text
        assert "s3cr3t-value" not in text and "p%40ss%20word" not in text
        assert "connecting with *** to postgresql://u:***@h/db" in text and "auth failed for ***" in text
    finally:
        logging.setLogRecordFactory(before)
