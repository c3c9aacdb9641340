"""Reading a whole topic back in tests."""

from __future__ import annotations

import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition  # type: ignore[import-untyped]


async def read_topic(
    bootstrap: str, topic: str, partitions: int, expected: int = 0, timeout: float = 60
) -> list[Any]:
    """Every committed record of `topic`, from the beginning.

    ``read_committed``, as downstream consumers of the outputs should read:
    on Apache Kafka the outputs are transactional, and an aborted
    transaction's messages (produced again in a later one) are skipped.

    Reads until at least `expected` records arrived and a fetch comes back
    empty, or `timeout` passes.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = await consumer.getmany(*tps, timeout_ms=1500)
            for records in batch.values():
                out += records
            if not batch and len(out) >= expected:
                break
        return out
    finally:
        await consumer.stop()
