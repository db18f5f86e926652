"""``simguard stream --available-now`` on a Spark standalone cluster gives the blocks of a
``local[2]`` run.

The cluster is started on this machine from pyspark's own launcher (``bin/spark-class``, the
script ``sbin/start-master.sh`` and ``start-worker.sh`` call; the pip package ships no ``sbin``
start scripts): a master and two workers, each its own JVM, bound to 127.0.0.1 on free ports,
one core and a small memory each. The stream runs as a child process with
``spark.master=spark://127.0.0.1:<port>``: the driver is the CLI's process, the executors run in
the workers' JVMs and their Python workers, and the Kafka connector reaches them through
``spark.jars``. Both runs read the same topic into their own state and blocklist database: the
first six hours (UTC) of the test day of the session's small fixed-seed simulation
(``simulation`` of tests/stream_run.py), with champions trained on it in the session's
SparkSession. Those
hours are the day's busy morning, local time: about 50 blocks in this world, under 40% of the
day's CDRs to stream twice.

The state folder is a local path: the executors write the validated table there, which works
because the workers share the driver's file system. On a cluster of several machines it would
have to be a shared file system (HDFS, object storage) for the job to run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pipeline.broker import free_port, port_in_use

pytestmark = [pytest.mark.spark, pytest.mark.kafka, pytest.mark.slow]

#: the stream reads this many first hours of the test day (UTC; 07:00 to 13:00 local time)
HOURS = 6
SIMGUARD = str(Path(sys.executable).with_name("simguard"))


class StandaloneCluster:
    """A Spark standalone master and ``workers`` workers, each its own JVM, on 127.0.0.1."""

    def __init__(self, folder: Path, *, workers: int = 2, worker_cores: int = 1, worker_memory: str = "1g") -> None:
        import pyspark

        self.home = Path(pyspark.__file__).resolve().parent
        self.folder = folder
        self.port, self.ui_port = free_port(), free_port()
        self.workers, self.worker_cores, self.worker_memory = workers, worker_cores, worker_memory
        self.procs: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        return {**os.environ, "SPARK_HOME": str(self.home), "SPARK_LOCAL_IP": "127.0.0.1",
                "SPARK_DAEMON_MEMORY": "256m", "SPARK_NO_DAEMONIZE": "1", "PYSPARK_PYTHON": sys.executable}

    def _launch(self, name: str, *args: str) -> None:
        log = (self.folder / f"{name}.log").open("ab")
        self.procs.append(subprocess.Popen(
            [str(self.home / "bin" / "spark-class"), *args], env=self._env(), stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.folder,
        ))

    def state(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=5) as answer:
            return json.load(answer)

    def start(self, timeout_s: float = 180) -> None:
        self._launch("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                     "--port", str(self.port), "--webui-port", str(self.ui_port))
        self._wait(lambda: port_in_use(self.port) and port_in_use(self.ui_port), "the master", timeout_s)
        for k in range(self.workers):
            work = self.folder / f"worker-{k}"
            work.mkdir(exist_ok=True)
            self._launch(f"worker-{k}", "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                         "--port", str(free_port()), "--webui-port", str(free_port()),
                         "--cores", str(self.worker_cores), "--memory", self.worker_memory,
                         "--work-dir", str(work), self.url)
        self._wait(lambda: self.state().get("aliveworkers") == self.workers, f"{self.workers} workers", timeout_s)

    def _wait(self, ready: Any, what: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"a cluster JVM exited ({p.returncode}); logs in {self.folder}")
            try:
                if ready():
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{what} not up within {timeout_s}s; logs in {self.folder}")

    def stop(self) -> None:
        for p in reversed(self.procs):  # workers first
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(30)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneCluster]:
    c = StandaloneCluster(tmp_path_factory.mktemp("spark-cluster"))
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def trained(simulation: dict[str, Any], tmp_path_factory: pytest.TempPathFactory, spark: Any, base_settings: Any,
            kafka_bootstrap: str) -> dict[str, Any]:
    """Champions trained with the default settings on the session's small fixed-seed simulation
    (tests/stream_run.py; its feature tables are in the new home's cache), and the first ``HOURS``
    of its test day in a fresh topic."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from kafka.admin import KafkaAdminClient
    from stream_run import home_with_features

    from features.schema import arrow_schema
    from pipeline.modeling import train
    from pipeline.simulate import replay_to_kafka

    sim = simulation["sim"]
    home = home_with_features(simulation, tmp_path_factory.mktemp("home"))
    settings = base_settings.model_copy(update={"home": home})
    outcomes = train(spark, settings, cdrs=sim / "cdrs", labels=sim / "labels")
    assert all(o.promoted for o in outcomes), outcomes
    last = sorted((sim / "cdrs").glob("day=*"))[-1]
    cdrs = pd.concat([pd.read_parquet(p) for p in sorted(last.glob("*.parquet"))], ignore_index=True)
    start = pd.Timestamp(last.name.removeprefix("day="), tz="UTC")
    cdrs = cdrs[cdrs["start_time"] < start + pd.Timedelta(hours=HOURS)]
    day = tmp_path_factory.mktemp("test-day")
    (day / "cdrs" / last.name).mkdir(parents=True)
    pq.write_table(pa.Table.from_pandas(cdrs, schema=arrow_schema(), preserve_index=False),
                   day / "cdrs" / last.name / "part-00000.parquet")
    topic = f"cluster.cdrs.{uuid.uuid4().hex[:10]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap.split(","), client_id="tests")
    try:
        admin.create_topics({topic: {"num_partitions": 2}}, wait_for_metadata=True)
    finally:
        admin.close()
    sent = replay_to_kafka(day, topic=topic, producer_options={"bootstrap_servers": kafka_bootstrap.split(",")})
    return {"sim": sim, "home": home, "settings": settings, "topic": topic, "records": sent}


def _run(trained: dict[str, Any], run: Path, bootstrap: str, **extra: str) -> tuple[dict[str, Any], pd.DataFrame]:
    from pipeline.report import read_store

    run.mkdir(parents=True)
    db = f"sqlite:///{run / 'blocklist.db'}"
    env = {
        **os.environ,
        "SIMGUARD_HOME": str(trained["home"]),
        "SIMGUARD_JARS_DIR": str(trained["settings"].jars_dir),
        "SIMGUARD_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "SIMGUARD_KAFKA__TOPICS__CDRS": trained["topic"],
        "SIMGUARD_KAFKA__TOPICS__DEAD_LETTER": f"cluster.dlq.{uuid.uuid4().hex[:10]}",
        "SIMGUARD_KAFKA__TOPICS__BLOCKLIST_PREFIX": f"cluster.blocklist.{uuid.uuid4().hex[:8]}",
        "SIMGUARD_DATABASE__URL": db,
        "SIMGUARD_STREAM__STATE_URI": (run / "stream").as_uri(),
        "SIMGUARD_STREAM__METRICS_PORT": "0",
        "SIMGUARD_STREAM__VALIDATION__MAX_PAST_DAYS": "36500",  # the simulation is dated in the past
        "SIMGUARD_BLOCKLIST__REGISTERED_BUSINESSES": str(trained["sim"] / "labels" / "registered_businesses.parquet"),
        "SIMGUARD_SPARK__CONF__spark.sql.shuffle.partitions": "2",
        "SIMGUARD_SPARK__CONF__spark.driver.memory": "1g",
        "SIMGUARD_SPARK__CONF__spark.driver.host": "127.0.0.1",
        "SIMGUARD_SPARK__CONF__spark.driver.bindAddress": "127.0.0.1",
        **extra,
    }
    log = run / "stream.log"
    started = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.run([SIMGUARD, "stream", "--available-now"], env=env, stdout=out, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, timeout=1500)
    text = log.read_text(errors="replace")
    assert proc.returncode == 0, text[-5000:]
    summary = json.loads([ln for ln in text.splitlines() if ln.startswith("{")][-1])
    print(f"{extra.get('SIMGUARD_SPARK__MASTER', 'local[2]')}: {time.monotonic() - started:.0f} s, {summary}")
    return summary, read_store(db)["entries"]


def test_stream_on_a_standalone_cluster_blocks_what_local_blocks(
    trained: dict[str, Any], cluster: StandaloneCluster, kafka_bootstrap: str, tmp_path: Path
) -> None:  # trained first: the cluster's JVMs start once the champions are there
    local_summary, local = _run(trained, tmp_path / "local", kafka_bootstrap)
    remote_summary, remote = _run(
        trained, tmp_path / "cluster", kafka_bootstrap,
        SIMGUARD_SPARK__MASTER=cluster.url,
        **{"SIMGUARD_SPARK__CONF__spark.executor.memory": "512m",
           "SIMGUARD_SPARK__CONF__spark.executor.cores": "1",
           "SIMGUARD_SPARK__CONF__spark.cores.max": "2"},
    )
    # the job ran on the cluster: the master knows its application, and each worker ran an
    # executor of it (its folder under the worker's work dir)
    state = cluster.state()
    assert state["completedapps"] or state["activeapps"], state
    for k in range(cluster.workers):
        assert list((cluster.folder / f"worker-{k}").glob("app-*/*/stderr")), f"no executor ran on worker {k}"
    assert local_summary["records_in"] == remote_summary["records_in"] == trained["records"]
    assert local_summary == remote_summary
    columns = ["id", "number", "scope", "action", "fraud_type", "model_version"]
    blocks = local[local["action"] == "block"]
    assert len(blocks) >= 5, local
    pd.testing.assert_frame_equal(remote[columns].reset_index(drop=True), local[columns].reset_index(drop=True))
