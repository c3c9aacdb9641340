"""The batch pipeline every runtime drives; Redis is the checkpoint.

A runtime (the aiokafka loop in streams/worker.py, the Faust agent in
streams/faust_app.py) only consumes and seeks.  Everything else happens here,
the same for both, in this order (steps 1-3 are `Processor`'s,
streams/processing.py):

0. admit: drop redelivered messages (at or before the applied offset) and cut
   a partition at a gap in its offsets, which the runtime heals by seeking
   back to the first offset missing: a runtime that skips a message (Faust's
   commit guard can, faust #606) never gets a batch past it;
1. decode, 2. load state, 3. ingest and settle;
4. produce the internal messages and dead letters, acknowledged by the broker
   (registry entries are recorded in Redis first);
5. apply the batch to Redis in one fenced, atomic Lua call (contributions,
   states, dead-letter counts and the offsets), while the next batch goes
   through steps 0-4; the next call starts only after it has landed;
6. report the applied positions, which the runtime commits to Kafka for lag
   monitoring only.

On assignment the pipeline claims the partitions in Redis (fencing out any
previous owner) and tells the runtime where to resume: after the applied
offset, else at the partition's beginning.  A crash anywhere loses nothing
and applies nothing twice (docs/guarantees.md).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from typing import NoReturn

from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]

from sinks.forwarder import AiokafkaOutput, forward_outbox
from sinks.redis_sink import DeadLetter, Fence, FencedError, Prepared, RedisSink
from streams.processing import CREDITS, DLQ, METRICS, Batch, Message, Processor
from streams.settings import Settings
from streams.state.store import StateStore
from streams.telemetry import Telemetry

log = logging.getLogger(__name__)

RESTART_EXIT_CODE = 70
"""A worker exits with this to be restarted: it stopped before applying, on purpose."""

TP = tuple[str, int]
"""(topic, partition)."""


class Pipeline:
    """One worker process's batch pipeline, whatever consumes for it."""

    def __init__(self, settings: Settings, sink: RedisSink, telemetry: Telemetry) -> None:
        self.settings = settings
        self.sink = sink
        self.telemetry = telemetry
        self.store = StateStore(sink, compress=settings.state_compression)
        self.processor = Processor(settings, self.store)
        self.token = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.applied: dict[TP, int] = {}
        """Next offset per owned partition, after what this worker applied (to commit)."""
        self._expected: dict[TP, int] = {}
        """Next offset to accept per owned partition (admitted, maybe not applied yet)."""
        self._lock = asyncio.Lock()
        self._applying: asyncio.Task[None] | None = None

    # --- ownership -----------------------------------------------------------------

    async def claim(
        self,
        partitions: Collection[TP],
        beginnings: Callable[[list[TP]], Awaitable[Mapping[TP, int]]],
    ) -> dict[TP, int]:
        """Own `partitions` in Redis; return where to resume each (applied + 1, else
        the partition's first offset, which `beginnings` asks the broker for)."""
        async with self._lock:
            await self._drain()
            await self.store.claim({partition for _, partition in partitions}, self.token)
            # Registry broadcasts the previous owners consumed are not delivered
            # again; their entries were recorded before they were sent.
            await self.processor.start()
            applied = await self.sink.read_offsets()
            fresh = [tp for tp in partitions if tp not in applied]
            starts = dict(await beginnings(fresh)) if fresh else {}
            resume = {tp: applied[tp] + 1 if tp in applied else starts[tp] for tp in partitions}
            self._expected = dict(resume)
            self.applied = {tp: off for tp, off in resume.items() if tp in applied}
            self.telemetry.record_assignment(len(partitions))
            log.info("assigned %d partitions", len(partitions))
            return resume

    async def release(self, partitions: Iterable[TP]) -> dict[TP, int]:
        """Let the batch in hand land; return the released partitions' positions."""
        async with self._lock:
            await self._drain()
            released = {tp: self.applied.pop(tp) for tp in partitions if tp in self.applied}
            for tp in partitions:
                self._expected.pop(tp, None)
            return released

    # --- batches ---------------------------------------------------------------------

    def admit(self, messages: Sequence[Message]) -> tuple[list[Message], dict[TP, int]]:
        """The messages to process, and the partitions to seek back (to the offset
        given) because their delivery skipped an offset."""
        accepted: list[Message] = []
        gaps: dict[TP, int] = {}
        expected = self._expected
        for message in messages:
            tp = (message.topic, message.partition)
            next_offset = expected.get(tp)
            if next_offset is None or tp in gaps or message.offset < next_offset:
                continue  # not ours (revoked), cut at a gap, or applied before
            if message.offset > next_offset:
                gaps[tp] = next_offset
                continue
            expected[tp] = next_offset + 1
            accepted.append(message)
        return accepted, gaps

    async def handle(self, messages: Sequence[Message], output: AiokafkaOutput) -> dict[TP, int]:
        """One polled batch: admit, process, produce, then apply it while the next
        batch is processed.  Returns the partitions to seek back (see `admit`).

        At most one batch is ahead of Redis (back-pressure), and batches land in
        order, one at a time.  Anything that fails outside a subject (the broker
        refusing a produce, the sink refusing the call) stops the worker unapplied.
        """
        started = time.monotonic()
        async with self._lock:
            accepted, gaps = self.admit(messages)
            for tp in gaps:
                self.telemetry.record_restart("delivery_gap")
                log.warning("delivery gap on %s|%d; seeking back to %d", *tp, gaps[tp])
            if not accepted:
                return gaps
            try:
                subjects = self.processor.subjects
                hits, misses = subjects.hits, subjects.misses
                batch = await self.processor.process(accepted)
                self.telemetry.record_batch(
                    (m.topic for m in accepted), (d.reason for d in batch.sink.dead_letters)
                )
                self.telemetry.record_cache(subjects.hits - hits, subjects.misses - misses)
                await self.store.record_registry(batch.registry)
                await _produce(self.settings, batch, output)
                sink = batch.sink
                partitions = frozenset(p for _, p in sink.last)
                sink.fence = Fence(self.store.keys.owners, self.token, partitions)
                prepared = self.sink.prepare(sink, decode=False)
            except Exception as exc:
                _failed(exc)
            await self._drain()
            self._applying = asyncio.create_task(self._apply(prepared, sink.last, started))
            self.store.writing(sink.states, self._applying)
            await asyncio.sleep(0)  # the call goes out now, not after the next batch's decoding
            return gaps

    async def _apply(self, prepared: Prepared, last: Mapping[TP, int], started: float) -> None:
        called = time.monotonic()
        try:
            await self.sink.execute(prepared)
        except FencedError as exc:
            self.telemetry.record_refusal(str(exc).split()[0] if str(exc) else "refused")
            _restart(f"the sink refused the batch ({exc})")
        except Exception as exc:
            _failed(exc)
        landed = time.monotonic()
        self.telemetry.record_applied(landed - started, landed - called)
        for tp, offset in last.items():
            self.applied[tp] = offset + 1

    async def drain(self) -> None:
        """Wait until the batch being applied has landed."""
        async with self._lock:
            await self._drain()

    async def _drain(self) -> None:
        if self._applying is not None:
            await self._applying
            self._applying = None

    def lag(self, high_watermarks: Mapping[TP, int]) -> None:
        """Report the lag of every owned partition, from the broker's high watermarks."""
        self.telemetry.record_lag(
            {tp: high - self.applied.get(tp, high) for tp, high in high_watermarks.items()}
        )

    # --- outputs -------------------------------------------------------------------

    async def start_output(self, bootstrap: str) -> AiokafkaOutput:
        """A started, acknowledged producer for the internal messages and dead letters
        of `handle` (every runtime's: Faust's own gives up flushing after 0.1 s, ADR 1)."""
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            linger_ms=2,
            **self.settings.aiokafka_security(),
        )
        await producer.start()
        return AiokafkaOutput(producer)

    async def forward_outbox(self, bootstrap: str, stop: asyncio.Event) -> None:
        """Relay the sink's outbox to `partnerpulse.metrics` / `partnerpulse.credits`:
        exactly once where the broker has transactions (docs/guarantees.md)."""
        settings = self.settings
        await forward_outbox(
            self.sink.client,
            bootstrap,
            stop,
            consumer=self.token,
            transactional_id=f"{settings.app_id}.outbox",
            prefix=settings.key_prefix,
            metrics_topic=settings.topic(METRICS),
            credits_topic=settings.topic(CREDITS),
            security=settings.aiokafka_security(),
        )


async def _produce(settings: Settings, batch: Batch, output: AiokafkaOutput) -> None:
    """Internal messages and dead letters, acknowledged before the sink call."""
    topic = settings.topic
    for send in batch.sends:
        key = send.key.encode() if send.key else None
        await output.send(topic(send.topic), key, send.value, partition=send.partition)
    for dead, raw in zip(batch.sink.dead_letters, batch.dead_raw, strict=True):
        # a dead letter goes to its source's partition number: no key to hash
        await output.send(
            topic(DLQ),
            None,
            raw,
            partition=dead.partition % settings.partitions,
            headers=_dead_letter_headers(dead),
        )
    await output.flush()


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
