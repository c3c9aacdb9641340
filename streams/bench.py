"""`partnerpulse bench`: the pipeline's speed beside a raw aiokafka baseline.

Everything is measured in one run on the same broker and Redis, so the
ratios mean something on a noisy machine; nothing here asserts a timing.

- baseline: aiokafka consume + JSON decode of the same messages, no Faust;
- throughput: a worker started on a topic already holding N events, timed
  from its first applied batch to the last committed offset;
- latency: events produced at a steady rate into a running worker, each
  timed from its produce acknowledgement to Redis showing its offset applied.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # type: ignore[import-untyped]

from models.synthetic import SyntheticConfig, generate
from streams.embedded import create_topics
from streams.runtime import ReplayRun, replay_run, sink_for
from streams.settings import Settings


@dataclass(frozen=True)
class BenchResult:
    events: int
    baseline_rate: float
    pipeline_rate: float
    latency_rate: float
    p50_ms: float
    p99_ms: float

    def lines(self) -> list[str]:
        return [
            f"events                      {self.events}",
            f"raw aiokafka consume+decode {self.baseline_rate:12,.0f} msg/s",
            f"full pipeline               {self.pipeline_rate:12,.0f} events/s "
            f"({self.pipeline_rate / self.baseline_rate:.1%} of raw)",
            f"event→Redis latency @ {self.latency_rate:,.0f}/s  "
            f"p50 {self.p50_ms:.0f} ms  p99 {self.p99_ms:.0f} ms",
        ]


def run_bench(
    events: int, partitions: int, rate: float, seconds: float, workdir: Path
) -> BenchResult:
    path = workdir / "bench.jsonl"
    leads = max(10, events // 9)  # the generator makes ~9 events per lead
    items = [i for i in generate(SyntheticConfig(seed=99, leads=leads)) if not isinstance(i, str)]
    path.write_bytes(b"\n".join(orjson.dumps(i) for i in items[:events]) + b"\n")
    count = min(events, len(items))
    with replay_run(Settings(), partitions=partitions) as run:
        baseline = asyncio.run(_baseline(run, path, count))
        run.send(path)
        started = time.monotonic()
        run.start_worker()
        first = _first_applied(run, started)
        _ = run.collect(timeout=900, keep=True)
        pipeline = count / (time.monotonic() - first)
        latencies = asyncio.run(_latency(run, rate, seconds))
    return BenchResult(
        count,
        baseline,
        pipeline,
        rate,
        statistics.median(latencies) * 1000,
        statistics.quantiles(latencies, n=100)[98] * 1000,
    )


def _first_applied(run: ReplayRun, since: float) -> float:
    """When the worker applied its first batch: start-up is not throughput."""
    while not run.applied():
        if time.monotonic() - since > 120:
            raise TimeoutError(run.worker_logs())
        time.sleep(0.05)
    return time.monotonic()


async def _baseline(run: ReplayRun, path: Path, count: int) -> float:
    """Produce the file to a scratch topic, then time consuming + decoding it."""
    topic = run.settings.topic("bench-baseline")
    bootstrap = run.endpoints.bootstrap
    await create_topics(bootstrap, {topic: run.settings.partitions})
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        pending = [await producer.send(topic, line.rstrip(b"\n")) for line in path.open("rb")]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(run.settings.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen = 0
        started = time.perf_counter()
        while seen < count:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=10_000)).values():
                for record in records:
                    orjson.loads(record.value)
                seen += len(records)
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def _latency(run: ReplayRun, rate: float, seconds: float) -> list[float]:
    """Touches at `rate`/s; latency = produce ack → offset applied in Redis."""
    topic = run.settings.topic("leads")
    producer = AIOKafkaProducer(bootstrap_servers=run.endpoints.bootstrap)
    await producer.start()
    sent: dict[tuple[str, int], list[tuple[int, float]]] = {}
    try:
        total = int(rate * seconds)
        started = time.monotonic()
        for n in range(total):
            await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
            value = orjson.dumps(
                {
                    "type": "touch",
                    "event_id": f"bench-{n}",
                    "occurred_at": "2026-06-01T00:00:00+00:00",
                    "lead_id": f"bench-lead-{n % 997}",
                    "campaign": "2026Q2_ptnr_slack_webinar_emea_bench",
                    "action": "attended",
                }
            )
            future = await producer.send(topic, value, key=f"bench-lead-{n % 997}".encode())
            future.add_done_callback(
                lambda f: sent.setdefault((topic, f.result().partition), []).append(
                    (f.result().offset, time.monotonic())
                )
            )
        await producer.flush()
    finally:
        await producer.stop()
    return await _applied_latencies(run, sent)


async def _applied_latencies(
    run: ReplayRun, sent: dict[tuple[str, int], list[tuple[int, float]]]
) -> list[float]:
    sink = sink_for(run.settings, run.endpoints.redis_url)
    waiting = {tp: sorted(items) for tp, items in sent.items()}
    latencies: list[float] = []
    deadline = time.monotonic() + 300
    try:
        while any(waiting.values()) and time.monotonic() < deadline:
            applied = await sink.read_offsets()
            now = time.monotonic()
            for tp, items in waiting.items():
                done = applied.get(tp, -1)
                while items and items[0][0] <= done:
                    latencies.append(now - items.pop(0)[1])
            await asyncio.sleep(0.005)
        await sink.delete_all()
    finally:
        await sink.close()
    return latencies
