"""The local broker as a user drives it: `simguard kafka up` twice, a round trip, `kafka down`,
and `simguard doctor` (integration tier: real broker processes on free ports)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from pipeline.broker import _process_cmdline, free_port
from pipeline.config import PROJECT_ROOT

pytestmark = pytest.mark.kafka


def simguard(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture
def cli_env(tmp_path: Path, base_settings) -> dict[str, str]:
    port, controller = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIMGUARD_")}
    env.update(
        {
            "SIMGUARD_HOME": str(tmp_path / "home"),
            "SIMGUARD_JARS_DIR": str(base_settings.jars_dir),
            "SIMGUARD_LOCAL_BROKER__PORT": str(port),
            "SIMGUARD_LOCAL_BROKER__CONTROLLER_PORT": str(controller),
            "SIMGUARD_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
        }
    )
    return env


def test_up_twice_round_trip_down_leaves_no_process(cli_env: dict[str, str], tmp_path: Path) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    first = simguard("kafka", "up", env=cli_env)
    assert first.returncode == 0, first.stderr
    assert "started" in first.stdout
    pid = int((tmp_path / "home" / "kafka" / "broker.pid").read_text())
    try:
        second = simguard("kafka", "up", env=cli_env)
        assert second.returncode == 0, second.stderr
        assert "already running" in second.stdout and f"pid {pid}" in second.stdout

        servers = cli_env["SIMGUARD_KAFKA__BOOTSTRAP_SERVERS"]
        topic = f"roundtrip.{uuid.uuid4().hex[:8]}"
        sent = [{"n": i, "a_number": f"+8496{i:07d}"} for i in range(50)]
        producer = KafkaProducer(bootstrap_servers=[servers], value_serializer=lambda v: json.dumps(v).encode())
        for rec in sent:
            producer.send(topic, rec)
        producer.flush()
        producer.close()
        consumer = KafkaConsumer(
            topic,
            bootstrap_servers=[servers],
            auto_offset_reset="earliest",
            consumer_timeout_ms=10000,
            group_id=f"g-{uuid.uuid4().hex[:6]}",
            value_deserializer=json.loads,
        )
        got = [m.value for m in consumer]
        consumer.close()
        # auto-created topics get local_broker.partitions partitions: order holds per partition
        assert sorted(got, key=lambda r: r["n"]) == sent

        doctor = simguard("doctor", env=cli_env)
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        lines = doctor.stdout.strip().splitlines()
        assert [ln.split()[1] for ln in lines] == ["java", "spark", "jars", "kafka", "mlflow", "database"]
    finally:
        down = simguard("kafka", "down", env=cli_env)
    assert down.returncode == 0 and "stopped" in down.stdout
    assert _process_cmdline(pid) in (None, ""), "the broker process is still alive"
    status = simguard("kafka", "status", env=cli_env)
    assert status.returncode == 1 and "not running" in status.stdout
    # a second down is harmless
    assert simguard("kafka", "down", env=cli_env).returncode == 0


def test_doctor_fails_with_a_hint_when_the_broker_is_down(cli_env: dict[str, str]) -> None:
    result = simguard("doctor", env=cli_env)
    assert result.returncode == 1
    kafka_line = next(ln for ln in result.stdout.splitlines() if " kafka " in ln)
    assert kafka_line.startswith("FAIL") and "make kafka-up" in kafka_line
    assert "Traceback" not in result.stderr


def test_taken_port_is_a_one_line_error(cli_env: dict[str, str]) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", int(cli_env["SIMGUARD_LOCAL_BROKER__PORT"])))
        s.listen()
        result = simguard("kafka", "up", env=cli_env)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "already taken" in result.stderr and "SIMGUARD_LOCAL_BROKER__PORT" in result.stderr


def test_missing_jars_is_a_one_line_error(cli_env: dict[str, str], tmp_path: Path) -> None:
    env = dict(cli_env, SIMGUARD_JARS_DIR=str(tmp_path / "no-jars"))
    result = simguard("kafka", "up", env=env)
    assert result.returncode == 2 and "make setup" in result.stderr
    assert result.stderr.strip().count("\n") == 0
