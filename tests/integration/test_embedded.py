"""Integration tests for ``streams.embedded`` (real tansu + real Redis).

The tests are synchronous and drive aiokafka with ``asyncio.run`` so they do
not depend on how pytest-asyncio is configured for the rest of the suite.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import Iterator

import pytest
from aiokafka import (  # type: ignore[import-untyped]
    AIOKafkaConsumer,
    AIOKafkaProducer,
    TopicPartition,
)

from streams.embedded import (
    EmbeddedBroker,
    EmbeddedRedis,
    kafka_metadata_brokers,
    redis_ping,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TOPIC = "embedded-smoke"
PARTITIONS = 4


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as running:
        yield running


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return False


def test_broker_binds_and_advertises_loopback(broker: EmbeddedBroker) -> None:
    host, port = broker.bootstrap.split(":")
    assert host == "127.0.0.1"
    assert broker.url == f"kafka://127.0.0.1:{port}"
    brokers = kafka_metadata_brokers("127.0.0.1", int(port))
    assert [(h, p) for _, h, p in brokers] == [("127.0.0.1", int(port))]
    # The listener is not reachable through a non-loopback address.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1, never routed; no packet sent
            outward = probe.getsockname()[0]
        except OSError:
            outward = "127.0.0.1"
    if not outward.startswith("127."):
        with pytest.raises(OSError):
            socket.create_connection((outward, int(port)), timeout=1).close()


def test_produce_consume_four_partitions(broker: EmbeddedBroker) -> None:
    broker.create_topics_sync({TOPIC: PARTITIONS})
    broker.create_topics_sync({TOPIC: PARTITIONS})  # idempotent
    assert asyncio.run(broker.partition_count(TOPIC)) == PARTITIONS

    n = 40

    async def roundtrip() -> dict[int, list[int]]:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await producer.start()
        try:
            for i in range(n):
                await producer.send_and_wait(
                    TOPIC, json.dumps({"i": i}).encode(), partition=i % PARTITIONS
                )
        finally:
            await producer.stop()

        consumer = AIOKafkaConsumer(
            TOPIC,
            bootstrap_servers=broker.bootstrap,
            group_id="embedded-smoke",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            session_timeout_ms=6000,  # tansu holds JoinGroup for session_timeout / 2
            heartbeat_interval_ms=1000,
        )
        await consumer.start()
        seen: dict[int, list[int]] = {}
        try:
            count = 0
            while count < n:
                batch = await asyncio.wait_for(consumer.getmany(timeout_ms=1000), 30)
                for tp, messages in batch.items():
                    for message in messages:
                        seen.setdefault(tp.partition, []).append(json.loads(message.value)["i"])
                        count += 1
            await consumer.commit()
            committed = await consumer.committed(TopicPartition(TOPIC, 0))
            assert committed == n // PARTITIONS
        finally:
            await consumer.stop()
        return seen

    seen = asyncio.run(roundtrip())
    assert sorted(seen) == list(range(PARTITIONS))
    for partition, values in seen.items():
        assert values == list(range(partition, n, PARTITIONS))


def test_end_offsets_counts_whole_batches(broker: EmbeddedBroker) -> None:
    """Tansu's ListOffsets undercounts multi-record batches; end_offsets must not."""
    broker.create_topics_sync({"embedded-batches": 2})

    async def produce_batch() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=50)
        await producer.start()
        try:
            sent = [await producer.send("embedded-batches", b"x", partition=0) for _ in range(10)]
            await asyncio.gather(*sent)
        finally:
            await producer.stop()

    asyncio.run(produce_batch())
    assert asyncio.run(broker.end_offsets("embedded-batches")) == {0: 10, 1: 0}


def test_broker_stop_terminates_process() -> None:
    broker = EmbeddedBroker()
    broker.start()
    pid = broker.pid
    assert pid is not None and broker.is_running()
    broker.stop()
    assert not _pid_alive(pid)
    broker.stop()  # idempotent


def test_embedded_redis_answers_ping() -> None:
    with EmbeddedRedis() as redis:
        assert redis.ping()
        assert redis.url.startswith("redis://127.0.0.1:")


def test_embedded_redis_private_server_lifecycle() -> None:
    with EmbeddedRedis(preferred_port=None) as redis:
        pid = redis.pid
        assert redis.owns_process and pid is not None
        assert redis.host == "127.0.0.1"
        assert redis_ping(redis.host, redis.port)
    assert not _pid_alive(pid)
