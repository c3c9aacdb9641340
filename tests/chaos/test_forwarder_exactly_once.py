"""Exactly-once Kafka outputs on Apache Kafka: the forwarder SIGKILLed again and again.

The outbox is filled by the real sink (a synthetic stream through the
engine, in batches); forwarder processes relay it and are killed at random
moments, inside transactions or between a commit and the deletion of the
entries; each successor fences its predecessor and resumes after the last
committed entry.  A ``read_committed`` consumer that does **not**
deduplicate must see every message id once and sum to the Redis totals.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
import uuid
from pathlib import Path
from subprocess import STDOUT

import orjson
import pytest

from datagen import SyntheticConfig
from sinks.redis_sink import RedisSink
from streams.admin import create_topics
from tests.integration.engine_batches import engine_run
from tests.integration.kafka_topics import read_topic
from tests.integration.test_forwarder import assert_sums_match
from tests.local_redis import REDIS_URL

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.integration,
    pytest.mark.apache_kafka,
    pytest.mark.timeout(400),
]


@pytest.mark.parametrize("broker", ["apache-kafka"], indirect=True)
async def test_forwarder_sigkilled_repeatedly_outputs_exactly_once(
    sink: RedisSink, broker: str, tmp_path: Path
) -> None:
    run = engine_run(
        SyntheticConfig(seed=51, leads=300, duplicates=0.03, shuffle=0.4, invalid=0.01), 20
    )
    for batch in run.batches:
        await sink.apply(batch.contributions, batch.dead_letters, batch.offsets)
    entries = await sink.outbox_length()
    assert entries >= 100
    bootstrap = broker.removeprefix("kafka://").replace(";", ",")
    name = uuid.uuid4().hex[:8]
    metrics, credits = f"eos-{name}.metrics", f"eos-{name}.credits"
    await create_topics(bootstrap, {metrics: 3, credits: 3})
    command = [
        sys.executable,
        "-m",
        "tests.chaos.forwarder_process",
        REDIS_URL,
        sink.keys.prefix,
        bootstrap,
        metrics,
        credits,
        f"eos-{name}.outbox",
    ]
    log = tmp_path / "forwarder.log"

    async def spawn() -> asyncio.subprocess.Process:
        with log.open("ab") as out:
            return await asyncio.create_subprocess_exec(*command, stdout=out, stderr=STDOUT)

    async def outbox_below(length: int, process: asyncio.subprocess.Process) -> None:
        deadline = time.monotonic() + 60
        while True:
            if await sink.outbox_length() < length or process.returncode is not None:
                return
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            await asyncio.sleep(0.05)

    rng = random.Random(51)
    kills = 0
    while kills < 10 and (before := await sink.outbox_length()):
        process = await spawn()
        await outbox_below(before, process)  # a kill only counts once this one is moving
        await asyncio.sleep(rng.uniform(0.0, 0.6))
        process.kill()
        await process.wait()
        kills += 1 if await sink.outbox_length() else 0
    assert kills >= 5, "most kills should land before the outbox is drained"
    last = await spawn()
    try:
        await outbox_below(1, last)
        assert last.returncode is None, log.read_text()[-3000:]
    finally:
        last.kill()
        await last.wait()

    records = [
        (topic, record.key, record.value)
        for topic in (metrics, credits)
        for record in await read_topic(bootstrap, topic, 3)
    ]
    ids = [orjson.loads(value)["id"] for _, _, value in records]
    assert len(ids) == len(set(ids)), "a read_committed consumer saw a message twice"
    renamed = {metrics: "partnerpulse.metrics", credits: "partnerpulse.credits"}
    await assert_sums_match(sink, [(renamed[t], k, v) for t, k, v in records])
