"""No command prints a secret: a password, tokens and credentials in URLs are set through a config
file and the environment, and the output of ``doctor``, ``report``, ``report --json``, a config
error, ``stream`` start-up and ``serve`` is grepped for them; the masked forms are there instead.

Each command runs as the installed ``simguard`` in a subprocess from a temporary folder. The
database is the session's PostgreSQL server, reached with a password in its URL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from pipeline.broker import free_port
from pipeline.config import PROJECT_ROOT
from streaming.blocklist.migrate import downgrade, upgrade

# subprocesses, a simulation and a Spark start-up: part of `make test`, not of `make test-fast`
pytestmark = pytest.mark.slow

SIMGUARD = str(Path(sys.executable).parent / "simguard")
SASL_PASSWORD = "987654321"  # numeric, from the environment
MLFLOW_PASSWORD = "mlflow-Secret-0815"
API_TOKEN = "tok-viettel-9f3a2b"
WEBHOOK_TOKEN = "hook-token-77c1e0"
WEBHOOK_PASSWORD = "hook-Secret-5521"
ANALYST_TOKEN = "ana-Secret-3141"


@dataclass
class Setup:
    cwd: Path
    env: dict[str, str]
    db_url: str
    secrets: list[str]
    masked: dict[str, str]

    def run(self, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([SIMGUARD, *args], cwd=self.cwd, env={**self.env, **(extra_env or {})},
                              capture_output=True, text=True, timeout=300)

    def assert_clean(self, output: str, *expected: str) -> None:
        leaked = [s for s in self.secrets if s in output]
        assert not leaked, f"secrets {leaked} in:\n{output}"
        for name in expected:
            assert self.masked[name] in output, f"no {self.masked[name]!r} in:\n{output}"


@pytest.fixture(scope="module")
def setup(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Setup:
    url = sa.engine.make_url(postgres_url)
    if url.password is None:  # the session server trusts local connections: any password passes
        url = url.set(password="db-Secret-4711")
    db_password = str(url.password)
    cwd = tmp_path_factory.mktemp("elsewhere")
    closed = free_port()  # nothing listens there
    config = cwd / "secret.yaml"
    config.write_text(
        f"""
home: {cwd / "home"}
jars_dir: {PROJECT_ROOT / ".simguard" / "jars"}
kafka:
  bootstrap_servers: 127.0.0.1:{closed}
  security_protocol: SASL_PLAINTEXT
  sasl_mechanism: PLAIN
  sasl_username: simguard
spark:
  conf: {{spark.ui.enabled: false, spark.sql.shuffle.partitions: 2, spark.driver.host: 127.0.0.1,
          spark.driver.bindAddress: 127.0.0.1}}
database:
  url: {url.render_as_string(hide_password=False)}
stream:
  metrics_port: 0
blocklist:
  operators:
    viettel:
      webhook_url: https://hook:{WEBHOOK_PASSWORD}@127.0.0.1:{closed}/in
      webhook_token: {WEBHOOK_TOKEN}
      api_token: {API_TOKEN}
  kafka: {{connect_timeout_s: 1}}
service:
  loop_interval_s: 0.5
"""
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIMGUARD_")}
    env.update({
        "SIMGUARD_CONFIG": str(config),
        "SIMGUARD_KAFKA__SASL_PASSWORD": SASL_PASSWORD,
        "SIMGUARD_MLFLOW__TRACKING_URI": f"http://mlflow:{MLFLOW_PASSWORD}@127.0.0.1:{closed}/",
        "SIMGUARD_BLOCKLIST__ANALYSTS__alice": ANALYST_TOKEN,
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "3",
    })
    return Setup(
        cwd=cwd,
        env=env,
        db_url=url.render_as_string(hide_password=False),
        secrets=[SASL_PASSWORD, MLFLOW_PASSWORD, API_TOKEN, WEBHOOK_TOKEN, WEBHOOK_PASSWORD, ANALYST_TOKEN,
                 db_password],
        masked={"db": f"{url.username}:***@{url.host}", "mlflow": "http://mlflow:***@127.0.0.1"},
    )


@pytest.fixture(scope="module")
def simulation(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline.simulate import simulate

    out = tmp_path_factory.mktemp("sim")
    simulate(out, subscribers=400, days=1, seed=1)
    return out


def test_doctor_and_a_config_error_mask_every_secret(setup: Setup) -> None:
    doctor = setup.run("doctor")
    assert doctor.returncode == 1  # Kafka and MLflow are unreachable on purpose
    setup.assert_clean(doctor.stdout + doctor.stderr, "db", "mlflow")
    assert "ok   database" in doctor.stdout, doctor.stdout
    error = setup.run("doctor", extra_env={"SIMGUARD_LOCAL_BROKER__PORT": "99999"})
    assert error.returncode == 2 and error.stderr.count("\n") == 1 and "SIMGUARD_LOCAL_BROKER__PORT" in error.stderr
    setup.assert_clean(error.stdout + error.stderr)


def test_report_text_json_and_its_empty_database_error_mask_every_secret(setup: Setup, simulation: Path) -> None:
    args = ("report", "--labels", str(simulation / "labels"), "--cdrs", str(simulation))
    downgrade(setup.db_url)
    empty = setup.run(*args, "--json")
    assert empty.returncode != 0 and "no blocklist tables" in empty.stderr
    setup.assert_clean(empty.stdout + empty.stderr, "db")
    upgrade(setup.db_url)
    as_json, text = setup.run(*args, "--json"), setup.run(*args)
    assert as_json.returncode == 0 and text.returncode == 0, as_json.stderr + text.stderr
    setup.assert_clean(as_json.stdout + as_json.stderr, "db", "mlflow")
    setup.assert_clean(text.stdout + text.stderr, "mlflow")


@pytest.fixture
def started(setup: Setup, tmp_path: Path) -> Iterator:
    """Factory: start ``simguard <args>`` in its own process group with output to a file; stopped
    (the whole group: Spark's JVM too) at the end."""
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str, extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], Path]:
        out = tmp_path / f"{args[0]}.log"
        with out.open("w") as sink:
            proc = subprocess.Popen([SIMGUARD, *args], cwd=setup.cwd, env={**setup.env, **(extra_env or {})},
                                    stdout=sink, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        procs.append(proc)
        return proc, out

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


def wait_for(proc: subprocess.Popen[str], out: Path, needle: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = out.read_text(errors="replace")
        if needle in text:
            return text
        if proc.poll() is not None:
            break
        time.sleep(0.3)
    raise AssertionError(f"{needle!r} not printed (exit {proc.poll()}):\n{out.read_text(errors='replace')}")


def test_serve_logs_mask_every_secret(setup: Setup, started) -> None:
    upgrade(setup.db_url)
    port = free_port()
    proc, out = started("serve", "--port", str(port))
    wait_for(proc, out, "Uvicorn running", 60)
    base = f"http://127.0.0.1:{port}"
    assert httpx.get(f"{base}/blocklist?since=0", headers={"Authorization": f"Bearer {API_TOKEN}"}).status_code == 200
    # a caller who puts a token in the query string: uvicorn logs the request line
    httpx.get(f"{base}/blocklist?since=0&token={ANALYST_TOKEN}")
    time.sleep(2)  # distribution rounds against the unreachable Kafka brokers
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    text = out.read_text(errors="replace")
    assert "GET /blocklist?since=0&token=***" in text, text
    setup.assert_clean(text)


@pytest.mark.spark
def test_stream_start_up_masks_every_secret(setup: Setup, started) -> None:
    proc, out = started("stream", "--available-now")
    text = wait_for(proc, out, "stream: CDRs from", 180)
    time.sleep(3)  # the first attempts to reach the (unreachable) brokers
    text = out.read_text(errors="replace")
    assert "PLAIN user simguard" in text
    setup.assert_clean(text, "db", "mlflow")
