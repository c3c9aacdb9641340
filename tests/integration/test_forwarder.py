"""The outbox forwarder against a real Redis (127.0.0.1:6379) and the embedded broker.

Each test uses its own random key prefix and deletes its keys afterwards.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import (  # type: ignore[import-untyped]
    AIOKafkaProducer,
)

from datagen import SyntheticConfig
from models.subject import Contribution, CreditLine, MetricKey
from sinks.forwarder import (
    CREDITS_TOPIC,
    METRICS_TOPIC,
    AiokafkaOutput,
    OutboxForwarder,
    TransactionalForwarder,
    forward_outbox,
)
from sinks.redis_sink import DeadLetter, RedisSink
from streams.admin import create_topics
from streams.embedded import EmbeddedBroker
from tests.integration.engine_batches import TOPIC, Batch, engine_run
from tests.integration.kafka_topics import read_topic
from tests.integration.replay_checks import moved, points_of

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

BATCH = 100


@cache
def engine_batches() -> list[Batch]:
    """A small synthetic stream through the engine, settled every 100 events."""
    config = SyntheticConfig(seed=11, leads=80, duplicates=0.03, shuffle=0.3, invalid=0.02)
    batches = engine_run(config, BATCH).batches
    assert len(batches) >= 5
    return batches


async def apply_all(sink: RedisSink) -> int:
    """Every batch through the sink; returns the number of outbox entries written."""
    entries = 0
    for batch in engine_batches():
        result = await sink.apply(batch.contributions, batch.dead_letters, batch.offsets)
        entries += len(result.outbox_ids)
    return entries


class Recorder:
    """An in-memory Kafka: `send` records (topic, key, value); optionally fails."""

    def __init__(self, fail_after: int | None = None, failures: int = 0) -> None:
        self.messages: list[tuple[str, bytes, bytes]] = []
        self.fail_after = fail_after
        self.failures = failures
        self.flushes = 0

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        if self.fail_after is not None and len(self.messages) >= self.fail_after:
            self.fail_after = None
            raise ConnectionError("broker gone")
        if self.failures:
            self.failures -= 1
            raise ConnectionError("broker not yet back")
        self.messages.append((topic, key, value))

    async def flush(self) -> None:
        self.flushes += 1


def forwarder(sink: RedisSink, out: Recorder | AiokafkaOutput, name: str, **kw: Any) -> Any:
    kw.setdefault("block", 0)
    return OutboxForwarder(
        sink.client, out.send, out.flush, consumer=name, prefix=sink.keys.prefix, **kw
    )


async def drain(fwd: OutboxForwarder, count: int = 3) -> int:
    total = 0
    while n := await fwd.run_once(count):
        total += n
    return total


def dedupe(messages: list[tuple[str, bytes, bytes]]) -> list[tuple[str, bytes, dict[str, Any]]]:
    seen: dict[str, tuple[str, bytes, bytes]] = {}
    for topic, key, value in messages:
        ident = orjson.loads(value)["id"]
        if ident in seen:  # a re-production repeats the message exactly
            assert seen[ident] == (topic, key, value)
        seen[ident] = (topic, key, value)
    return [(t, k, orjson.loads(v)) for t, k, v in seen.values()]


async def assert_sums_match(sink: RedisSink, messages: list[tuple[str, bytes, bytes]]) -> None:
    """Forwarded deltas, deduplicated by id, sum to what Redis holds."""
    metric_sum: dict[MetricKey, int] = {}
    latest: dict[MetricKey, tuple[tuple[int, ...], int]] = {}
    credit_sum: dict[tuple[str, str], Fraction] = {}
    units_sum: dict[tuple[str, str], int] = {}
    for topic, key, m in dedupe(messages):
        entry, _, index = m["id"].rpartition(":")
        order = (*map(int, entry.split("-")), int(index))
        if topic == METRICS_TOPIC:
            assert key == m["scope"].encode()
            for k, point in points_of(m).items():
                metric_sum[k] = metric_sum.get(k, 0) + point["delta"]
                if k not in latest or latest[k][0] < order:
                    latest[k] = (order, point["value"])
        else:
            assert topic == CREDITS_TOPIC and key == m["subject"].encode()
            c = (m["subject"], m["touch_id"])
            num, _, den = m["credit"].partition("/")
            credit_sum[c] = credit_sum.get(c, Fraction(0)) + Fraction(int(num), int(den))
            units_sum[c] = units_sum.get(c, 0) + m["units"]
    metrics = await sink.read_metrics()
    assert metrics
    assert {k: v for k, v in metric_sum.items() if v} == metrics
    # the update with the greatest id carries the current absolute value
    assert {k: v for k, (_, v) in latest.items() if v} == metrics
    credits = await sink.read_credits()
    assert credits
    assert {k: v for k, v in credit_sum.items() if v} == {
        (subject, touch): share
        for subject, lines in credits.items()
        for touch, share in lines.items()
    }
    units: dict[tuple[str, str], int] = {}
    for subject in credits:
        for touch, line in (await sink.read_credit_lines(subject)).items():
            if line.units:
                units[(subject, touch)] = line.units
    assert {k: v for k, v in units_sum.items() if v} == units


async def wait_until_forwarded(sink: RedisSink, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if await outbox_state(sink) == (0, 0):
            return
        assert time.monotonic() < deadline, "the outbox was not drained"
        await asyncio.sleep(0.02)


async def outbox_state(sink: RedisSink) -> tuple[int, int]:
    """(entries in the outbox, entries pending in the group)."""
    length = await sink.client.xlen(sink.keys.outbox)
    groups: Any = await sink.client.xinfo_groups(sink.keys.outbox)
    return length, sum(int(g["pending"]) for g in groups)


# --- (a) forwarded deltas sum to the Redis state ----------------------------------------


async def test_forwarded_deltas_sum_to_the_redis_state(sink: RedisSink) -> None:
    entries = await apply_all(sink)
    assert entries >= len(engine_batches())  # every batch changed something
    out = Recorder()
    fwd = forwarder(sink, out, "w1")
    assert await drain(fwd) == entries
    assert await outbox_state(sink) == (0, 0)
    ids = [orjson.loads(v)["id"] for _, _, v in out.messages]
    assert len(ids) == len(set(ids))
    assert {t for t, _, _ in out.messages} == {METRICS_TOPIC, CREDITS_TOPIC}
    await assert_sums_match(sink, out.messages)


# --- (b) a crash between producing and acknowledging ----------------------------------


async def test_crashed_forwarders_entries_are_claimed_and_deduplicated(sink: RedisSink) -> None:
    await apply_all(sink)
    k = 7
    out = Recorder(fail_after=k)
    dying = forwarder(sink, out, "worker-a")
    with pytest.raises(ConnectionError):
        await dying.run_once(4)
    assert len(out.messages) == k
    _, pending = await outbox_state(sink)
    assert pending == 4  # read, partly produced, not acknowledged: nothing lost
    # worker-a never comes back; worker-b takes over once the entries are idle
    heir = forwarder(sink, out, "worker-b", claim_idle=3600)
    await drain(heir)  # the new entries; worker-a's are not idle long enough
    assert (await outbox_state(sink))[1] == 4
    heir.claim_idle = 0.3
    await asyncio.sleep(0.4)
    assert await drain(heir) == 4
    assert await outbox_state(sink) == (0, 0)
    assert len(out.messages) - len(dedupe(out.messages)) == k  # exactly the k re-produced
    await assert_sums_match(sink, out.messages)


async def test_failed_flush_keeps_the_entries_for_a_retry(sink: RedisSink) -> None:
    await apply_all(sink)
    out = Recorder()
    fails = [True]

    async def flaky_flush() -> None:
        if fails.pop() if fails else False:
            raise TimeoutError("no acknowledgement")

    fwd = OutboxForwarder(
        sink.client, out.send, flaky_flush, consumer="w", prefix=sink.keys.prefix, block=0
    )
    with pytest.raises(TimeoutError):
        await fwd.run_once(2)
    sent = len(out.messages)
    assert sent and (await outbox_state(sink))[1] == 2
    await drain(fwd)  # its own pending entries come first, then the rest
    assert len(out.messages) - len(dedupe(out.messages)) == sent
    await assert_sums_match(sink, out.messages)


async def test_run_backs_off_and_delivers_everything(sink: RedisSink) -> None:
    await apply_all(sink)
    out = Recorder(failures=3)
    fwd = forwarder(sink, out, "w", block=0.05, backoff=(0.01, 0.05), count=2)
    stop = asyncio.Event()
    task = asyncio.create_task(fwd.run(stop))
    await wait_until_forwarded(sink)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert await outbox_state(sink) == (0, 0)
    await assert_sums_match(sink, out.messages)
    # entries written while it runs are forwarded too (XREADGROUP BLOCK)
    stop.clear()
    task = asyncio.create_task(fwd.run(stop))
    await sink.apply({}, [DeadLetter("late", 0, 1, "invalid_json")], {})
    await wait_until_forwarded(sink)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert await outbox_state(sink) == (0, 0)
    await assert_sums_match(sink, out.messages)


# --- (c) the outbox is written with the change, and only then ------------------------


async def test_reapplying_a_batch_adds_no_outbox_entry(sink: RedisSink) -> None:
    batch = engine_batches()[0]
    first = await sink.apply(batch.contributions, batch.dead_letters, batch.offsets)
    assert len(first.outbox_ids) == 1
    again = await sink.apply(batch.contributions, batch.dead_letters, batch.offsets)
    assert again.outbox_ids == [] and again.metrics == [] and again.credits == []
    assert await sink.client.xlen(sink.keys.outbox) == 1
    # offsets alone change nothing to forward
    only_offsets = await sink.apply({}, [], {(TOPIC, 0): 10**6})
    assert only_offsets.outbox_ids == []
    assert await sink.client.xlen(sink.keys.outbox) == 1
    # the entry holds exactly what apply returned
    entries: Any = await sink.client.xrange(sink.keys.outbox)
    assert [e[0].decode() for e in entries] == first.outbox_ids
    fwd = forwarder(sink, Recorder(), "w")
    fields = {k.decode(): v.decode() for k, v in entries[0][1].items()}
    messages = [orjson.loads(v) for _, _, v in fwd.messages(first.outbox_ids[0], fields)]
    metrics = [m for m in messages if "metric" in m]
    credits = [m for m in messages if "touch_id" in m]
    assert any("days" in m for m in metrics)
    assert moved(metrics) == {(u.scope, u.metric): (u.value, u.delta) for u in first.metrics}
    assert len(metrics) == len({(m["scope"], m["metric"]) for m in metrics})
    assert [
        (c["subject"], c["touch_id"], tuple(c["scopes"]), c["credit"], c["units"]) for c in credits
    ] == [
        (d.subject, d.touch_id, d.scopes, f"{d.credit.numerator}/{d.credit.denominator}", d.units)
        for d in first.credits
    ]
    assert [m["id"] for m in messages] == [
        f"{first.outbox_ids[0]}:{i}" for i in range(len(messages))
    ]


async def test_an_entry_written_before_the_days_were_folded_is_relayed(sink: RedisSink) -> None:
    """An outbox left by a version before 2026-12-02 (one list per field, a day point
    a field of its own, the scope percent-encoded) is relayed, not a crash loop."""
    old = [
        ["partner:a%20b", "nb.cw.count", 3, 1],
        ["partner:a%20b", "nb.cw.count@2026-03-01", 1, 1],
    ]
    fields = {"metrics": orjson.dumps(old).decode(), "credits": "[]"}
    messages = forwarder(sink, Recorder(), "w").messages("5-0", fields)
    assert [(t, k, orjson.loads(v)) for t, k, v in messages] == [
        (
            METRICS_TOPIC,
            b"partner:a b",
            {
                "scope": "partner:a b",
                "metric": "nb.cw.count",
                "value": 3,
                "delta": 1,
                "id": "5-0:0",
            },
        ),
        (
            METRICS_TOPIC,
            b"partner:a b",
            {
                "scope": "partner:a b",
                "metric": "nb.cw.count@2026-03-01",
                "value": 1,
                "delta": 1,
                "id": "5-0:1",
            },
        ),
    ]


async def test_exact_numbers_and_hostile_names(sink: RedisSink) -> None:
    big = 2**53 - 1
    line = CreditLine(Fraction(1, 3), big, ("partner:a b", "campaign:ü {x}*"), ("ft",), 5)
    subject = "opportunity:id with:colon ☃"
    first = await sink.apply(
        {subject: Contribution({("campaign:ü {x}*", "m/x y"): big}, {"t {1}": line})}, [], {}
    )
    # a credit-only change (scopes moved: a retraction and a new line) is forwarded too
    moved = CreditLine(Fraction(1, 3), big, ("partner:other",), ("ft",), 5)
    second = await sink.apply(
        {subject: Contribution({("campaign:ü {x}*", "m/x y"): big}, {"t {1}": moved})}, [], {}
    )
    assert second.metrics == [] and len(second.credits) == 2 and len(second.outbox_ids) == 1
    out = Recorder()
    await drain(forwarder(sink, out, "w"))
    values = [orjson.loads(v) for _, _, v in out.messages]
    assert values[0] == {
        "scope": "campaign:ü {x}*",
        "metric": "m/x y",
        "value": big,
        "delta": big,
        "id": f"{first.outbox_ids[0]}:0",
    }
    assert out.messages[0][1] == "campaign:ü {x}*".encode()
    assert values[1]["units"] == big and values[1]["subject"] == subject
    assert [(v["scopes"], v["credit"], v["units"]) for v in values[2:]] == [
        (["partner:a b", "campaign:ü {x}*"], "-1/3", -big),
        (["partner:other"], "1/3", big),
    ]
    assert [v["id"] for v in values[2:]] == [f"{second.outbox_ids[0]}:{i}" for i in (0, 1)]


class SlowTransactions:
    """A `TransactionalOutput` stand-in whose every transaction takes `seconds`."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.published = 0

    async def open(self) -> str | None:
        return None

    async def publish(self, messages: list[Any], last_entry: str) -> None:
        await asyncio.sleep(self.seconds)
        self.published += 1

    async def close(self) -> None:
        pass


async def test_the_forwarder_lease_holds_while_a_transaction_outlasts_it(sink: RedisSink) -> None:
    """A step three times longer than the lease: the holder keeps it, and a
    standby neither takes over nor forwards (before, it fenced the holder, and
    the two fenced each other while a broker was away)."""
    assert await apply_all(sink) > 0
    slow, quick = SlowTransactions(1.8), SlowTransactions(0)
    options: dict[str, Any] = {"prefix": sink.keys.prefix, "lease": 0.6, "block": 0}
    holder = TransactionalForwarder(sink.client, slow, consumer="a", count=1, **options)  # type: ignore[arg-type]
    standby = TransactionalForwarder(sink.client, quick, consumer="b", **options)  # type: ignore[arg-type]
    step = asyncio.create_task(holder.run_once())
    await asyncio.sleep(1.2)
    assert await standby.run_once() == 0
    assert await sink.client.get(f"{sink.keys.outbox}:lease") == b"a"
    assert await step == 1
    assert (slow.published, quick.published) == (1, 0)


async def test_a_deleted_outbox_is_recreated(sink: RedisSink) -> None:
    out = Recorder()
    fwd = forwarder(sink, out, "w")
    assert await fwd.run_once() == 0  # creates the group (and the empty stream)
    await sink.client.delete(sink.keys.outbox)  # e.g. delete_all between two runs
    await sink.apply({}, [DeadLetter("t", 0, 1, "invalid_json")], {})
    assert await drain(fwd) == 1
    assert len(out.messages) == 2


# --- (d) end to end through the embedded broker ---------------------------------------


async def test_end_to_end_through_the_embedded_broker(sink: RedisSink, tmp_path: Path) -> None:
    entries = await apply_all(sink)
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as broker:
        await broker.create_topics({METRICS_TOPIC: 2, CREDITS_TOPIC: 2})
        producer = AIOKafkaProducer(
            bootstrap_servers=broker.bootstrap, max_batch_size=1, acks="all", linger_ms=5
        )
        await producer.start()
        try:
            output = AiokafkaOutput(producer)
            counted = Recorder()

            async def send(topic: str, key: bytes, value: bytes) -> None:
                await counted.send(topic, key, value)
                await output.send(topic, key, value)

            fwd = OutboxForwarder(
                sink.client, send, output.flush, consumer="w", prefix=sink.keys.prefix, block=0
            )
            assert await drain(fwd, count=10) == entries
        finally:
            await producer.stop()
        assert await outbox_state(sink) == (0, 0)
        n_metrics = sum(1 for t, _, _ in counted.messages if t == METRICS_TOPIC)
        n_credits = len(counted.messages) - n_metrics
        got = [
            (topic, r.key, r.value)
            for topic, n in ((METRICS_TOPIC, n_metrics), (CREDITS_TOPIC, n_credits))
            for r in await read_topic(broker.bootstrap, topic, 2, n)
        ]
    assert len(got) == len(counted.messages)
    assert sorted(got) == sorted(counted.messages)
    await assert_sums_match(sink, got)


# --- (e) the mode follows the broker ---------------------------------------------------


async def test_forward_outbox_uses_transactions_where_the_broker_has_them(
    sink: RedisSink, broker: str, request: pytest.FixtureRequest
) -> None:
    """Apache Kafka: the transactional forwarder (a lease, no Redis consumer group);
    Tansu: the at-least-once one (the `forwarder` group). Both deliver everything."""
    await apply_all(sink)
    bootstrap = broker.removeprefix("kafka://").replace(";", ",")
    name = uuid.uuid4().hex[:8]
    metrics, credits = f"mode-{name}.metrics", f"mode-{name}.credits"
    await create_topics(bootstrap, {metrics: 2, credits: 2})
    stop = asyncio.Event()
    task = asyncio.create_task(
        forward_outbox(
            sink.client,
            bootstrap,
            stop,
            consumer="w",
            transactional_id=f"mode-{name}.outbox",
            prefix=sink.keys.prefix,
            metrics_topic=metrics,
            credits_topic=credits,
        )
    )
    deadline = time.monotonic() + 60
    while await sink.outbox_length():
        assert time.monotonic() < deadline and not task.done()
        await asyncio.sleep(0.05)
    leased = await sink.client.exists(f"{sink.keys.outbox}:lease")
    stop.set()
    await task
    groups: Any = await sink.client.xinfo_groups(sink.keys.outbox)
    transactional = request.node.callspec.params["broker"] == "apache-kafka"
    assert (bool(leased), not groups) == (transactional, transactional)
    records = [
        (topic, r.key, r.value)
        for topic in (metrics, credits)
        for r in await read_topic(bootstrap, topic, 2)
    ]
    renamed = {metrics: METRICS_TOPIC, credits: CREDITS_TOPIC}
    await assert_sums_match(sink, [(renamed[t], k, v) for t, k, v in records])
