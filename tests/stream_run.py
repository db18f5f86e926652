"""One real stream run for the whole test session, shared by every test that needs one (the
end-to-end stream tests, the console and the regulator's report on a stream run's database).

``simulation``: a small fixed-seed simulation (``SUBSCRIBERS`` x ``DAYS``) and its feature tables,
built once in the session's SparkSession; ``home_with_features`` gives a new home whose feature
cache holds them (what a second ``simguard train`` on the same CDRs finds), so the modules that
train on it (tests/test_cluster.py, test_models_e2e.py, test_train_extra_labels.py) build no
features of their own.
``world``: a fixed-seed simulation (``STREAM_SUBSCRIBERS`` x ``DAYS``), both champions trained with
``pipeline.modeling.train`` into a temporary MLflow (``world["home"]``), ``pipeline.modeling.evaluate``
run once, and one Kafka topic holding the validation and test days of CDRs in event-time order plus
a handful of malformed records and injected never-blocked look-alikes (see tests/test_stream_e2e.py).
``reference``: one uninterrupted ``run_stream`` in the session's SparkSession into a SQLite blocklist
database; ``reference["env"]`` holds its settings as ``SIMGUARD_*`` overrides and ``reference["store"]``
a snapshot of its tables taken when the run ended. Both are session-scoped (the pair takes several
minutes on a small machine): a test that wants to change the database works on a copy of
``reference["env"]["SIMGUARD_DATABASE__URL"]``'s file, never on the file itself.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.broker import free_port
from pipeline.config import PROJECT_ROOT, load_settings
from pipeline.report import read_store

#: the shared simulation (``simulation``)
SUBSCRIBERS, DAYS, SEED = 1500, 3, 23
#: the stream run's world. Tried: 1500 subscribers, 5 micro-batches, state maintenance every 2;
#: the stream then missed 2 of the 60 fraud SIMs evaluate flagged on the test day (recall 0.933
#: against 0.967, beyond the test's one point), both blocked on the validation day. Which of the
#: three changes did it is not known yet, so the e2e world stays as it was
STREAM_SUBSCRIBERS = 2500
INJECTED_EMERGENCY = ("113", "114", "115")
#: micro-batches over the two replayed days
BATCHES = 8


# -- a local webhook receiver ------------------------------------------------------------------


class Receiver:
    """An operator's webhook: records every POST it accepts; not listening until ``start``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[dict[str, Any]] = []
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.received.append({"key": self.headers.get("Idempotency-Key"), "body": body})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def entries(self) -> set[tuple[Any, ...]]:
        return {
            (int(m["key"]), m["body"]["version"], m["body"]["number"], m["body"]["scope"], m["body"]["action"],
             m["body"]["fraud_type"])
            for m in self.received
        }


# -- the world ---------------------------------------------------------------------------------


def _topic(bootstrap: str, prefix: str) -> str:
    from kafka.admin import KafkaAdminClient, NewTopic

    name = f"{prefix}.{uuid.uuid4().hex[:12]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="tests")
    try:
        admin.create_topics([NewTopic(name, 1, 1)])
    finally:
        admin.close()
    return name


def _injected(test_day: pd.DataFrame, robocaller: str, call_centre: str) -> pd.DataFrame:
    """The robocaller's test-day CDRs again under each never-blocked number, on a cell, IMEI and
    callees of their own (so no simulated SIM's features change)."""
    own = test_day[test_day["a_number"] == robocaller].reset_index(drop=True)
    assert len(own) >= 50, f"robocaller {robocaller} has only {len(own)} test-day CDRs"
    copies = []
    for k, number in enumerate((*INJECTED_EMERGENCY, call_centre)):
        c = own.copy()
        c["record_id"] = [f"INJ{k}-{i:06d}" for i in range(len(c))]
        c["a_number"] = number
        c["a_imsi"] = f"45204999000{k:04d}"
        c["a_imei"] = f"3599990000{k:05d}"
        c["cell_id"] = f"INJ{k}"
        callees = {b: f"+849199{k}{j:05d}" for j, b in enumerate(sorted(set(c["b_number"])))}
        c["b_number"] = c["b_number"].map(callees)
        copies.append(c)
    return pd.concat(copies, ignore_index=True)


def _new_registered_line(registered: pd.DataFrame, labels: pd.DataFrame, test_day: pd.DataFrame,
                         folder: Path) -> tuple[str, Path]:
    """A new line of a registered call centre (a number no simulated SIM uses), and the
    registered-business file with it: the simulator's list plus that line."""
    centre = registered[registered["population"] == "call_centre"].sort_values("number").iloc[0]
    used = set(labels["a_number"]) | set(registered["number"]) | set(test_day["a_number"]) | set(test_day["b_number"])
    prefix = str(centre["number"])[:-4]
    number = next(f"{prefix}{i:04d}" for i in range(9999, 0, -1) if f"{prefix}{i:04d}" not in used)
    line = centre.to_frame().T.assign(number=number)
    path = folder / "registered_businesses.parquet"
    pd.concat([registered, line], ignore_index=True).astype(registered.dtypes.to_dict()).to_parquet(path, index=False)
    return number, path


def _producer(bootstrap: str) -> Any:
    from kafka import KafkaProducer

    # one partition, acks from the leader before the next send: the topic keeps the send order
    return KafkaProducer(bootstrap_servers=bootstrap.split(","), acks="all", max_in_flight_requests_per_connection=1)


def _malformed(sample: dict[str, Any]) -> list[tuple[str, bytes]]:
    ok = json.loads(sample)
    return [
        ("bad_json", b'{"record_id": "x", '),
        ("missing_field", json.dumps({k: v for k, v in ok.items() if k != "a_number"}).encode()),
        ("bad_e164", json.dumps({**ok, "a_number": "+84-not-a-number"}).encode()),
        ("negative_duration", json.dumps({**ok, "duration_s": -5.0}).encode()),
        ("bad_enum", json.dumps({**ok, "release_cause": "exploded"}).encode()),
        ("time_in_future", json.dumps({**ok, "start_time": "2100-01-01T00:00:00.000000Z",
                                       "answer_time": "2100-01-01T00:00:05.000000Z"}).encode()),
    ]


@pytest.fixture(scope="session")
def simulation(tmp_path_factory: pytest.TempPathFactory, spark: Any, base_settings: Any) -> dict[str, Any]:
    """The session's simulation (``SUBSCRIBERS`` x ``DAYS``, seed ``SEED``) and its feature tables
    (with the validation day's rows from its own CDRs alone), built with the default feature
    settings as ``simguard train`` builds them."""
    from pipeline.modeling import prepare
    from pipeline.simulate import simulate

    t0 = time.monotonic()
    sim = tmp_path_factory.mktemp("sim")
    simulate(sim, subscribers=SUBSCRIBERS, days=DAYS, seed=SEED)
    simulated = time.monotonic() - t0
    cache = tmp_path_factory.mktemp("features-cache")
    prepare(spark, base_settings.model_copy(update={"home": cache}), cdrs=sim / "cdrs", labels=sim / "labels")
    return {"sim": sim, "features": cache / "features",
            "timings": {"simulate": simulated, "features": time.monotonic() - t0 - simulated}}


def home_with_features(simulation: dict[str, Any], home: Path) -> Path:
    """``home`` with the simulation's feature tables in its feature cache: training or evaluating on
    ``simulation["sim"]`` there reads them instead of building them again (same CDR files, same
    feature settings: the cache key of ``pipeline.modeling.features_key``)."""
    shutil.copytree(simulation["features"], home / "features")
    return home


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory, spark: Any, base_settings: Any, kafka_bootstrap: str
          ) -> dict[str, Any]:
    from features.schema import arrow_schema, record_to_json
    from pipeline.modeling import evaluate, train
    from pipeline.simulate import replay_to_kafka, simulate

    timings: dict[str, float] = {}
    t0 = time.monotonic()
    sim = tmp_path_factory.mktemp("stream-sim")
    simulate(sim, subscribers=STREAM_SUBSCRIBERS, days=DAYS, seed=SEED)
    home = tmp_path_factory.mktemp("home")
    settings = base_settings.model_copy(update={"home": home})
    timings["simulate"] = time.monotonic() - t0
    t0 = time.monotonic()
    outcomes = train(spark, settings, cdrs=sim / "cdrs", labels=sim / "labels")
    assert all(o.promoted for o in outcomes), outcomes
    timings["train"] = time.monotonic() - t0
    evaluated = {m.name: (m, ev) for m, ev in evaluate(spark, settings, cdrs=sim / "cdrs", labels=sim / "labels")}
    timings["evaluate"] = time.monotonic() - t0 - timings["train"]
    spam_model, spam_eval = evaluated[settings.models.spam_sim_name]
    spoof_model, spoof_eval = evaluated[settings.models.spoof_call_name]
    test_start = pd.Timestamp(spam_eval.report["split"]["test_start"])

    # the validation and test days, plus the never-blocked look-alikes, in event-time order
    day_files = sorted((sim / "cdrs").glob("day=*/part-*.parquet"))
    days = {f"day={d:%Y-%m-%d}" for d in (test_start - pd.Timedelta(days=1), test_start)}
    test_day = pd.concat([pd.read_parquet(p) for p in day_files if p.parent.name == f"day={test_start:%Y-%m-%d}"])
    streamed = pd.concat([pd.read_parquet(p) for p in day_files if p.parent.name in days])
    labels = pd.read_parquet(sim / "labels" / "sims.parquet")
    registered = pd.read_parquet(sim / "labels" / "registered_businesses.parquet")
    units = spam_eval.model_units
    robocallers = units[(units["unit_class"] == "spam_robocall") & (units["role"] == "positive")]
    robocaller = str(robocallers["score"].idxmax())
    call_centre, registered_file = _new_registered_line(registered, labels, test_day, tmp_path_factory.mktemp("reg"))
    injected = _injected(test_day, robocaller, call_centre)
    merged = pd.concat([streamed, injected], ignore_index=True)
    merged = merged.sort_values(["start_time", "record_id"], kind="stable").reset_index(drop=True)
    replay_dir = tmp_path_factory.mktemp("replay")
    for day, part in merged.groupby(merged["start_time"].dt.strftime("%Y-%m-%d")):
        folder = replay_dir / "cdrs" / f"day={day}"
        folder.mkdir(parents=True)
        pq.write_table(pa.Table.from_pandas(part, schema=arrow_schema(), preserve_index=False),
                       folder / "part-00000.parquet")

    malformed = _malformed(record_to_json(merged.iloc[0].to_dict()))
    topic = _topic(kafka_bootstrap, "e2e.cdrs")
    producer = _producer(kafka_bootstrap)
    try:
        for _, value in malformed:
            producer.send(topic, value=value)
        producer.flush()
    finally:
        producer.close()
    sent = replay_to_kafka(replay_dir, topic=topic, producer_options={"bootstrap_servers": kafka_bootstrap.split(",")})
    assert sent == len(merged)
    batch = (len(merged) + len(malformed)) // BATCHES + 1
    timings["replay"] = time.monotonic() - t0 - timings["train"] - timings["evaluate"]
    return {
        "sim": sim,
        "home": home,
        "settings": settings,
        "spam": (spam_model, spam_eval),
        "spoof": (spoof_model, spoof_eval),
        "test_start": test_start,
        "topic": topic,
        "records": len(merged) + len(malformed),
        "valid": len(merged),
        "malformed": malformed,
        "replay_dir": replay_dir,
        "batch": batch,
        "labels": labels,
        "robocaller": robocaller,
        "call_centre": call_centre,
        "registered_businesses": registered_file,
        "timings": timings,
    }


def stream_env(world: dict[str, Any], run: Path, bootstrap: str, **extra: str) -> dict[str, str]:
    """The settings of one stream run, as the environment overrides an operator would give."""
    env = {
        "SIMGUARD_HOME": str(world["home"]),
        "SIMGUARD_JARS_DIR": str(world["settings"].jars_dir),
        "SIMGUARD_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "SIMGUARD_KAFKA__TOPICS__CDRS": world["topic"],
        "SIMGUARD_KAFKA__TOPICS__DEAD_LETTER": _topic(bootstrap, "e2e.dlq"),
        "SIMGUARD_KAFKA__TOPICS__BLOCKLIST_PREFIX": f"e2e.blocklist.{uuid.uuid4().hex[:8]}",
        "SIMGUARD_DATABASE__URL": f"sqlite:///{run / 'blocklist.db'}",
        "SIMGUARD_STREAM__STATE_URI": (run / "stream").as_uri(),
        "SIMGUARD_STREAM__METRICS_PORT": "0",
        "SIMGUARD_STREAM__MAX_OFFSETS_PER_TRIGGER": str(world["batch"]),
        # the state table's maintenance (delete, compact, vacuum) runs every 3 micro-batches here:
        # both runs go through it, and the SIGKILL can land in one
        "SIMGUARD_STREAM__STATE_MAINTAIN_EVERY": "3",
        # the simulation is dated in the past: a backfill widens the age limit
        "SIMGUARD_STREAM__VALIDATION__MAX_PAST_DAYS": "36500",
        "SIMGUARD_BLOCKLIST__REGISTERED_BUSINESSES": str(world["registered_businesses"]),
        "SIMGUARD_BLOCKLIST__WEBHOOK__BACKOFF_BASE_S": "0.2",
        "SIMGUARD_BLOCKLIST__WEBHOOK__BACKOFF_MAX_S": "0.5",
        "SIMGUARD_BLOCKLIST__WEBHOOK__BATCH_SIZE": "10000",
        "SIMGUARD_BLOCKLIST__WEBHOOK__TIMEOUT_S": "2",
        # the session SparkSession's settings, for child processes too
        "SIMGUARD_SPARK__CONF__spark.sql.shuffle.partitions": "2",
        "SIMGUARD_SPARK__CONF__spark.driver.memory": "3g",
        "SIMGUARD_SPARK__CONF__spark.driver.host": "127.0.0.1",
        "SIMGUARD_SPARK__CONF__spark.driver.bindAddress": "127.0.0.1",
    }
    env.update(extra)
    return env


def run_in_process(spark: Any, env: dict[str, str]) -> tuple[dict[str, Any], float]:
    from pipeline.stream import run_stream

    settings = load_settings(PROJECT_ROOT / "configs" / "default.yaml", environ=env)
    started = time.monotonic()
    summary = run_stream(spark, settings, available_now=True, timeout_s=1800)
    return summary, time.monotonic() - started


@pytest.fixture(scope="session")
def reference(world: dict[str, Any], spark: Any, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[dict[str, Any]]:
    """One uninterrupted run in several micro-batches, its operator's webhook up all along."""
    hook = Receiver()
    hook.start()
    env = stream_env(world, tmp_path_factory.mktemp("uninterrupted"), kafka_bootstrap,
                     SIMGUARD_BLOCKLIST__OPERATORS__viettel__webhook_url=hook.url)
    summary, seconds = run_in_process(spark, env)
    print(f"timings: {world['timings']}, reference stream run {seconds:.1f}s, summary {summary}")
    try:
        yield {"env": env, "summary": summary, "seconds": seconds, "hook": hook,
               "store": read_store(env["SIMGUARD_DATABASE__URL"])}
    finally:
        hook.stop()
