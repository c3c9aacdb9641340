"""Relays the Redis outbox to Kafka: `partnerpulse.metrics` and `partnerpulse.credits`.

`apply.lua` adds one entry to the uncapped stream ``<prefix>outbox`` in the
same atomic script call that changes the totals, so an entry exists exactly
when a change was applied.  `OutboxForwarder` reads the entries through a
Redis consumer group, produces one Kafka message per metric update (a
running total and the days of its series that moved) and per credit delta,
and only after the producer confirmed delivery acknowledges and deletes the
entries (``XACK`` + ``XDEL`` in one ``MULTI``).  An entry is
therefore never lost while Redis keeps its data; a crash between producing and
acknowledging produces it again.  Every message carries ``"id"``:
``"<outbox entry id>:<index>"``, the same on every re-production, so
consumers drop duplicates by it.  See docs/guarantees.md, "Kafka outputs".

Entries left pending by a forwarder that died are taken over by any other
forwarder of the group (``XAUTOCLAIM``) once idle for `claim_idle` seconds.

Where the broker has transactions (Apache Kafka), `forward_outbox` runs a
`TransactionalForwarder` instead: exactly once for ``read_committed``
consumers.  One forwarder at a time holds a lease in Redis and relays the
outbox in order, each step one Kafka transaction that also commits, as the
offset metadata of a consumer group, the id of the last entry it holds; a
forwarder that takes over (after a crash) reads that id back and skips what
was already committed.  Tansu has no transactions: at least once with ids, as
above.  docs/decisions.md (ADR 7), docs/guarantees.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from functools import lru_cache
from typing import Any, Final, TypedDict, Unpack

import orjson
from aiokafka import AIOKafkaProducer, TopicPartition  # type: ignore[import-untyped]
from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]
from aiokafka.errors import UnknownError, UnsupportedVersionError  # type: ignore[import-untyped]
from aiokafka.partitioner import murmur2  # type: ignore[import-untyped]
from redis import exceptions as rexc
from redis.asyncio import Redis

from sinks.keys import DEFAULT_PREFIX, Keys
from sinks.redis_sink import credit_deltas, metric_updates

__all__ = [
    "CREDITS_TOPIC",
    "METRICS_TOPIC",
    "AiokafkaOutput",
    "Flush",
    "OutboxForwarder",
    "Send",
    "TransactionalForwarder",
    "TransactionalOutput",
    "TransactionsUnsupportedError",
    "forward_outbox",
    "partition_of",
]

log = logging.getLogger(__name__)

METRICS_TOPIC: Final = "partnerpulse.metrics"
CREDITS_TOPIC: Final = "partnerpulse.credits"

Send = Callable[[str, bytes, bytes], Awaitable[None]]
"""``send(topic, key, value)``: hand one message to the producer (may return before delivery)."""
Flush = Callable[[], Awaitable[None]]
"""``flush()``: return once every message sent so far is acknowledged; raise if any was not."""

Entry = tuple[str, dict[str, str] | None]
"""An outbox entry: its id and its fields (None: deleted meanwhile)."""


class AiokafkaOutput:
    """`send` / `flush` over an ``aiokafka.AIOKafkaProducer``, in batches.

    Messages are appended to one record batch per partition (the partition
    Kafka's default partitioner gives the key, unless one is named) and
    handed to the producer on `flush`, which awaits every batch's delivery and
    raises the first failure, so the caller keeps its input and retries.  One
    future per batch instead of one per message: per-message ``send`` was a
    sixth of a worker's CPU.
    """

    def __init__(self, producer: Any) -> None:
        self.producer = producer
        self._open: dict[tuple[str, int], list[Any]] = {}
        self._partitions: dict[str, int] = {}

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        *,
        partition: int | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        if partition is None:
            if key is None:
                raise ValueError("an unkeyed message needs a partition")
            partition = partition_of(key, await self._count(topic))
        builders = self._open.setdefault((topic, partition), [])
        record = {"timestamp": None, "key": key, "value": value, "headers": list(headers)}
        if not builders or builders[-1].append(**record) is None:
            builder = self.producer.create_batch()
            builder.append(**record)  # an empty batch takes any one message
            builders.append(builder)

    async def flush(self) -> None:
        batches, self._open = self._open, {}
        deliveries = [
            await self.producer.send_batch(builder, topic, partition=partition)
            for (topic, partition), builders in batches.items()
            for builder in builders
        ]
        if deliveries:
            await asyncio.gather(*deliveries)

    async def _count(self, topic: str) -> int:
        count = self._partitions.get(topic)
        if count is None:
            count = self._partitions[topic] = len(await self.producer.partitions_for(topic))
        return count


@lru_cache(maxsize=1 << 14)
def partition_of(key: str | bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives `key` (murmur2, as aiokafka).

    Cached for the keys that repeat batch after batch (scopes, recent subjects);
    a cache as large as the leads (it was 2^18) held about 50 MiB at 200k leads."""
    raw = key.encode() if isinstance(key, str) else key
    return int((murmur2(raw) & 0x7FFFFFFF) % partitions)


Message = tuple[str, bytes, bytes]
"""(topic, key, value) of one output message."""


class RelayOptions(TypedDict, total=False):
    """What both forwarders take besides their producer (defaults in `_Relay`)."""

    prefix: str
    metrics_topic: str
    credits_topic: str
    count: int
    """Most outbox entries per step."""
    block: float
    """Seconds a step waits for new entries (0: does not wait)."""
    backoff: tuple[float, float]
    """First and longest pause after a failed step."""


class _Relay:
    """The part both forwarders share: where the outbox is, where it goes, the loop."""

    def __init__(self, client: Redis, consumer: str, options: RelayOptions) -> None:
        count, block = options.get("count", 100), options.get("block", 1.0)
        if count < 1:
            raise ValueError("count must be >= 1")
        if block < 0:
            raise ValueError("block must be >= 0")
        self.client = client
        self.consumer = consumer
        self.keys = Keys(options.get("prefix", DEFAULT_PREFIX))
        self.metrics_topic = options.get("metrics_topic", METRICS_TOPIC)
        self.credits_topic = options.get("credits_topic", CREDITS_TOPIC)
        self.count = count
        self.block = block
        self.backoff = options.get("backoff", (0.1, 5.0))

    def messages(self, entry_id: str, fields: dict[str, str]) -> list[Message]:
        """The messages of one outbox entry (`outbox_messages`)."""
        return outbox_messages(entry_id, fields, self.metrics_topic, self.credits_topic)

    async def run_once(self) -> int:
        raise NotImplementedError

    async def run(self, stop_event: asyncio.Event) -> None:
        """Forward until `stop_event` is set (`run_with_backoff`)."""
        await run_with_backoff(self.run_once, stop_event, self.consumer, self.backoff)


class OutboxForwarder(_Relay):
    """Relays ``<prefix>outbox`` entries to Kafka, at least once, with idempotency keys.

    `send` and `flush` are the producer (see `Send`, `Flush`, `AiokafkaOutput`).
    `consumer` names this forwarder in the consumer group `group` (use the
    worker's id; every forwarder of one prefix shares the group).  Entries a
    forwarder read but did not acknowledge within `claim_idle` seconds are
    taken over by another: make it longer than a produce + flush usually takes,
    or a slow forwarder's entries are produced twice (harmless, just
    duplicates).  The default matches the exactly-once forwarder's lease: a
    dead worker's changes reach Kafka within about 10 s either way.
    `block`: seconds `run_once` waits for new entries (0: does not wait).
    """

    def __init__(
        self,
        client: Redis,
        send: Send,
        flush: Flush,
        *,
        consumer: str,
        group: str = "forwarder",
        claim_idle: float = 10.0,
        **options: Unpack[RelayOptions],
    ) -> None:
        super().__init__(client, consumer, options)
        if claim_idle < 0:
            raise ValueError("block and claim_idle must be >= 0")
        self.send = send
        self.flush = flush
        self.group = group
        self.claim_idle = claim_idle
        self._group_ready = False
        self._claim_cursor = "0-0"

    # --- one step -------------------------------------------------------------

    async def run_once(self, count: int | None = None) -> int:
        """Forward at most `count` entries; returns how many were forwarded.

        In this order: this consumer's own pending entries (read before but
        not acknowledged, e.g. because the last produce failed), then entries
        idle for `claim_idle` in other consumers (a dead forwarder's), then new
        entries (waiting up to `block` seconds).  Raises on Redis or producer
        errors, leaving the entries pending for the next call (or another
        forwarder): nothing is acknowledged before `flush` returned.
        """
        n = count or self.count
        try:
            return await self._step(n)
        except rexc.ResponseError as exc:
            if not str(exc).startswith("NOGROUP"):
                raise
            # the stream (and with it the group) was deleted: start over
            self._group_ready = False
            return await self._step(n)

    async def _step(self, n: int) -> int:
        await self._ensure_group()
        entries = await self._read(n, "0")
        if not entries:
            entries = await self._claim(n)
        if not entries:
            entries = await self._read(n, ">", block=self.block)
        if not entries:
            return 0
        return await self._forward(entries)

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            # id 0: entries written before the group existed are forwarded too
            await self.client.xgroup_create(self.keys.outbox, self.group, id="0", mkstream=True)
        except rexc.ResponseError as exc:
            if not str(exc).startswith("BUSYGROUP"):
                raise
        self._group_ready = True

    async def _read(self, n: int, start: str, block: float = 0) -> list[Entry]:
        """``XREADGROUP``: ``0`` re-reads this consumer's pending entries, ``>`` new ones."""
        ms = round(block * 1000) if block > 0 else None
        reply: Any = await self.client.xreadgroup(
            self.group, self.consumer, {self.keys.outbox: start}, count=n, block=ms
        )
        if not reply:
            return []
        # [[stream, [(id, fields), ...]]]: one stream asked for
        return [_entry(e) for _, entries in reply for e in entries]

    async def _claim(self, n: int) -> list[Entry]:
        """``XAUTOCLAIM`` entries idle for `claim_idle` (from the cursor, wrapping around)."""
        reply: Any = await self.client.xautoclaim(
            self.keys.outbox,
            self.group,
            self.consumer,
            min_idle_time=round(self.claim_idle * 1000),
            start_id=self._claim_cursor,
            count=n,
        )
        self._claim_cursor = _text(reply[0])
        entries = [_entry(e) for e in reply[1] if e[0] is not None]
        if entries:
            log.info("forwarder %s took over %d idle outbox entries", self.consumer, len(entries))
        return entries

    async def _forward(self, entries: Sequence[Entry]) -> int:
        for entry_id, fields in entries:
            if fields:
                for topic, key, value in self.messages(entry_id, fields):
                    await self.send(topic, key, value)
        await self.flush()
        ids = [entry_id for entry_id, _ in entries]
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.xack(self.keys.outbox, self.group, *ids)
            pipe.xdel(self.keys.outbox, *ids)
            await pipe.execute()
        return len(entries)


def outbox_messages(
    entry_id: str, fields: dict[str, str], metrics_topic: str, credits_topic: str
) -> list[Message]:
    """The (topic, key, value) messages of one outbox entry, in a fixed order.

    Metric updates first, as the script wrote them (one per running total, its
    moved days inside: sinks/apply.lua), then credit deltas; message ``i`` has
    the id ``"<entry_id>:<i>"``, so re-producing an entry repeats the same ids.
    """
    out: list[Message] = []
    for update in orjson.loads(fields.get("metrics", "[]")):
        if isinstance(update, list):  # written before 2026-12-02: one per field, days apart
            update = asdict(metric_updates([update])[0])
        update["id"] = f"{entry_id}:{len(out)}"
        out.append((metrics_topic, update["scope"].encode(), orjson.dumps(update)))
    for c in credit_deltas(orjson.loads(fields.get("credits", "[]"))):
        value = {
            "subject": c.subject,
            "touch_id": c.touch_id,
            "scopes": list(c.scopes),
            "credit": f"{c.credit.numerator}/{c.credit.denominator}",
            "units": c.units,
            "cause": c.cause,
            "id": f"{entry_id}:{len(out)}",
        }
        out.append((credits_topic, c.subject.encode(), orjson.dumps(value)))
    return out


async def run_with_backoff(
    step: Callable[[], Awaitable[int]],
    stop_event: asyncio.Event,
    name: str,
    backoff: tuple[float, float],
) -> None:
    """Run `step` until `stop_event` is set; back off on errors, never drop an entry.

    Any error (Redis unavailable, the producer failing) is logged and the
    step retried after a capped exponential back-off; the entries stay in the
    outbox meanwhile.  Bad Redis credentials or permissions are raised.
    """
    first, cap = backoff
    delay, failing_since = first, 0.0
    while not stop_event.is_set():
        try:
            await step()
        except (rexc.AuthenticationError, rexc.AuthorizationError):
            raise
        except Exception as exc:
            failing_since = failing_since or time.monotonic()
            log.warning(
                "forwarder %s: %s: %s; retrying in %.1f s (failing for %.1f s)",
                name,
                type(exc).__name__,
                exc,
                delay,
                time.monotonic() - failing_since,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_event.wait(), delay)
            delay = min(delay * 2, cap)
            continue
        delay, failing_since = first, 0.0


class TransactionsUnsupportedError(RuntimeError):
    """The broker has no Kafka transactions (Tansu): outputs are at least once."""


class TransactionalOutput:
    """A transactional producer whose every commit records the last outbox entry it holds.

    The record is the offset metadata of partition 0 of the metrics topic in
    the consumer group `transactional_id` (no consumer ever joins it),
    committed inside the transaction (``send_offsets_to_transaction``): the
    messages and the record are visible together or not at all.  `open`
    starts a new producer, which fences every earlier producer of the same
    `transactional_id` (their open transaction is aborted), then reads the
    record back.
    """

    def __init__(
        self,
        bootstrap: str,
        transactional_id: str,
        metrics_topic: str,
        security: dict[str, Any] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.transactional_id = transactional_id
        self.progress = TopicPartition(metrics_topic, 0)
        self.security = security or {}
        self.producer: Any = None

    async def start(self) -> None:
        """A new producer: fences every earlier one of the same `transactional_id`.

        Raises `TransactionsUnsupportedError` on a broker without transactions.
        """
        await self.close()
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            transactional_id=self.transactional_id,
            enable_idempotence=True,
            acks="all",
            **self.security,
        )
        try:
            await producer.start()
        except (UnknownError, UnsupportedVersionError) as exc:
            await producer.stop()
            raise TransactionsUnsupportedError(str(exc)) from exc
        except BaseException:
            await producer.stop()
            raise
        self.producer = producer

    async def open(self) -> str | None:
        """`start`, then the last committed outbox entry id (None: none yet)."""
        await self.start()
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, **self.security)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(
                self.transactional_id, partitions=[self.progress]
            )
        finally:
            await admin.close()
        committed = offsets.get(self.progress)
        return committed.metadata if committed is not None and committed.offset >= 0 else None

    async def publish(self, messages: Sequence[Message], last_entry: str) -> None:
        """One transaction: `messages`, and `last_entry` as the progress record."""
        producer = self.producer
        if producer is None:
            raise RuntimeError("TransactionalOutput is not open")
        await producer.begin_transaction()
        try:
            output = AiokafkaOutput(producer)
            for topic, key, value in messages:
                await output.send(topic, key, value)
            await output.flush()
            offset = int(last_entry.split("-")[0])  # the entry's millisecond: never decreases
            await producer.send_offsets_to_transaction(
                {self.progress: (offset, last_entry)}, self.transactional_id
            )
            await producer.commit_transaction()
        except BaseException:
            with contextlib.suppress(Exception):
                await producer.abort_transaction()
            raise

    async def close(self) -> None:
        producer, self.producer = self.producer, None
        if producer is not None:
            await producer.stop()


#: Acquire or extend the forwarder lease if free or ours (KEYS[1] lease, ARGV token, ms).
_LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""


#: Delete the forwarder lease if it is ours (KEYS[1] lease, ARGV[1] token).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""


class TransactionalForwarder(_Relay):
    """Relays ``<prefix>outbox`` to Kafka exactly once, for ``read_committed`` consumers.

    Every worker runs one; the one holding the lease ``<prefix>outbox:lease``
    (renewed every step, `lease` seconds long) forwards, the others wait to
    take over.  The holder reads the outbox in id order (``XRANGE``), skips
    the entries up to the last committed one (forwarded, but the forwarder
    died before deleting them), publishes the others in one transaction
    together with the new last id (`TransactionalOutput`), and only then
    deletes them.  A holder that lost its lease, or a zombie, is fenced by
    Kafka when the next holder opens its producer.
    """

    def __init__(
        self,
        client: Redis,
        output: TransactionalOutput,
        *,
        consumer: str,
        lease: float = 10.0,
        **options: Unpack[RelayOptions],
    ) -> None:
        super().__init__(client, consumer, options)
        self.output = output
        self.lease_key = f"{self.keys.outbox}:lease"
        self.lease = lease
        self._last: str | None = None
        """The last committed entry id while this forwarder's producer is open ("0-0": none)."""

    async def run_once(self) -> int:
        """Forward up to `count` entries if this forwarder holds the lease; how many."""
        if not await self._hold():
            await self._close()
            await asyncio.sleep(self.block)
            return 0
        keeper = asyncio.create_task(self._keep())
        try:
            return await self._step()
        except BaseException:
            await self._close()  # reopened (and the state re-read) on the next step
            raise
        finally:
            keeper.cancel()
            # a Redis error in the keeper is the step's to report, not the keeper's
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await keeper

    async def _hold(self) -> bool:
        """Acquire or extend the lease; False if another forwarder holds it."""
        held = await self.client.eval(
            _LEASE, 1, self.lease_key, self.consumer, round(self.lease * 1000)
        )
        return bool(held)

    async def _keep(self) -> None:
        """Extend the lease while a step runs.

        A step can outlast the lease (a large transaction while a broker is
        away, a loaded machine); without this, a standby took the lease
        meanwhile and fenced the holder, whose next step fenced the standby in
        turn, and a growing backlog made every step longer: two forwarders
        fenced each other for minutes (seen in the broker-loss test).  Safety
        does not rest on the lease (Kafka fences the older producer); it only
        decides who forwards, and a dead holder still loses it within `lease`.
        """
        while True:
            await asyncio.sleep(self.lease / 3)
            if not await self._hold():
                return

    async def _step(self) -> int:
        if self._last is None:
            self._last = await self.output.open() or "0-0"
        reply: Any = await self.client.xrange(self.keys.outbox, "-", "+", count=self.count)
        entries = [_entry(e) for e in reply]
        if not entries:
            await self.client.xread(
                {self.keys.outbox: self._last}, count=1, block=max(1, round(self.block * 1000))
            )
            return 0
        fresh = [(i, f) for i, f in entries if _order(i) > _order(self._last)]
        if fresh:
            messages = [
                m for entry_id, fields in fresh if fields for m in self.messages(entry_id, fields)
            ]
            await self.output.publish(messages, fresh[-1][0])
            self._last = fresh[-1][0]
        await self.client.xdel(self.keys.outbox, *(i for i, _ in entries))
        return len(fresh)

    async def _close(self) -> None:
        self._last = None
        await self.output.close()

    async def run(self, stop_event: asyncio.Event) -> None:
        """Forward until `stop_event` is set; then give the lease back, so a
        standby takes over at once instead of after the lease."""
        try:
            await super().run(stop_event)
        finally:
            await self._close()
            with contextlib.suppress(Exception):  # Redis gone: the lease expires
                await self.client.eval(_RELEASE, 1, self.lease_key, self.consumer)


async def forward_outbox(
    client: Redis,
    bootstrap: str,
    stop_event: asyncio.Event,
    *,
    consumer: str,
    transactional_id: str,
    security: dict[str, Any] | None = None,
    **options: Unpack[RelayOptions],
) -> None:
    """Relay the outbox until `stop_event`: exactly once if the broker has transactions.

    The broker is probed with a transactional producer of its own id (so the
    probe fences no forwarder); a broker that refuses (Tansu) gets the
    at-least-once `OutboxForwarder` with idempotency ids.
    """
    security = security or {}
    metrics_topic = options.get("metrics_topic", METRICS_TOPIC)
    probe = TransactionalOutput(bootstrap, f"{transactional_id}.probe", metrics_topic, security)
    transactions = await _has_transactions(probe, stop_event, options.get("backoff", (0.1, 5.0)))
    if transactions is None:  # stopped while probing
        return
    if transactions:
        output = TransactionalOutput(bootstrap, transactional_id, metrics_topic, security)
        await TransactionalForwarder(client, output, consumer=consumer, **options).run(stop_event)
        return
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **security)
    await producer.start()
    try:
        plain = AiokafkaOutput(producer)
        forwarder = OutboxForwarder(client, plain.send, plain.flush, consumer=consumer, **options)
        await forwarder.run(stop_event)
    finally:
        await producer.stop()


async def _has_transactions(
    probe: TransactionalOutput, stop_event: asyncio.Event, backoff: tuple[float, float]
) -> bool | None:
    """Whether the broker has transactions; None if stopped before it answered.

    Other errors (the broker not reachable yet, its transaction coordinator
    still loading) are retried with the forwarders' back-off.
    """
    delay = backoff[0]
    while not stop_event.is_set():
        try:
            await probe.start()
            return True
        except TransactionsUnsupportedError as exc:
            log.warning("the broker has no transactions (%s): Kafka outputs are at least once", exc)
            return False
        except Exception as exc:
            log.warning("probing the broker for transactions: %s: %s", type(exc).__name__, exc)
        finally:
            await probe.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop_event.wait(), delay)
        delay = min(delay * 2, backoff[1])
    return None


def _order(entry_id: str) -> tuple[int, int]:
    """A stream entry id as a comparable pair (``"1700000000000-3"`` -> ``(1700000000000, 3)``)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _entry(raw: Any) -> Entry:
    """(id, fields) as redis-py parses it; fields None or empty for a deleted entry."""
    entry_id, fields = raw[0], raw[1]
    if not fields:
        return _text(entry_id), None
    return _text(entry_id), {_text(k): _text(v) for k, v in fields.items()}


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value
