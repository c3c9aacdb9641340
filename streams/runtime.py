"""Running the pipeline: infrastructure, the worker, publishing files, waiting.

Shared by the `worker`, `send` and `replay` commands and by the integration
tests, so they all start things the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import faust
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # type: ignore[import-untyped]

from models.events import ROUTES, route
from models.parse import Rejection, parse_event
from sinks.redis_sink import RedisSink
from streams.app import DLQ, TOPICS, Pipeline
from streams.embedded import EmbeddedBroker, EmbeddedRedis, create_topics
from streams.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Endpoints:
    broker: str
    """kafka://host:port[;host:port]"""
    redis_url: str

    @property
    def bootstrap(self) -> str:
        return self.broker.removeprefix("kafka://").replace(";", ",")


@contextlib.contextmanager
def infrastructure(settings: Settings) -> Iterator[tuple[Settings, Endpoints]]:
    """The configured broker and Redis, or embedded ones started (and stopped) here.

    Returns the settings to run with: on the embedded broker they switch on
    `single_record_batches` (see `Settings`).
    """
    with contextlib.ExitStack() as stack:
        if settings.broker is None:
            broker = stack.enter_context(EmbeddedBroker()).url
            settings = settings.model_copy(update={"single_record_batches": True})
        else:
            broker = settings.broker
        redis_url = settings.redis_url or stack.enter_context(EmbeddedRedis()).url
        yield settings, Endpoints(broker, redis_url)


def sink_for(settings: Settings, redis_url: str, max_wait: float | None = None) -> RedisSink:
    """The Redis sink for `settings`; `max_wait` None retries an outage forever."""
    password = settings.redis_password.get_secret_value() if settings.redis_password else None
    return RedisSink.from_url(
        redis_url, password=password, prefix=settings.key_prefix, max_wait=max_wait
    )


def all_topics(settings: Settings) -> dict[str, int]:
    """Every topic the pipeline uses, with the partition count it needs."""
    return {settings.topic(name): settings.partitions for name in TOPICS}


def run_worker(settings: Settings, endpoints: Endpoints) -> None:
    """Create the topics, then run a Faust worker in this process until signalled."""
    asyncio.run(create_topics(endpoints.bootstrap, all_topics(settings)))
    if settings.data_dir is None:  # memory store: nothing to keep, one dir per process
        settings = settings.model_copy(update={"data_dir": tempfile.mkdtemp(prefix="pp-worker-")})
    pipeline = Pipeline(settings, endpoints.broker, sink_for(settings, endpoints.redis_url))
    worker = faust.Worker(pipeline.app, loglevel=os.environ.get("PP_LOGLEVEL", "warning"))
    worker.execute_from_commandline()


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
        if name in {"redis_password", "kafka_sasl_password", "broker", "redis_url"}:
            continue
        out[f"PP_{name.upper()}"] = str(value)
    return out


def stop_worker(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM (Faust shuts down cleanly, committing offsets), SIGKILL after `timeout`."""
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


async def send_file(path: Path, settings: Settings, bootstrap: str) -> dict[str, int]:
    """Publish every non-blank line of `path`; returns messages per topic."""
    await create_topics(bootstrap, all_topics(settings))
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=20,
        max_batch_size=settings.producer_batch_bytes,
        acks="all",
    )
    await producer.start()
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


async def end_offsets(bootstrap: str, topics: Mapping[str, int]) -> dict[tuple[str, int], int]:
    """The next offset of every partition (so the last message is `end - 1`)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t, n in topics.items() for p in range(n)]
        ends = await consumer.end_offsets(tps)
        return {(tp.topic, tp.partition): int(off) for tp, off in ends.items()}
    finally:
        await consumer.stop()


async def wait_until_applied(
    settings: Settings, endpoints: Endpoints, sink: RedisSink, timeout: float
) -> None:
    """Block until every message of every topic the workers read has been applied.

    Agents produce (and flush) internal messages before the sink records the
    offsets that caused them, so "all end offsets applied, twice in a row"
    means nothing is in flight anywhere.
    """
    topics = {t: n for t, n in all_topics(settings).items() if t != settings.topic(DLQ)}
    deadline = time.monotonic() + timeout
    settled = 0
    while settled < 2:
        if time.monotonic() > deadline:
            raise TimeoutError(f"not applied within {timeout:.0f}s")
        ends = await end_offsets(endpoints.bootstrap, topics)
        applied = await sink.read_offsets()
        done = all(applied.get(tp, -1) >= end - 1 for tp, end in ends.items() if end > 0)
        settled = settled + 1 if done else 0
        await asyncio.sleep(0.5)
