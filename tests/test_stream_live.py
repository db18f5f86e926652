"""``simguard stream`` run live as a carrier first tries it, as a child process against a real broker:

- started before its topics exist, it creates them (or, with ``--wait-for-topics``, waits for
  them), saying so in one line, and processes the records that arrive afterwards;
- Ctrl-C (SIGINT to the process group, as a terminal sends it) and SIGTERM (to the process, as a
  service manager sends it) stop it with exit status 0, one line and no traceback;
- the stop commits its offsets: a restart processes nothing twice (the dead-letter topic holds
  every record once, the run's totals do not grow) and then only what arrived since.

The records are ones the job dead-letters (malformed JSON, CDRs older than the age limit), so
no trained model is needed: validation, the intake and the dead-letter topic are the whole path
they take, and the dead-letter topic is what an operator would watch.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from factories import cdr

from features.schema import record_to_json

pytestmark = [pytest.mark.spark, pytest.mark.kafka, pytest.mark.slow]

SIMGUARD = str(Path(sys.executable).with_name("simguard"))
OLD = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)  # older than validation.max_past_days: dead-lettered


def _env(settings: Any, run: Path, bootstrap: str) -> dict[str, str]:
    tag = uuid.uuid4().hex[:10]
    return {
        **os.environ,
        "SIMGUARD_HOME": str(run / "home"),
        "SIMGUARD_JARS_DIR": str(settings.jars_dir),
        "SIMGUARD_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "SIMGUARD_KAFKA__TOPICS__CDRS": f"live.cdrs.{tag}",
        "SIMGUARD_KAFKA__TOPICS__DEAD_LETTER": f"live.dlq.{tag}",
        "SIMGUARD_KAFKA__TOPICS__BLOCKLIST_PREFIX": f"live.blocklist.{tag}",
        "SIMGUARD_DATABASE__URL": f"sqlite:///{run / 'blocklist.db'}",
        "SIMGUARD_STREAM__STATE_URI": (run / "stream").as_uri(),
        "SIMGUARD_STREAM__METRICS_PORT": "0",
        "SIMGUARD_STREAM__TRIGGER_INTERVAL_S": "1",
        "SIMGUARD_SPARK__CONF__spark.sql.shuffle.partitions": "2",
        "SIMGUARD_SPARK__CONF__spark.driver.memory": "1g",
        "SIMGUARD_SPARK__CONF__spark.driver.host": "127.0.0.1",
        "SIMGUARD_SPARK__CONF__spark.driver.bindAddress": "127.0.0.1",
    }


def _records(first: int, n_old: int, n_bad: int) -> list[bytes]:
    old = [record_to_json(cdr(first + i, record_id=f"live{first + i:06d}",
                              start_time=OLD + dt.timedelta(minutes=i))) for i in range(n_old)]
    return old + [b'{"record_id": "broken", '] * n_bad


def _send(bootstrap: str, topic: str, values: list[bytes]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap.split(","), acks="all")
    try:
        for v in values:
            producer.send(topic, value=v)
        producer.flush()
    finally:
        producer.close()


def _count(bootstrap: str, topic: str, *, at_least: int, timeout_s: float, proc: subprocess.Popen | None = None,
           log: Path | None = None, settle_s: float = 3.0) -> int:
    """Records in ``topic`` from its start, once at least ``at_least`` are there (or the time is up)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), auto_offset_reset="earliest",
                             enable_auto_commit=False, group_id=None)
    seen = 0
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if not consumer.subscription() and topic in consumer.topics():
                consumer.subscribe([topic])
            if consumer.subscription():
                seen += sum(len(batch) for batch in consumer.poll(timeout_ms=1000).values())
            else:
                time.sleep(0.5)
            if seen >= at_least:
                # a little longer: a duplicate would show up now
                end = time.monotonic() + settle_s
                while time.monotonic() < end:
                    seen += sum(len(batch) for batch in consumer.poll(timeout_ms=500).values())
                return seen
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"the stream exited ({proc.returncode}): {log.read_text()[-3000:] if log else ''}")
    finally:
        consumer.close()
    return seen


def _start(env: dict[str, str], run: Path, *args: str) -> tuple[subprocess.Popen, Path, Path]:
    out, err = run / f"stdout-{time.monotonic_ns()}.log", run / f"stderr-{time.monotonic_ns()}.log"
    proc = subprocess.Popen([SIMGUARD, "stream", *args], env=env, stdout=out.open("wb"), stderr=err.open("wb"),
                            stdin=subprocess.DEVNULL, start_new_session=True)
    return proc, out, err


def _wait_line(path: Path, needle: str, proc: subprocess.Popen, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in path.read_text(errors="replace").splitlines():
            if needle in line:
                return line
        assert proc.poll() is None, f"the stream exited ({proc.returncode}): {path.read_text()[-3000:]}"
        time.sleep(0.3)
    raise AssertionError(f"no line with {needle!r} within {timeout_s}s: {path.read_text()[-3000:]}")


def _stopped(proc: subprocess.Popen, out: Path, err: Path, signame: str) -> dict[str, Any]:
    """Exit 0, one stop line, no traceback; returns the run's totals (the JSON line on stdout)."""
    code = proc.wait(240)
    text = out.read_text(errors="replace") + err.read_text(errors="replace")
    assert code == 0, text[-4000:]
    stop_lines = [ln for ln in err.read_text().splitlines() if ln.startswith("simguard stream stopped")]
    assert len(stop_lines) == 1 and f"on {signame}" in stop_lines[0], text[-4000:]
    assert "offsets committed" in stop_lines[0], stop_lines
    for needle in ("Traceback", "Py4JError", "Py4JNetworkError", "UnknownTopicOrPartition"):
        assert needle not in text, text[-4000:]
    return json.loads([ln for ln in out.read_text().splitlines() if ln.startswith("{")][-1])


def _drain(env: dict[str, str], run: Path) -> dict[str, Any]:
    """``simguard stream --available-now`` on the same checkpoints: what is left, then stop."""
    proc, out, err = _start(env, run, "--available-now")
    try:
        assert proc.wait(600) == 0, (out.read_text() + err.read_text())[-4000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return json.loads([ln for ln in out.read_text().splitlines() if ln.startswith("{")][-1])


def test_stream_started_before_its_topic_exists_then_ctrl_c(settings: Any, kafka_bootstrap: str,
                                                            tmp_path: Path) -> None:
    env = _env(settings, tmp_path, kafka_bootstrap)
    cdrs, dlq = env["SIMGUARD_KAFKA__TOPICS__CDRS"], env["SIMGUARD_KAFKA__TOPICS__DEAD_LETTER"]
    proc, out, err = _start(env, tmp_path)
    try:
        line = _wait_line(err, "created Kafka topic", proc, timeout_s=180)
        assert cdrs in line and dlq in line
        values = _records(0, n_old=20, n_bad=5)
        time.sleep(5)  # the queries are running on the empty topic
        _send(kafka_bootstrap, cdrs, values)
        assert _count(kafka_bootstrap, dlq, at_least=len(values), timeout_s=180, proc=proc, log=err) == len(values)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole foreground group
        summary = _stopped(proc, out, err, "SIGINT")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert summary["records_in"] == summary["dead_lettered"] == len(values)
    assert summary["stopped"] == "SIGINT"

    again = _drain(env, tmp_path)
    assert again["records_in"] == len(values)  # no batch was run twice
    assert _count(kafka_bootstrap, dlq, at_least=len(values) + 1, timeout_s=10) == len(values)


def test_stream_waits_for_its_topics_and_stops_on_sigterm(settings: Any, kafka_bootstrap: str,
                                                         tmp_path: Path) -> None:
    from kafka.admin import KafkaAdminClient

    env = _env(settings, tmp_path, kafka_bootstrap)
    cdrs, dlq = env["SIMGUARD_KAFKA__TOPICS__CDRS"], env["SIMGUARD_KAFKA__TOPICS__DEAD_LETTER"]
    proc, out, err = _start(env, tmp_path, "--wait-for-topics")
    try:
        line = _wait_line(err, "waiting for Kafka topic", proc, timeout_s=180)
        assert cdrs in line and dlq in line
        time.sleep(3)
        assert proc.poll() is None
        admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap.split(","), client_id="tests")
        try:  # the operator creates them
            admin.create_topics({cdrs: {"num_partitions": 2}, dlq: {}}, wait_for_metadata=True)
        finally:
            admin.close()
        first = _records(0, n_old=12, n_bad=3)
        _send(kafka_bootstrap, cdrs, first)
        assert _count(kafka_bootstrap, dlq, at_least=len(first), timeout_s=240, proc=proc, log=err) == len(first)
        proc.send_signal(signal.SIGTERM)  # a service manager stopping the job
        summary = _stopped(proc, out, err, "SIGTERM")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert summary["records_in"] == len(first)

    later = _records(100, n_old=6, n_bad=2)
    _send(kafka_bootstrap, cdrs, later)
    again = _drain(env, tmp_path)
    assert again["records_in"] == len(first) + len(later)
    total = len(first) + len(later)
    assert _count(kafka_bootstrap, dlq, at_least=total + 1, timeout_s=10) == total


def test_ctrl_c_during_a_backfill_stops_between_micro_batches(settings: Any, kafka_bootstrap: str,
                                                              tmp_path: Path) -> None:
    """``--available-now`` stopped between micro-batches: exit 0, one line; the next run finishes
    the backfill and the dead-letter topic holds every record once."""
    base = _env(settings, tmp_path, kafka_bootstrap)
    # many small micro-batches, so that the signal lands while they run
    env = {**base, "SIMGUARD_STREAM__MAX_OFFSETS_PER_TRIGGER": "2"}
    cdrs, dlq = env["SIMGUARD_KAFKA__TOPICS__CDRS"], env["SIMGUARD_KAFKA__TOPICS__DEAD_LETTER"]
    values = _records(0, n_old=50, n_bad=10)
    _send(kafka_bootstrap, cdrs, values)
    proc, out, err = _start(env, tmp_path, "--available-now")
    try:
        # the first micro-batches have written the dead-letter topic
        assert _count(kafka_bootstrap, dlq, at_least=1, timeout_s=300, proc=proc, log=err, settle_s=0) < len(values)
        os.killpg(proc.pid, signal.SIGINT)
        summary = _stopped(proc, out, err, "SIGINT")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert summary["stopped"] == "SIGINT" and summary["records_in"] <= len(values)

    again = _drain(base, tmp_path)  # the rest in bigger batches
    assert again["records_in"] == again["dead_lettered"] == len(values)
    assert _count(kafka_bootstrap, dlq, at_least=len(values) + 1, timeout_s=10) == len(values)
