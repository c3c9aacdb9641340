"""The Faust runtime: PartnerPulse as a Faust app, over the shared pipeline.

For teams that deploy and monitor their stream processors as Faust apps
(`PP_RUNTIME=faust`, `--runtime faust`).  One agent, `concurrency=1`,
consumes every topic of the pipeline as raw bytes and hands each
`stream.take_events()` batch to the same `Pipeline` as the aiokafka runtime
(streams/pipeline.py): same engine, same fenced Redis sink, same outputs.
Nothing about attribution, state or sinks is written here.

Faust's own checkpointing is not trusted, only observed:

- no Faust tables and no changelogs: Redis holds state, metrics and the
  applied offsets in one atomic call per batch (docs/decisions.md, ADR 1);
- on assignment the pipeline claims the partitions and the agent's consumer
  seeks to the applied offset + 1;
- Faust's commits (of what the agent acked) serve lag monitoring only: its
  commit guard can commit past a message it never delivered (faust #606),
  and its recovery may seek to the committed offset after our seek.  Either
  shows up as a jump in a partition's offsets, which the pipeline refuses to
  apply; this runtime heals it in the process by seeking back to the first
  missing offset (counted in `partnerpulse_restarts{cause="delivery_gap"}`);
- an exception inside an agent would make Faust ack the messages: the
  pipeline catches what a subject raises (dead letters, `processing_error`)
  and exits the process (code 70, unapplied) on anything else, so nothing is
  acked past what Redis recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, cast

import faust
from faust.types import TP as FaustTP

from sinks.forwarder import AiokafkaOutput
from streams.admin import ensure_topics
from streams.pipeline import TP, Pipeline
from streams.processing import Message, consumed_by
from streams.settings import Settings
from streams.telemetry import Telemetry

log = logging.getLogger(__name__)

RESEEK_SECONDS = 1.0
"""A gap still open this long after its seek is sought again (Faust dropped the re-fetch)."""


def faust_app(settings: Settings, broker: str, redis_url: str, telemetry: Telemetry) -> faust.App:
    """The Faust app of one worker (`broker`: `kafka://host:port[;host:port]`): its
    agent, rebalance hooks and background tasks."""
    app = faust.App(
        settings.app_id,
        broker=broker,
        broker_credentials=_credentials(settings),
        store="memory://",
        web_enabled=False,
        topic_partitions=settings.partitions,
        topic_allow_declare=False,  # streams/admin.py creates and checks every topic
        topic_disable_leader=True,
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout,
        broker_rebalance_timeout=settings.session_timeout,
        broker_heartbeat_interval=min(1.0, settings.session_timeout / 4),
        broker_commit_interval=1.0,
        broker_max_poll_records=settings.batch_size,
        stream_buffer_maxsize=2 * settings.batch_size,
    )
    bootstrap = broker.removeprefix("kafka://").replace(";", ",")
    runtime = FaustRuntime(
        app, settings, Pipeline(settings, settings.redis_sink(redis_url), telemetry), bootstrap
    )
    channel = app.topic(
        *(settings.topic(name) for name in consumed_by(settings.mapping)),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    app.agent(channel, name="partnerpulse", concurrency=1)(runtime.process)
    # mode's signal types allow any positional arguments; these get (app, partitions)
    app.on_partitions_assigned.connect(cast(Any, runtime.on_assigned))
    app.on_partitions_revoked.connect(cast(Any, runtime.on_revoked))
    app.on_before_shutdown.connect(cast(Any, runtime.on_shutdown))
    app.task(runtime.outputs)
    app.timer(1.0)(runtime.report_lag)
    return app


class FaustRuntime:
    """What the Faust app does with the pipeline."""

    def __init__(
        self, app: faust.App, settings: Settings, pipeline: Pipeline, bootstrap: str
    ) -> None:
        self.app = app
        self.settings = settings
        self.pipeline = pipeline
        self.telemetry = pipeline.telemetry
        self.bootstrap = bootstrap
        self.stop = asyncio.Event()
        self._output: AiokafkaOutput | None = None
        self._sought: dict[TP, tuple[int, float]] = {}

    async def process(self, stream: Any) -> None:
        """The agent: every batch of events through the pipeline, gaps sought back."""
        async for events in stream.take_events(
            self.settings.batch_size, within=self.settings.batch_within
        ):
            messages = [
                Message(m.topic, m.partition, m.offset, m.value or b"")
                for m in (event.message for event in events)
            ]
            gaps = await self.pipeline.handle(messages, await self._producer())
            await self._heal(gaps)

    async def _heal(self, gaps: Mapping[TP, int]) -> None:
        """Seek each partition with a gap back to its first missing offset (once per
        gap: messages fetched before the seek show the same gap again)."""
        now = time.monotonic()
        for tp, offset in gaps.items():
            sought = self._sought.get(tp)
            if sought is not None and sought[0] == offset and now - sought[1] < RESEEK_SECONDS:
                continue
            self._sought[tp] = (offset, now)
            await self.app.consumer.seek(FaustTP(*tp), offset)

    async def _producer(self) -> AiokafkaOutput:
        """Our own acknowledged producer for internal messages and dead letters
        (Faust's gives up flushing after 0.1 s: ADR 1)."""
        if self._output is None:
            self._output = await self.pipeline.start_output(self.bootstrap)
        return self._output

    async def on_assigned(self, app: faust.App, assigned: Iterable[FaustTP], **_: Any) -> None:
        """Own the partitions in Redis, then resume each where the pipeline says."""
        consumer = app.consumer

        async def beginnings(fresh: list[TP]) -> dict[TP, int]:
            found = await consumer.earliest_offsets(*(FaustTP(*tp) for tp in fresh))
            return {(tp.topic, tp.partition): offset for tp, offset in found.items()}

        self._sought.clear()
        resume = await self.pipeline.claim(_tps(assigned), beginnings)
        for tp, offset in resume.items():
            await consumer.seek(FaustTP(*tp), offset)

    async def on_revoked(self, app: faust.App, revoked: Iterable[FaustTP], **_: Any) -> None:
        """Let the batch in hand land (Faust commits what the agent acked)."""
        await self.pipeline.release(_tps(revoked))

    async def on_shutdown(self, app: faust.App, **_: Any) -> None:
        self.stop.set()
        await self.pipeline.drain()
        if self._output is not None:
            await self._output.producer.stop()

    async def outputs(self) -> None:
        """Background: the outbox forwarder and, if configured, the operator endpoints."""
        async with self._telemetry_served():
            await self.pipeline.forward_outbox(self.bootstrap, self.stop)

    @contextlib.asynccontextmanager
    async def _telemetry_served(self) -> AsyncIterator[None]:
        settings = self.settings
        if not settings.metrics_port:
            yield
            return
        runner = await self.telemetry.serve(settings.metrics_host, settings.metrics_port)
        try:
            yield
        finally:
            await runner.cleanup()

    async def report_lag(self) -> None:
        consumer = self.app.consumer
        assigned = list(consumer.assignment())
        if assigned:
            highs = await consumer.highwaters(*assigned)
            self.pipeline.lag({(tp.topic, tp.partition): high for tp, high in highs.items()})


def run_faust_worker(settings: Settings, broker: str, redis_url: str) -> None:
    """Run the Faust worker in this process until SIGTERM or SIGINT."""
    bootstrap = broker.removeprefix("kafka://").replace(";", ",")
    asyncio.run(ensure_topics(settings, bootstrap))
    app = faust_app(settings, broker, redis_url, Telemetry("faust"))
    loglevel = os.environ.get("PP_LOGLEVEL", "warning")
    faust.Worker(
        app, loglevel=loglevel, quiet=True, redirect_stdouts=False
    ).execute_from_commandline()


def _credentials(settings: Settings) -> Any:
    """Faust's form of the Kafka security settings (the same ones aiokafka gets)."""
    protocol = settings.kafka_security_protocol
    context = settings.kafka_ssl_context()
    if protocol.startswith("SASL") and settings.kafka_sasl_password is not None:
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.get_secret_value(),
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,
        )
    return context


def _tps(partitions: Iterable[FaustTP]) -> list[TP]:
    return [(tp.topic, tp.partition) for tp in partitions]
