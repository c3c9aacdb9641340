"""The worker: consume, process, produce, apply to Redis; Redis is the checkpoint.

One aiokafka consumer in the group reads every topic of the pipeline
(co-partitioned: the range assignor gives a worker the same partition
numbers of every topic, so a lead's events, commands and state all belong to
one worker).  Each poll is one batch, taken through the steps listed in
streams/processing.py: `Processor` decodes, loads and settles it; here it is
produced, applied to Redis (one atomic Lua call: contributions, new states,
dead-letter counts and the batch's offsets, fenced by partition ownership and
offset continuity) and committed.  The sink call runs while the next batch
is processed; the next call starts only after it has landed, and a read of
state it is writing waits for it.

Redis therefore holds, at every instant, the state and the metrics of exactly
the offsets it records as applied.  On assignment a worker claims its
partitions in Redis (fencing out any previous owner) and seeks each to the
offset after the applied one; Kafka's committed offsets are written too, but
only for lag monitoring.  A crash anywhere loses nothing and applies nothing
twice (docs/guarantees.md).  Why not Faust: docs/decisions.md.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterable
from typing import NoReturn

from aiokafka import (  # type: ignore[import-untyped]
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    TopicPartition,
)
from aiokafka.coordinator.assignors.range import (  # type: ignore[import-untyped]
    RangePartitionAssignor,
)

from sinks.forwarder import AiokafkaOutput, forward_outbox
from sinks.redis_sink import DeadLetter, Fence, FencedError, Prepared, RedisSink
from streams.admin import ensure_topics
from streams.processing import (
    CREDITS,
    DLQ,
    METRICS,
    Batch,
    Message,
    Processor,
    consumed_by,
)
from streams.settings import Settings
from streams.state.store import StateStore

log = logging.getLogger(__name__)

RESTART_EXIT_CODE = 70
"""A worker exits with this to be restarted: it stopped before applying, on purpose."""
COMMIT_SECONDS = 1.0


class Worker:
    """One worker process's pipeline."""

    def __init__(self, settings: Settings, bootstrap: str, sink: RedisSink) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.sink = sink
        self.store = StateStore(sink, compress=settings.state_compression)
        self.processor = Processor(settings, self.store)
        self.token = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.applied: dict[TopicPartition, int] = {}
        """Next offset per partition, after what this worker applied (to commit)."""
        self._lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self._output: AiokafkaOutput | None = None
        self._applying: asyncio.Task[None] | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Process until `stop` is set; then finish the batch in hand and leave cleanly."""
        settings = self.settings
        security = settings.aiokafka_security()
        await ensure_topics(settings, self.bootstrap)
        timeout_ms = int(settings.session_timeout * 1000)
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", linger_ms=2, **security
        )
        self._consumer = consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=settings.app_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            partition_assignment_strategy=(RangePartitionAssignor,),
            session_timeout_ms=timeout_ms,
            # Tansu answers a join only after half the rebalance timeout.
            rebalance_timeout_ms=timeout_ms,
            heartbeat_interval_ms=min(1000, timeout_ms // 4),
            fetch_max_wait_ms=int(settings.batch_within * 1000),
            max_partition_fetch_bytes=2 * 1024 * 1024,
            **security,
        )
        await producer.start()
        self._output = AiokafkaOutput(producer)
        topics = [settings.topic(name) for name in consumed_by(settings.mapping)]
        consumer.subscribe(topics, listener=_Rebalance(self))
        await consumer.start()
        forwarding = asyncio.create_task(self._forward_outbox(stop))
        last_commit = time.monotonic()
        try:
            while not stop.is_set():
                records = await consumer.getmany(
                    timeout_ms=int(settings.batch_within * 1000),
                    max_records=settings.batch_size,
                )
                if records:
                    async with self._lock:
                        await self._handle(records)
                if time.monotonic() - last_commit >= COMMIT_SECONDS:
                    await self._commit(consumer.assignment())
                    last_commit = time.monotonic()
        finally:
            stop.set()
            await self._drain()
            await self._commit(consumer.assignment())
            await consumer.stop()
            await forwarding
            await producer.stop()

    async def _handle(self, records: dict[TopicPartition, list[object]]) -> None:
        """One batch: process, produce, then apply it while the next is processed.

        Applying overlaps the next batch's processing (Redis runs the script
        on its own core); it starts only after the previous batch's apply has
        landed, so batches still land in order, one at a time, and at most one
        batch is ahead of Redis (back-pressure).  A failure stops the worker
        unapplied.
        """
        messages = [
            Message(tp.topic, tp.partition, r.offset, r.value or b"")  # type: ignore[attr-defined]
            for tp, batch in records.items()
            for r in batch
        ]
        try:
            batch = await self.processor.process(messages)
            await self.store.record_registry(batch.registry)
            await self._produce(batch)
            sink = batch.sink
            partitions = frozenset(p for _, p in sink.last)
            sink.fence = Fence(self.store.keys.owners, self.token, partitions)
            prepared = self.sink.prepare(sink, decode=False)
        except Exception as exc:
            _failed(exc)
        await self._drain()
        self._applying = asyncio.create_task(self._apply(prepared, sink.last))
        self.store.writing(sink.states, self._applying)
        await asyncio.sleep(0)  # the call goes out now, not after the next batch's decoding

    async def _apply(self, prepared: Prepared, last: dict[tuple[str, int], int]) -> None:
        try:
            await self.sink.execute(prepared)
        except FencedError as exc:
            _restart(f"the sink refused the batch ({exc})")
        except Exception as exc:
            _failed(exc)
        for (topic, partition), offset in last.items():
            self.applied[TopicPartition(topic, partition)] = offset + 1

    async def _drain(self) -> None:
        """Wait until the batch being applied has landed."""
        if self._applying is not None:
            await self._applying
            self._applying = None

    async def _produce(self, batch: Batch) -> None:
        """Internal messages and dead letters, acknowledged before the sink call."""
        output = self._output
        assert output is not None
        topic = self.settings.topic
        for send in batch.sends:
            key = send.key.encode() if send.key else None
            await output.send(topic(send.topic), key, send.value, partition=send.partition)
        for dead, raw in zip(batch.sink.dead_letters, batch.dead_raw, strict=True):
            # a dead letter goes to its source's partition number: no key to hash
            await output.send(
                topic(DLQ),
                None,
                raw,
                partition=dead.partition % self.settings.partitions,
                headers=_dead_letter_headers(dead),
            )
        await output.flush()

    async def _commit(self, assigned: Iterable[TopicPartition]) -> None:
        """Commit applied positions to Kafka, for lag monitoring only (Redis is the
        checkpoint); a failed commit is harmless."""
        consumer = self._consumer
        mine = set(assigned)
        offsets = {tp: off for tp, off in self.applied.items() if tp in mine}
        if consumer is None or not offsets:
            return
        try:
            await consumer.commit(offsets)
        except Exception as exc:  # rebalancing, broker away: the next commit covers it
            log.info("offset commit skipped: %r", exc)

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """Own the partitions in Redis, then resume each after its applied offset."""
        consumer = self._consumer
        assert consumer is not None
        await self._drain()
        await self.store.claim({tp.partition for tp in assigned}, self.token)
        # Registry broadcasts the previous owners consumed are not delivered
        # again; their entries were recorded before they were sent.
        await self.processor.start()
        applied = await self.sink.read_offsets()
        fresh = []
        for tp in assigned:
            done = applied.get((tp.topic, tp.partition))
            if done is None:
                fresh.append(tp)
            else:
                consumer.seek(tp, done + 1)
        if fresh:
            await consumer.seek_to_beginning(*fresh)
        log.info("assigned %d partitions", len(assigned))

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Let the batch in hand finish, then record its positions."""
        async with self._lock:
            await self._drain()
            await self._commit(revoked)
            for tp in revoked:
                self.applied.pop(tp, None)

    async def _forward_outbox(self, stop: asyncio.Event) -> None:
        """Relay the sink's outbox to `partnerpulse.metrics` / `partnerpulse.credits`:
        exactly once where the broker has transactions (docs/guarantees.md)."""
        settings = self.settings
        await forward_outbox(
            self.sink.client,
            self.bootstrap,
            stop,
            consumer=self.token,
            transactional_id=f"{settings.app_id}.outbox",
            prefix=settings.key_prefix,
            metrics_topic=settings.topic(METRICS),
            credits_topic=settings.topic(CREDITS),
            security=settings.aiokafka_security(),
        )


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.worker.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.worker.on_assigned(assigned)


def _dead_letter_headers(dead: DeadLetter) -> list[tuple[str, bytes]]:
    """The reason and the source coordinates of a dead letter (its identity), and
    the error of a `processing_error`."""
    headers = [
        ("reason", dead.reason.encode()),
        ("source_topic", dead.topic.encode()),
        ("source_partition", str(dead.partition).encode()),
        ("source_offset", str(dead.offset).encode()),
    ]
    if dead.error:
        headers.append(("error", dead.error.encode()))
    return headers


def _failed(exc: Exception) -> NoReturn:
    """A batch failed unexpectedly (a bug, the broker refusing a produce): log it, restart."""
    log.exception("batch failed")
    _restart(f"batch failed: {exc!r}")


def _restart(reason: str) -> NoReturn:
    """Stop now, unapplied: the replacement resumes from what Redis recorded."""
    log.critical("%s; exiting for a restart", reason)
    os._exit(RESTART_EXIT_CODE)
