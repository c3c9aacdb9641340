"""Relays the Redis outbox to Kafka: `partnerpulse.metrics` and `partnerpulse.credits`.

`apply.lua` adds one entry to the uncapped stream ``<prefix>outbox`` in the
same atomic script call that changes the totals, so an entry exists exactly
when a change was applied.  `OutboxForwarder` reads the entries through a
Redis consumer group, produces one Kafka message per metric change and per
credit delta, and only after the producer confirmed delivery acknowledges and
deletes the entries (``XACK`` + ``XDEL`` in one ``MULTI``).  An entry is
therefore never lost while Redis keeps its data; a crash between producing and
acknowledging produces it again.  Every message carries ``"id"``:
``"<outbox entry id>:<index>"``, the same on every re-production, so
consumers drop duplicates by it.  See docs/guarantees.md, "Kafka outputs".

Entries left pending by a forwarder that died are taken over by any other
forwarder of the group (``XAUTOCLAIM``) once idle for `claim_idle` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import lru_cache
from typing import Any, Final

import orjson
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


@lru_cache(maxsize=1 << 18)
def partition_of(key: str | bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives `key` (murmur2, as aiokafka)."""
    raw = key.encode() if isinstance(key, str) else key
    return int((murmur2(raw) & 0x7FFFFFFF) % partitions)


class OutboxForwarder:
    """Relays ``<prefix>outbox`` entries to Kafka, at least once, with idempotency keys.

    `send` and `flush` are the producer (see `Send`, `Flush`, `AiokafkaOutput`).
    `consumer` names this forwarder in the consumer group `group` (use the
    worker's id; every forwarder of one prefix shares the group).  Entries a
    forwarder read but did not acknowledge within `claim_idle` seconds are
    taken over by another: make it longer than a produce + flush can take, or
    a slow forwarder's entries are produced twice (harmless, just duplicates).
    `block`: seconds `run_once` waits for new entries (0: does not wait).
    """

    def __init__(
        self,
        client: Redis,
        send: Send,
        flush: Flush,
        *,
        consumer: str,
        prefix: str = DEFAULT_PREFIX,
        group: str = "forwarder",
        metrics_topic: str = METRICS_TOPIC,
        credits_topic: str = CREDITS_TOPIC,
        count: int = 100,
        block: float = 1.0,
        claim_idle: float = 60.0,
        backoff: tuple[float, float] = (0.1, 5.0),
    ) -> None:
        if count < 1:
            raise ValueError("count must be >= 1")
        if block < 0 or claim_idle < 0:
            raise ValueError("block and claim_idle must be >= 0")
        self.client = client
        self.send = send
        self.flush = flush
        self.consumer = consumer
        self.keys = Keys(prefix)
        self.group = group
        self.metrics_topic = metrics_topic
        self.credits_topic = credits_topic
        self.count = count
        self.block = block
        self.claim_idle = claim_idle
        self.backoff = backoff
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

    def messages(self, entry_id: str, fields: dict[str, str]) -> list[tuple[str, bytes, bytes]]:
        """The (topic, key, value) messages of one outbox entry, in a fixed order.

        Metric updates first, then credit deltas; message ``i`` has the id
        ``"<entry_id>:<i>"``, so re-producing an entry repeats the same ids.
        """
        out: list[tuple[str, bytes, bytes]] = []
        for m in metric_updates(orjson.loads(fields.get("metrics", "[]"))):
            value = {
                "scope": m.scope,
                "metric": m.metric,
                "value": m.value,
                "delta": m.delta,
                "id": f"{entry_id}:{len(out)}",
            }
            out.append((self.metrics_topic, m.scope.encode(), orjson.dumps(value)))
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
            out.append((self.credits_topic, c.subject.encode(), orjson.dumps(value)))
        return out

    # --- the loop -------------------------------------------------------------

    async def run(self, stop_event: asyncio.Event) -> None:
        """Forward until `stop_event` is set; back off on errors, never drop an entry.

        Any error (Redis unavailable, the producer failing) is logged and the
        step retried after a capped exponential back-off; the entries stay
        pending meanwhile.  Bad Redis credentials or permissions are raised.
        """
        first, cap = self.backoff
        delay, failing_since = first, 0.0
        while not stop_event.is_set():
            try:
                await self.run_once()
            except (rexc.AuthenticationError, rexc.AuthorizationError):
                raise
            except Exception as exc:
                failing_since = failing_since or time.monotonic()
                log.warning(
                    "forwarder %s: %s: %s; retrying in %.1f s (failing for %.1f s)",
                    self.consumer,
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


def _entry(raw: Any) -> Entry:
    """(id, fields) as redis-py parses it; fields None or empty for a deleted entry."""
    entry_id, fields = raw[0], raw[1]
    if not fields:
        return _text(entry_id), None
    return _text(entry_id), {_text(k): _text(v) for k, v in fields.items()}


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value
