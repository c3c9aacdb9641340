"""A real Apache Kafka (KRaft) on loopback, from its Maven Central jars.

Users run PartnerPulse beside Apache Kafka, so the tests must too (SPEC §7).
No Docker engine is needed: :func:`kafka_libs` resolves the broker
(``org.apache.kafka:kafka_2.13``) and its runtime dependencies with Maven,
from the small pom shipped beside this module, into a cache folder
(``~/.cache/partnerpulse/kafka-<version>/libs``), once per machine.
:class:`KafkaCluster` then formats KRaft storage and starts ``kafka.Kafka``
processes, each a combined broker + controller, on ``127.0.0.1``:

* one node (``PP_EMBEDDED_BROKER=apache-kafka``: `demo`, `replay`, `worker`,
  `bench` and the tests), or
* N nodes forming one cluster (the reliability tests), each of which can be
  SIGKILLed and restarted on its own data, as a crashed broker would be.

The broker settings are tuned for quick starts and short rebalances
(``group.initial.rebalance.delay.ms=0``, few internal partitions) and for
production-like topic handling (no auto-created topics): `cluster_settings`
(shared with docker-compose.yml) and `QUICK` (test-only tuning).
"""

from __future__ import annotations

import atexit
import base64
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import time
import uuid
from importlib.resources import files
from pathlib import Path

from streams.embedded import (
    LOOPBACK,
    BrokerStartError,
    Service,
    _tail,
    _terminate,
    find_free_port,
    kafka_metadata_brokers,
)

__all__ = [
    "KAFKA_VERSION",
    "QUICK",
    "KafkaCluster",
    "cluster_settings",
    "kafka_cache_dir",
    "kafka_libs",
]

KAFKA_VERSION = "4.1.1"
"""The Apache Kafka release the tests, the embedded broker and docker-compose.yml run."""

_LOG4J2 = """\
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.kafka.name = org.apache.kafka
logger.kafka.level = WARN
"""

#: JVM options: a small heap and the serial collector, since the machines
#: this runs on (laptops, 2-core CI) are shared with workers and Redis.
_JVM_OPTIONS = ("-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-Djava.awt.headless=true")


def cluster_settings(brokers: int) -> dict[str, str]:
    """Broker settings of a cluster of `brokers` that docker-compose.yml uses too.

    The internal topics' replication follows the cluster size (3 when there
    are 3 or more, as in production; 1 on one node), with 2 in-sync
    replicas where there are 3;
    ``group.initial.rebalance.delay.ms=0`` makes a consumer group usable at
    once; ``auto.create.topics.enable=false`` is what managed clusters do, so
    a topic the product forgot to create fails in the tests too
    (streams/admin.py creates them all).
    """
    replicas = min(3, brokers)
    return {
        "offsets.topic.replication.factor": str(replicas),
        "transaction.state.log.replication.factor": str(replicas),
        "transaction.state.log.min.isr": str(min(2, replicas)),
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
    }


QUICK = {
    "offsets.topic.num.partitions": "4",
    "transaction.state.log.num.partitions": "4",
    "group.min.session.timeout.ms": "1000",
    "broker.heartbeat.interval.ms": "500",
    "broker.session.timeout.ms": "4000",
    "num.network.threads": "2",
    "num.io.threads": "2",
    "num.recovery.threads.per.data.dir": "1",
}
"""Test-only tuning, not for production: few internal partitions (quick group
and transaction coordinator start), session timeouts down to 1 s (Kafka's
floor is 6 s; the chaos tests use 3 s so a killed worker's partitions move
on quickly), a killed broker fenced within 4 s, few threads (2-core CI)."""


def kafka_cache_dir(version: str = KAFKA_VERSION) -> Path:
    """Where the jars of `version` are cached (``$XDG_CACHE_HOME`` or ``~/.cache``)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "partnerpulse" / f"kafka-{version}"


def kafka_libs(version: str = KAFKA_VERSION, *, timeout: float = 900.0) -> Path:
    """The folder of Kafka's jars, resolved with Maven on first use (a cold cache).

    Maven runs in a fresh temporary folder next to the cache (a copy of the
    shipped pom, so a read-only install works) and the result is renamed into
    place only when complete: concurrent first uses (parallel tests, several
    workers) each resolve, one rename wins, and an interrupted resolve leaves
    nothing behind that looks finished.
    """
    libs = kafka_cache_dir(version) / "libs"
    if (libs / f"kafka_2.13-{version}.jar").is_file():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerStartError("Apache Kafka needs Maven (`mvn`) to fetch its jars once")
    libs.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="resolve-", dir=libs.parent))
    try:
        pom = work / "pom.xml"
        pom.write_bytes(files("streams").joinpath("apache-kafka-pom.xml").read_bytes())
        result = subprocess.run(  # noqa: S603  (argument list, no shell)
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                f"-Dkafka.version={version}",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={work / 'libs'}",
            ],
            cwd=work,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr).decode(errors="replace")[-3000:]
            raise BrokerStartError(f"mvn could not resolve Kafka {version}:\n{output}")
        try:
            (work / "libs").rename(libs)
        except OSError:
            if not libs.is_dir():  # not another resolve winning the race
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return libs


class KafkaCluster(Service):
    """`brokers` Apache Kafka nodes (KRaft, broker + controller) on loopback.

    Usage::

        with KafkaCluster() as kafka:          # one node
            settings = Settings(broker=kafka.url)
        with KafkaCluster(brokers=3) as kafka:
            kafka.kill(1)                      # SIGKILL, as a crash
            kafka.restart(1)                   # on its own data

    Storage lives in a temporary folder removed on :meth:`stop`. Every node
    is a controller too (a quorum of `brokers` voters), so a 3-node cluster
    survives the loss of any one node, controller included.
    """

    def __init__(
        self,
        brokers: int = 1,
        *,
        version: str = KAFKA_VERSION,
        startup_timeout: float = 120.0,
        stop_timeout: float = 20.0,
    ) -> None:
        if brokers < 1:
            raise ValueError("brokers must be >= 1")
        self.brokers = brokers
        self.version = version
        self._startup_timeout = startup_timeout
        self._stop_timeout = stop_timeout
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self._ports: list[tuple[int, int]] = []
        """(broker port, controller port) per node."""
        self._procs: list[subprocess.Popen[bytes] | None] = []

    # -- properties -------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:P1,127.0.0.1:P2"``: aiokafka's ``bootstrap_servers``."""
        if not self._ports:
            raise RuntimeError("KafkaCluster is not running")
        return ",".join(f"{LOOPBACK}:{port}" for port, _ in self._ports)

    @property
    def url(self) -> str:
        """``"kafka://127.0.0.1:P1;127.0.0.1:P2"``: the form of ``PP_BROKER``."""
        return "kafka://" + self.bootstrap.replace(",", ";")

    @property
    def folder(self) -> Path:
        """The cluster's temporary folder: node storage and ``node-<i>.log`` files."""
        if self._tmpdir is None:
            raise RuntimeError("KafkaCluster is not running")
        return Path(self._tmpdir.name)

    def pid(self, node: int) -> int | None:
        """PID of node `node`'s JVM, None when it is not running."""
        proc = self._procs[node]
        return proc.pid if proc is not None and proc.poll() is None else None

    def log_tail(self, node: int, max_chars: int = 3000) -> str:
        """The end of node `node`'s log (for failing tests)."""
        return _tail(self.folder / f"node-{node}.log", max_chars)

    # -- lifecycle --------------------------------------------------------------

    def start(self) -> KafkaCluster:
        """Resolve the jars if needed, format every node, start them, wait for all.

        A port taken between probing and binding shows as a node exiting
        during start-up; then the whole cluster is tried again on new ports
        (three attempts).
        """
        if self._procs:
            return self
        libs = kafka_libs(self.version)
        error = ""
        for _ in range(3):
            self._tmpdir = tempfile.TemporaryDirectory(prefix="apache-kafka-")
            self._ports = [(find_free_port(), find_free_port()) for _ in range(self.brokers)]
            try:
                self._format(libs)
                self._procs = [self._spawn(libs, node) for node in range(self.brokers)]
                self._wait_ready(range(self.brokers))
            except BrokerStartError as exc:
                error = str(exc)
                self.stop()
                continue
            atexit.register(self.stop)
            return self
        raise BrokerStartError(error)

    def stop(self) -> None:
        """SIGTERM every node (a clean shutdown), SIGKILL after `stop_timeout`."""
        procs, self._procs = self._procs, []
        for proc in procs:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            if proc is not None:
                _terminate(proc, self._stop_timeout)
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None
        self._ports = []
        atexit.unregister(self.stop)

    def kill(self, node: int) -> None:
        """SIGKILL node `node`: a crash, no controlled shutdown, unflushed pages lost."""
        proc = self._procs[node]
        if proc is not None:
            proc.kill()
            proc.wait()
        self._procs[node] = None

    def restart(self, node: int) -> None:
        """Start node `node` again on its own storage and wait until the cluster sees it."""
        if self.pid(node) is not None:
            raise RuntimeError(f"node {node} is running")
        self._procs[node] = self._spawn(kafka_libs(self.version), node)
        self._wait_ready([node])

    # -- internals --------------------------------------------------------------

    def _node_config(self, node: int) -> str:
        """``server.properties`` of one node: its addresses, `cluster_settings`, `QUICK`."""
        port, controller = self._ports[node]
        voters = ",".join(f"{i}@{LOOPBACK}:{c}" for i, (_, c) in enumerate(self._ports))
        settings = {
            "process.roles": "broker,controller",
            "node.id": node,
            "listeners": f"PLAINTEXT://{LOOPBACK}:{port},CONTROLLER://{LOOPBACK}:{controller}",
            "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.quorum.voters": voters,
            "log.dirs": str(self.folder / f"node-{node}"),
            **cluster_settings(self.brokers),
            **QUICK,
        }
        return "".join(f"{key}={value}\n" for key, value in settings.items())

    def _java(self, libs: Path, *args: str) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise BrokerStartError("Apache Kafka needs Java 17 or later (`java` on PATH)")
        log4j = self.folder / "log4j2.properties"
        return [
            java,
            *_JVM_OPTIONS,
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp",
            f"{libs}/*",
            *args,
        ]

    def _format(self, libs: Path) -> None:
        """``kafka.tools.StorageTool format`` every node with one cluster id, in parallel."""
        (self.folder / "log4j2.properties").write_text(_LOG4J2)
        cluster_id = _kafka_uuid()
        formats = []
        for node in range(self.brokers):
            config = self.folder / f"node-{node}.properties"
            config.write_text(self._node_config(node))
            command = self._java(libs, "kafka.tools.StorageTool", "format")
            command += ["--cluster-id", cluster_id, "--config", str(config)]
            formats.append(  # argument list, no shell
                subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # noqa: S603
            )
        for node, process in enumerate(formats):
            output, _ = process.communicate()
            if process.returncode != 0:
                text = output.decode(errors="replace")[-2000:]
                raise BrokerStartError(f"formatting node {node} failed:\n{text}")

    def _spawn(self, libs: Path, node: int) -> subprocess.Popen[bytes]:
        config = self.folder / f"node-{node}.properties"
        with (self.folder / f"node-{node}.log").open("ab") as log:
            return subprocess.Popen(  # noqa: S603  (argument list, no shell)
                self._java(libs, "kafka.Kafka", str(config)),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Own process group: a Ctrl-C aimed at the caller does not race
                # our orderly shutdown.
                start_new_session=True,
            )

    def _wait_ready(self, nodes: range | list[int]) -> None:
        """Until each of `nodes` answers Metadata listing every running node."""
        deadline = time.monotonic() + self._startup_timeout
        expected = {i for i in range(self.brokers) if self._procs[i] is not None}
        for node in nodes:
            port = self._ports[node][0]
            while True:
                proc = self._procs[node]
                if proc is None or proc.poll() is not None:
                    raise BrokerStartError(
                        f"Kafka node {node} exited during start-up:\n{self.log_tail(node)}"
                    )
                try:
                    listed = {n for n, _, _ in kafka_metadata_brokers(LOOPBACK, port)}
                except (OSError, struct.error):
                    listed = set()
                if listed >= expected:
                    break
                if time.monotonic() > deadline:
                    raise BrokerStartError(
                        f"Kafka node {node} not ready after {self._startup_timeout:.0f}s "
                        f"(sees {sorted(listed)}):\n{self.log_tail(node)}"
                    )
                time.sleep(0.1)


def _kafka_uuid() -> str:
    """A random cluster id in Kafka's form (URL-safe base64 of 16 bytes, no padding)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
