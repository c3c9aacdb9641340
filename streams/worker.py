"""The aiokafka runtime: one consumer-group loop over the shared pipeline.

One aiokafka consumer in the group reads every topic of the pipeline
(co-partitioned: the range assignor gives a worker the same partition
numbers of every topic, so a lead's events, commands and state all belong to
one worker).  Each poll is one batch for `Pipeline.handle`
(streams/pipeline.py, which states the steps and where Redis fences them);
this loop only polls, seeks where the pipeline says, and commits the applied
positions to Kafka for lag monitoring.  `PP_RUNTIME=faust` runs the same
pipeline under Faust agents instead (streams/faust_app.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping

from aiokafka import (  # type: ignore[import-untyped]
    AIOKafkaConsumer,
    ConsumerRebalanceListener,
    TopicPartition,
)
from aiokafka.coordinator.assignors.range import (  # type: ignore[import-untyped]
    RangePartitionAssignor,
)

from sinks.redis_sink import RedisSink
from streams.admin import ensure_topics
from streams.pipeline import TP, Pipeline
from streams.processing import Message, consumed_by
from streams.settings import Settings
from streams.telemetry import Telemetry

log = logging.getLogger(__name__)

COMMIT_SECONDS = 1.0


class Worker:
    """One worker process: an aiokafka consumer feeding the pipeline."""

    def __init__(
        self, settings: Settings, bootstrap: str, sink: RedisSink, telemetry: Telemetry
    ) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.pipeline = Pipeline(settings, sink, telemetry)
        self._consumer: AIOKafkaConsumer | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Process until `stop` is set; then finish the batch in hand and leave cleanly."""
        settings = self.settings
        security = settings.aiokafka_security()
        await ensure_topics(settings, self.bootstrap)
        timeout_ms = int(settings.session_timeout * 1000)
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
        output = await self.pipeline.start_output(self.bootstrap)
        topics = [settings.topic(name) for name in consumed_by(settings.mapping)]
        consumer.subscribe(topics, listener=_Rebalance(self))
        await consumer.start()
        forwarding = asyncio.create_task(self.pipeline.forward_outbox(self.bootstrap, stop))
        last_commit = time.monotonic()
        try:
            while not stop.is_set():
                records = await consumer.getmany(
                    timeout_ms=int(settings.batch_within * 1000),
                    max_records=settings.batch_size,
                )
                if records:
                    messages = [
                        Message(tp.topic, tp.partition, r.offset, r.value or b"")
                        for tp, batch in records.items()
                        for r in batch
                    ]
                    gaps = await self.pipeline.handle(messages, output)
                    for (topic, partition), offset in gaps.items():
                        consumer.seek(TopicPartition(topic, partition), offset)
                if time.monotonic() - last_commit >= COMMIT_SECONDS:
                    await self._commit(self.pipeline.applied)
                    self._report_lag()
                    last_commit = time.monotonic()
        finally:
            stop.set()
            await self.pipeline.drain()
            await self._commit(self.pipeline.applied)
            await consumer.stop()
            await forwarding
            await output.producer.stop()

    async def _commit(self, positions: Mapping[TP, int]) -> None:
        """Commit applied positions to Kafka, for lag monitoring only (Redis is the
        checkpoint); a failed commit is harmless."""
        consumer = self._consumer
        if consumer is None or not positions:
            return
        try:
            await consumer.commit({TopicPartition(*tp): off for tp, off in positions.items()})
        except Exception as exc:  # rebalancing, broker away: the next commit covers it
            log.info("offset commit skipped: %r", exc)

    def _report_lag(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        highs = {}
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is not None:
                highs[(tp.topic, tp.partition)] = high
        self.pipeline.lag(highs)

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """Own the partitions in Redis, then resume each where the pipeline says."""
        consumer = self._consumer
        assert consumer is not None

        async def beginnings(fresh: list[TP]) -> dict[TP, int]:
            found = await consumer.beginning_offsets([TopicPartition(*tp) for tp in fresh])
            return {(tp.topic, tp.partition): offset for tp, offset in found.items()}

        resume = await self.pipeline.claim(_tps(assigned), beginnings)
        for (topic, partition), offset in resume.items():
            consumer.seek(TopicPartition(topic, partition), offset)

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Let the batch in hand land, then record the positions given up."""
        await self._commit(await self.pipeline.release(_tps(revoked)))


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.worker.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.worker.on_assigned(assigned)


def _tps(partitions: Iterable[TopicPartition]) -> list[TP]:
    return [(tp.topic, tp.partition) for tp in partitions]
