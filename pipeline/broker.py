"""A local single-node Apache Kafka broker (KRaft), run from the jars Maven fetched.

``make kafka-up`` / ``simguard kafka up`` and the test suite use this. The broker keeps its
configuration, data, log and pid file under one folder (``<home>/kafka``); ``stop`` ends exactly
the process this folder's pid file names, after checking that it is that broker.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from features.errors import PlatformError
from pipeline.config import LocalBrokerSettings

MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"

_LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
"""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def java_version() -> tuple[str, int]:
    """(path, major version) of the ``java`` on PATH; ``PlatformError`` when missing."""
    java = shutil.which("java")
    if java is None:
        raise PlatformError(
            "Java not found on PATH: install Java 17 (e.g. apt-get install openjdk-17-jre-headless)"
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        raise PlatformError(f"could not read the version of {java}: {out.stderr.strip()[:200]}")
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8" style
        major = int(match.group(2))
    return java, major


def _process_cmdline(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None


@dataclass
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap_servers: str
    detail: str


class LocalBroker:
    """One KRaft broker+controller process whose state lives under ``home``."""

    def __init__(
        self,
        *,
        home: Path,
        jars_dir: Path,
        port: int,
        controller_port: int,
        settings: LocalBrokerSettings | None = None,
    ) -> None:
        self.home = Path(home).resolve()
        self.jars = Path(jars_dir).resolve() / "kafka"
        self.port = port
        self.controller_port = controller_port
        self.settings = settings or LocalBrokerSettings()
        self.data_dir = self.home / "data"
        self.config_file = self.home / "server.properties"
        self.log_file = self.home / "broker.log"
        self.pid_file = self.home / "broker.pid"

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    # -- state -----------------------------------------------------------------------------
    def _pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def _is_ours(self, pid: int) -> bool:
        cmd = _process_cmdline(pid)
        return cmd is not None and MAIN_CLASS in cmd and str(self.config_file) in cmd

    def status(self) -> BrokerStatus:
        pid = self._pid()
        if pid is not None and self._is_ours(pid):
            up = port_in_use(self.port)
            detail = "accepting connections" if up else "starting"
            return BrokerStatus(True, pid, self.bootstrap_servers, detail)
        return BrokerStatus(False, None, self.bootstrap_servers, "not running")

    # -- start -----------------------------------------------------------------------------
    def _classpath(self) -> str:
        if not list(self.jars.glob("kafka_2.13-*.jar")):
            raise PlatformError(f"Kafka jars not found in {self.jars}: run `make setup`")
        return str(self.jars / "*")

    def _write_config(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        lines = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": str(self.settings.partitions),
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # blocklist topics are compacted; keep the cleaner responsive on a laptop
            "log.cleaner.min.compaction.lag.ms": "0",
            "message.max.bytes": str(2 * 1024 * 1024),
        }
        self.config_file.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
        (self.home / "log4j2.properties").write_text(_LOG4J2.format(log=self.home / "server.log"))

    def _java_cmd(self, main: str, *args: str, heap_mb: int = 256) -> list[str]:
        java, major = java_version()
        if major < 17:
            raise PlatformError(f"Kafka 4 needs Java 17 or later, found Java {major} at {java}")
        return [
            java,
            f"-Xmx{heap_mb}m",
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
            "-cp",
            self._classpath(),
            main,
            *args,
        ]

    def _format_storage(self) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        # Kafka cluster ids are url-safe base64 of 16 bytes without padding; one that starts with
        # "-" reads as an option to kafka-storage ("--cluster-id: expected one argument")
        import base64

        cid = "-"
        while not cid[0].isalnum():
            cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        out = subprocess.run(
            self._java_cmd(STORAGE_TOOL, "format", "-t", cid, "-c", str(self.config_file)),
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            raise PlatformError(f"formatting Kafka storage failed: {(out.stderr or out.stdout).strip()[-300:]}")

    def start(self) -> BrokerStatus:
        """Start the broker and wait until it serves metadata; a no-op when it already runs."""
        current = self.status()
        if current.running:
            self._wait_ready(current.pid or 0)
            return self.status()
        for name, port in (("port", self.port), ("controller_port", self.controller_port)):
            if port_in_use(port):
                # e.g. the broker of another checkout (its `make kafka-down` stops it); a broker on
                # other ports also needs the clients pointed at it (kafka.bootstrap_servers)
                raise PlatformError(
                    f"port {port} is already taken by another process (another checkout's broker?): stop "
                    f"it, or choose another with local_broker.{name} (SIMGUARD_LOCAL_BROKER__{name.upper()})"
                    + (
                        " and point the clients at it (SIMGUARD_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:<port>)"
                        if name == "port" else ""
                    )
                )
        self._write_config()
        self._format_storage()
        cmd = self._java_cmd(MAIN_CLASS, str(self.config_file), heap_mb=self.settings.heap_mb)
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # survives the CLI that started it
                cwd=self.home,
            )
        self.pid_file.write_text(str(proc.pid))
        try:
            self._wait_ready(proc.pid, proc=proc)
        except BaseException:
            # never leave a half-started broker behind: whoever called start() gets no handle
            proc.kill()
            proc.wait(timeout=30)
            self.pid_file.unlink(missing_ok=True)
            raise
        return self.status()

    def _wait_ready(self, pid: int, *, proc: subprocess.Popen[bytes] | None = None) -> None:
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        deadline = time.monotonic() + self.settings.start_timeout_s
        last = "no answer"
        while time.monotonic() < deadline:
            # right after Popen the child may not have exec'd java yet, so its command line is
            # still ours: ask the Popen object when we have it
            exited = proc.poll() is not None if proc is not None else not self._is_ours(pid)
            if exited:
                tail = self._log_tail()
                raise PlatformError(f"Kafka broker exited during start-up; see {self.log_file}: {tail}")
            if port_in_use(self.port):
                try:
                    admin = KafkaAdminClient(
                        bootstrap_servers=[self.bootstrap_servers],
                        request_timeout_ms=5000,
                        client_id="simguard-broker-check",
                    )
                    try:
                        admin.list_topics()
                        return
                    finally:
                        admin.close()
                except KafkaError as exc:
                    last = type(exc).__name__
            time.sleep(0.5)
        raise PlatformError(
            f"Kafka broker did not become ready within {self.settings.start_timeout_s:.0f}s "
            f"({last}); see {self.log_file}"
        )

    def _log_tail(self) -> str:
        lines: list[str] = []
        for path in (self.log_file, self.home / "server.log"):
            try:
                lines += [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
            except OSError:
                continue
        errors = [ln for ln in lines if "ERROR" in ln or "Exception" in ln]
        return (errors or lines or ["(empty log)"])[-1][:300]

    # -- stop ------------------------------------------------------------------------------
    def stop(self, *, timeout_s: float = 30.0) -> bool:
        """Stop the broker this folder started. Returns False when none was running."""
        pid = self._pid()
        if pid is None or not self._is_ours(pid):
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self._is_ours(pid):
            _reap(pid)
            time.sleep(0.2)
        if self._is_ours(pid):
            os.kill(pid, signal.SIGKILL)
            while self._is_ours(pid):
                _reap(pid)
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)
        return True


def _reap(pid: int) -> None:
    """Collect the exit status when the broker is our own child (tests), so it leaves no zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
