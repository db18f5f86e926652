"""Test tiers (see STYLE.md):

- unit tests: no Spark, no Kafka;
- component tests (``spark`` fixture): one session-scoped ``local[2]`` SparkSession with the
  official Kafka connector, bound to 127.0.0.1;
- integration tests (``kafka_bootstrap`` fixture): a real Apache Kafka broker, started once per
  session on free ports under a temporary folder, or the one named by
  ``SIMGUARD_KAFKA__BOOTSTRAP_SERVERS``. Every test gets fresh topic names;
- database tests (``db_url`` fixture): every test that takes it runs on SQLite and on a real
  PostgreSQL server, started once per session on a free port under a temporary folder
  (``tests/pgserver.py``), or the database named by ``SIMGUARD_TEST_POSTGRES_URL`` (wiped).
"""

from __future__ import annotations

import os

# LightGBM and scikit-learn run OpenMP (libgomp) threads. libgomp's default has a thread that
# waits at a barrier spin for a while instead of sleeping, so on two cores shared with the
# session's Spark JVM, its Python workers (which score with LightGBM inside micro-batches) and
# the Kafka broker, a waiting thread takes the core the thread it waits for needs: training one
# small model took 59 s instead of 2.4 s with `passive` under load. The wait policy changes no
# result (same threads, same work split). Read when libgomp loads, so set before anything
# imports LightGBM; Spark's workers and the CLI children the tests start inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# the session's simulation and its features (simulation), its one real stream run (world, then
# reference), for every test module
from stream_run import reference, simulation, world  # noqa: F401

from pipeline.config import PROJECT_ROOT, Settings, load_settings

SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that needs the Kafka broker is marked ``kafka`` (``make test-fast`` leaves those out),
    whether it asks for the broker directly or through another fixture."""
    for item in items:
        if "kafka_bootstrap" in getattr(item, "fixturenames", ()) and not item.get_closest_marker("kafka"):
            item.add_marker(pytest.mark.kafka)


@pytest.fixture(scope="session")
def base_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Default settings with every piece of state under a temporary folder."""
    home = tmp_path_factory.mktemp("simguard-home")
    settings = load_settings(PROJECT_ROOT / "configs" / "default.yaml")
    jars = settings.jars_dir if settings.jars_dir.is_absolute() else PROJECT_ROOT / settings.jars_dir
    return settings.model_copy(update={"home": home, "jars_dir": jars})


@pytest.fixture(scope="session")
def kafka_bootstrap(base_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of a real broker: the given one, or one started for this session."""
    given = os.environ.get("SIMGUARD_KAFKA__BOOTSTRAP_SERVERS")
    if given:
        yield given
        return
    from pipeline.broker import LocalBroker, free_port

    broker = LocalBroker(
        home=tmp_path_factory.mktemp("kafka"),
        jars_dir=base_settings.jars_dir,
        port=free_port(),
        controller_port=free_port(),
        settings=base_settings.local_broker,
    )
    broker.start()
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database the tests may wipe: the given one, or a server started for this session."""
    given = os.environ.get("SIMGUARD_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    from pgserver import PostgresServer, find_bin_dir

    from pipeline.broker import free_port

    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.fail("PostgreSQL's pg_ctl and initdb not found: run `make setup` (installs Debian's postgresql) "
                    "or set SIMGUARD_TEST_POSTGRES_URL")
    server = PostgresServer(bin_dir, free_port()).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A blocklist database URL, once on SQLite and once on PostgreSQL (an empty schema each time)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'blocklist.db'}"
    from streaming.blocklist.migrate import downgrade

    url = request.getfixturevalue("postgres_url")
    downgrade(url)  # a clean schema for every test
    return url


@pytest.fixture(scope="session")
def settings(base_settings: Settings, kafka_bootstrap: str) -> Settings:
    """Settings pointing at the session's broker (use ``base_settings`` where Kafka is not needed)."""
    kafka = base_settings.kafka.model_copy(update={"bootstrap_servers": kafka_bootstrap})
    return base_settings.model_copy(update={"kafka": kafka})


@pytest.fixture
def new_topic(kafka_bootstrap: str) -> Iterator[Callable[..., str]]:
    """Factory: ``new_topic(partitions=1, compacted=False)`` creates a uniquely named topic."""
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap.split(","), client_id="tests")
    created: list[str] = []

    def make(partitions: int = 1, *, compacted: bool = False, prefix: str = "test") -> str:
        name = f"{prefix}.{uuid.uuid4().hex[:12]}"
        configs = {"cleanup.policy": "compact"} if compacted else {}
        admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs)])
        created.append(name)
        return name

    yield make
    try:
        admin.delete_topics(created)
    except Exception:
        pass
    admin.close()


@pytest.fixture(scope="session")
def spark(base_settings: Settings, tmp_path_factory: pytest.TempPathFactory):
    """One local[2] SparkSession with the Kafka connector for the whole session."""
    from pipeline.spark import build_spark

    conf = dict(base_settings.spark.conf)
    conf.update(
        {
            "spark.sql.shuffle.partitions": 2,
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.sql.warehouse.dir": str(tmp_path_factory.mktemp("warehouse")),
            "spark.driver.memory": "4g",
        }
    )
    spark_settings = base_settings.spark.model_copy(
        update={"app_name": "simguard-tests", "conf": conf}
    )
    session = build_spark(spark_settings, jars_dir=base_settings.jars_dir)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def djezzy_sample() -> Path:
    """The real operator export beside the project (never copied into the repository)."""
    path = SHARED_DATA / "djezzy_simbox" / "TEST_DATASET.CSV"
    if not path.exists():
        message = f"operator sample not present at {path} (../shared/data beside the checkout)"
        if os.environ.get("REQUIRE_SHARED_DATA"):
            pytest.fail(message)  # CI has ../shared beside the clone: a missing sample is an error there
        pytest.skip(message)
    return path


@pytest.fixture(autouse=True, scope="module")
def _release_cached_frames() -> Iterator[None]:
    """What a module cached is released when it ends: one driver runs every module of the
    session, and blocks left cached crowd out the later, larger ones."""
    yield
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        active.catalog.clearCache()
