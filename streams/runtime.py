"""Running the pipeline: infrastructure, the worker, publishing files, waiting.

Shared by the `worker`, `send` and `replay` commands and by the integration
tests, so they all start things the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TypeVar

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # type: ignore[import-untyped]
from pydantic import SecretStr

from models.events import ROUTES, route
from models.parse import Rejection, parse_event
from models.subject import MetricKey
from sinks.redis_sink import RedisSink
from streams.admin import ensure_topics
from streams.apache_kafka import KafkaCluster
from streams.embedded import EmbeddedBroker, EmbeddedRedis
from streams.pipeline import RESTART_EXIT_CODE
from streams.processing import CONSUMED
from streams.settings import Settings
from streams.telemetry import Telemetry
from streams.worker import Worker

log = logging.getLogger(__name__)
_T = TypeVar("_T")


@dataclass(frozen=True)
class Endpoints:
    broker: str
    """kafka://host:port[;host:port]"""
    redis_url: str

    @property
    def bootstrap(self) -> str:
        return self.broker.removeprefix("kafka://").replace(";", ",")


def embedded_broker(settings: Settings) -> EmbeddedBroker | KafkaCluster:
    """The local broker `PP_EMBEDDED_BROKER` chooses (not started yet)."""
    return KafkaCluster() if settings.embedded_broker == "apache-kafka" else EmbeddedBroker()


@contextlib.contextmanager
def infrastructure(settings: Settings) -> Iterator[tuple[Settings, Endpoints]]:
    """The configured broker and Redis, or embedded ones started (and stopped) here."""
    with contextlib.ExitStack() as stack:
        broker = settings.broker
        if broker is None:
            local = embedded_broker(settings)
            stack.callback(local.stop)
            broker = local.start().url
        redis_url = settings.redis_url or stack.enter_context(EmbeddedRedis()).url
        yield settings, Endpoints(broker, redis_url)


def sink_for(settings: Settings, redis_url: str, max_wait: float | None = None) -> RedisSink:
    """The Redis sink for `settings` (`Settings.redis_sink`)."""
    return settings.redis_sink(redis_url, max_wait)


def run_worker(settings: Settings, endpoints: Endpoints) -> None:
    """Run a worker in this process until SIGTERM or SIGINT."""
    logging.basicConfig(
        level=os.environ.get("PP_LOGLEVEL", "warning").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        sink = sink_for(settings, endpoints.redis_url)
        telemetry = Telemetry(settings.runtime)
        served = None
        if settings.metrics_port:
            served = await telemetry.serve(settings.metrics_host, settings.metrics_port)
        try:
            await Worker(settings, endpoints.bootstrap, sink, telemetry).run(stop)
        finally:
            if served is not None:
                await served.cleanup()
            await sink.close()

    # The state cache keeps many long-lived objects, and the cyclic collector
    # rescanned them all every few thousand allocations (a batch parses
    # thousands of events): it showed up as a third of the parse time.  The
    # engine makes next to no cycles; a rarer first-generation collection
    # keeps what cycles there are in check.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    if settings.runtime == "faust":
        from streams.faust_app import run_faust_worker  # Faust is slow to import

        run_faust_worker(settings, endpoints.broker, endpoints.redis_url)
    else:
        asyncio.run(main())


def spawn_worker(
    settings: Settings, endpoints: Endpoints, log_path: Path
) -> subprocess.Popen[bytes]:
    """`partnerpulse worker` in a child process, configured through its environment."""
    env = {
        **os.environ,
        **settings_env(settings),
        "PP_BROKER": endpoints.broker,
        "PP_REDIS_URL": endpoints.redis_url,
    }
    with log_path.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def settings_env(settings: Settings) -> dict[str, str]:
    """The `PP_*` variables that reproduce `settings` in a child process (no secrets)."""
    out = {}
    for name, value in settings.model_dump(exclude_none=True).items():
        if isinstance(value, SecretStr) or name in {"broker", "redis_url"}:
            continue
        out[f"PP_{name.upper()}"] = str(value)
    return out


def stop_worker(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM (the worker finishes its batch and leaves the group), SIGKILL after `timeout`."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def destination(raw: bytes, settings: Settings) -> tuple[str, bytes | None]:
    """Topic and key for one line; a line that is not an event goes where its type says.

    Bad lines are published too (to their type's topic, else `leads`): the
    worker dead-letters them with their source offset and counts them, as
    `recompute` does.
    """
    item = parse_event(raw, max_bytes=sys.maxsize)
    if not isinstance(item, Rejection):
        topic, key = route(item)
        return settings.topic(topic), key.encode()
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        kind = orjson.loads(raw).get("type")
        if kind in ROUTES:
            return settings.topic(ROUTES[kind][0]), None
    return settings.topic("leads"), None


async def input_producer(settings: Settings, bootstrap: str) -> AIOKafkaProducer:
    """A started producer for the input topics (created first if missing)."""
    await ensure_topics(settings, bootstrap)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, acks="all", **settings.aiokafka_security()
    )
    await producer.start()
    return producer


async def send_file(path: Path, settings: Settings, bootstrap: str) -> dict[str, int]:
    """Publish every non-blank line of `path`; returns messages per topic."""
    producer = await input_producer(settings, bootstrap)
    counts: dict[str, int] = {}
    try:
        pending = []
        with path.open("rb") as handle:
            for line in handle:
                raw = line.rstrip(b"\r\n")
                if not raw.strip():
                    continue
                topic, key = destination(raw, settings)
                pending.append(await producer.send(topic, value=raw, key=key))
                counts[topic] = counts.get(topic, 0) + 1
                if len(pending) >= 5000:
                    await asyncio.gather(*pending)
                    pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return counts


class EndOffsets:
    """The log-end offset of many partitions, polled cheaply and right on any broker.

    A consumer assigned to every partition, positioned at its end, reads the
    high watermark from each fetch response.  (Tansu answers ListOffsets
    with the last record batch's base offset + 1, short of the end whenever
    a producer batched several records; its fetch high watermark is right.)
    """

    def __init__(self, bootstrap: str, topics: Mapping[str, int]) -> None:
        self.tps = [TopicPartition(t, p) for t, n in topics.items() for p in range(n)]
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100
        )

    async def __aenter__(self) -> EndOffsets:
        await self.consumer.start()
        self.consumer.assign(self.tps)
        await self.consumer.seek_to_end(*self.tps)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def read(self) -> dict[tuple[str, int], int]:
        """(topic, partition) -> next offset, once every partition has answered a fetch."""
        while True:
            await self.consumer.getmany(timeout_ms=100)
            ends = {tp: self.consumer.highwater(tp) for tp in self.tps}
            if all(end is not None for end in ends.values()):
                return {(tp.topic, tp.partition): int(end) for tp, end in ends.items()}


async def wait_until_applied(
    settings: Settings, endpoints: Endpoints, sink: RedisSink, timeout: float
) -> None:
    """Block until every message of every topic the workers read has been applied.

    Redis records the offsets it applied atomically with their effects, so
    the test is the applied offsets reaching the end of every partition (the
    internal topics included: what a batch produced is on the broker before
    the batch is applied), twice in a row, and the outbox being empty, so the
    Kafka outputs have caught up too.
    """
    topics = {settings.topic(name): settings.partitions for name in CONSUMED}
    deadline = time.monotonic() + timeout
    settled = 0
    async with EndOffsets(endpoints.bootstrap, topics) as ends:
        while settled < 2:
            if time.monotonic() > deadline:
                raise TimeoutError(f"not applied within {timeout:.0f}s")
            end = await ends.read()
            applied = await sink.read_offsets()
            done = all(applied.get(tp, -1) >= e - 1 for tp, e in end.items() if e > 0)
            done = done and await sink.outbox_length() == 0
            settled = settled + 1 if done else 0
            await asyncio.sleep(0.2)


class ReplayRun:
    """One isolated run of the real path: its own topics, group and Redis prefix.

    `replay` drives it; the integration and chaos tests drive it too, adding
    faults (killing and restarting workers) between the steps.
    """

    def __init__(self, settings: Settings, endpoints: Endpoints, logs: Path) -> None:
        self.settings = settings
        self.endpoints = endpoints
        self.logs = logs
        self.workers: list[subprocess.Popen[bytes]] = []
        self.restarts = 0
        self.delete_keys = False
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, daemon=True)

    def send(self, path: Path) -> dict[str, int]:
        return asyncio.run(send_file(path, self.settings, self.endpoints.bootstrap))

    def start_worker(self) -> subprocess.Popen[bytes]:
        with self._lock:
            process = self._spawn(len(self.workers))
            self.workers.append(process)
        if not self._supervisor.is_alive():
            self._supervisor.start()
        return process

    def _spawn(self, index: int) -> subprocess.Popen[bytes]:
        return spawn_worker(self.settings, self.endpoints, self.logs / f"worker-{index}.log")

    def _supervise(self) -> None:
        """Restart workers that exit asking for it (`RESTART_EXIT_CODE`), as a process
        manager would in production; killed workers are the caller's business."""
        while not self._stopping.wait(0.2):
            with self._lock:
                for index, process in enumerate(self.workers):
                    if process.poll() == RESTART_EXIT_CODE:
                        log.warning("worker %d asked for a restart", index)
                        self.workers[index] = self._spawn(index)
                        self.restarts += 1

    def applied(self) -> dict[tuple[str, int], int]:
        """Offsets applied so far (for tests that strike mid-stream)."""
        return asyncio.run(self._with_sink(lambda sink: sink.read_offsets()))

    def collect(
        self, timeout: float, keep: bool = False
    ) -> tuple[dict[tuple[str, str], int], dict[str, dict[str, Fraction]]]:
        """Wait until everything is applied, then read metrics and credits back."""

        async def read(
            sink: RedisSink,
        ) -> tuple[dict[MetricKey, int], dict[str, dict[str, Fraction]]]:
            await wait_until_applied(self.settings, self.endpoints, sink, timeout)
            return await sink.read_metrics(), await sink.read_credits()

        self.delete_keys = not keep
        return asyncio.run(self._with_sink(read))

    def worker_logs(self, tail: int = 3000) -> str:
        return "\n".join(p.read_text()[-tail:] for p in sorted(self.logs.glob("worker-*.log")))

    def stop(self) -> None:
        """Stop the workers, then (unless kept) remove the run's Redis keys: a
        running worker's forwarder would recreate its outbox."""
        self._stopping.set()
        with self._lock:
            for process in self.workers:
                stop_worker(process)
        if self.delete_keys:
            asyncio.run(self._with_sink(lambda sink: sink.delete_all()))

    async def _with_sink(self, use: Callable[[RedisSink], Awaitable[_T]]) -> _T:
        sink = sink_for(self.settings, self.endpoints.redis_url)
        try:
            return await use(sink)
        finally:
            await sink.close()


@contextlib.contextmanager
def replay_run(base: Settings, **overrides: object) -> Iterator[ReplayRun]:
    """A `ReplayRun` with fresh names; stops its workers and embedded servers on exit."""
    run_id = uuid.uuid4().hex[:10]
    settings = base.model_copy(
        update={
            "app_id": f"pp-replay-{run_id}",
            "topic_prefix": f"{base.topic_prefix}replay-{run_id}.",
            "key_prefix": f"{base.key_prefix}replay:{run_id}:",
            **overrides,
        }
    )
    with infrastructure(settings) as (settings, endpoints), tempfile.TemporaryDirectory() as logs:
        run = ReplayRun(settings, endpoints, Path(logs))
        try:
            yield run
        finally:
            run.stop()
