"""The Faust app: the engine's subjects, partitioned, wired through Kafka.

Three agents, each owning one kind of subject for its partitions (state in
changelog-backed tables, `concurrency=1`, batches from `take_events`):

- `leads` (topics `leads` + internal `pp-lead-commands`, key lead id): lead
  state; on every batch it sends each touched lead's current snapshot to the
  opportunities that subscribed to it (topic `pp-lead-snapshots`, key
  opportunity id).
- `opportunities` (topics `opportunities` + `pp-lead-snapshots`, key
  opportunity id): opportunity state; asks each contact lead it holds no
  snapshot of to subscribe it (`pp-lead-commands`, key lead id).
- `others` (integration, account, campaign, partner topics): their subjects;
  a campaign registry entry is kept in a global table and broadcast to every
  partition of `pp-lead-commands`, so each lead partition re-settles its
  leads of that campaign.

Every batch: ingest → settle → write tables → produce and flush internal
messages and dead letters → one sink call with the touched subjects'
*absolute* contributions and the batch's offsets.  Offsets are committed by
Faust only after that, and every step is idempotent under redelivery
(docs/guarantees.md), so a crash anywhere neither loses nor double-counts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, TypeVar, cast

import faust
import orjson
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka.partitioner import murmur2  # type: ignore[import-untyped]
from faust.streams import Stream
from faust.types import EventT, StreamT, TableT, TopicT

from models.context import Context
from models.contrib import Contribution, Subject
from models.engine import RegistryEntry
from models.events import (
    INPUT_TOPICS,
    AccountSnapshot,
    Campaign,
    CampaignStats,
    Event,
    IntegrationEvent,
    LeadCreated,
    Mql,
    OpportunityCreated,
    OpportunityStage,
    PartnerFeedback,
    ReferralOutcome,
    ReferralSent,
    Touch,
    route,
)
from models.lead import LeadState
from models.opportunity import OpportunityState
from models.parse import Rejection, parse_event
from models.partners import normalise, partner_id
from sinks.forwarder import AiokafkaOutput, OutboxForwarder
from sinks.redis_sink import DeadLetter, RedisSink
from streams import codec
from streams.settings import Settings

log = logging.getLogger(__name__)

LEAD_COMMANDS = "pp-lead-commands"
LEAD_SNAPSHOTS = "pp-lead-snapshots"
DLQ = "partnerpulse.dlq"
CREDITS = "partnerpulse.credits"
METRICS = "partnerpulse.metrics"
LEAD_TOPICS = ("leads",)
OPPORTUNITY_TOPICS = ("opportunities",)
OTHER_TOPICS = ("integration-installs", "accounts", "campaigns", "partners")
INTERNAL_TOPICS = (LEAD_COMMANDS, LEAD_SNAPSHOTS)
CONSUMED = (*INPUT_TOPICS, *INTERNAL_TOPICS)
"""Topics the workers' consumer group reads (before `PP_TOPIC_PREFIX`)."""
TOPICS = (*CONSUMED, DLQ, CREDITS, METRICS)
"""Every topic the pipeline reads or writes."""
POSITION_BITS = 40
S = TypeVar("S", bound=Subject)
WATCH_SECONDS = 1.0
WATCH_TICKS = 15
"""Ticks with backlog and no progress before a worker counts as stuck."""
RESTART_EXIT_CODE = 70
"""A worker exits with this to be restarted: it stopped before acking, on purpose."""
OtherEvent = (
    IntegrationEvent
    | AccountSnapshot
    | Campaign
    | CampaignStats
    | PartnerFeedback
    | ReferralSent
    | ReferralOutcome
)


def partition_of(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives `key` (murmur2, as aiokafka)."""
    return int((murmur2(key.encode()) & 0x7FFFFFFF) % partitions)


class Message(NamedTuple):
    topic: str
    partition: int
    offset: int
    raw: bytes

    @property
    def position(self) -> int:
        """A delivery position unique across the partitions of one topic."""
        return (self.partition << POSITION_BITS) | self.offset


class Touched(Generic[S]):
    """The subjects one batch touched: loaded from their table on first use."""

    def __init__(
        self,
        table: TableT[bytes, bytes],
        load: Callable[[bytes], S],
        new: Callable[[str], S],
    ) -> None:
        self.table, self.load, self.new = table, load, new
        self.states: dict[str, S] = {}

    def __call__(self, key: str) -> S:
        state = self.states.get(key)
        if state is None:
            raw = self.table.get(key.encode())
            state = self.states[key] = self.load(raw) if raw is not None else self.new(key)
        return state


@dataclass
class Batch:
    """What one `take_events` batch produces, gathered before anything is written."""

    contributions: dict[str, Contribution] = field(default_factory=dict)
    dead: list[DeadLetter] = field(default_factory=list)
    dead_raw: list[tuple[bytes, dict[str, bytes]]] = field(default_factory=list)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    sends: list[tuple[str, str | None, int | None, bytes]] = field(default_factory=list)
    causes: dict[str, str] = field(default_factory=dict)

    def each(self, events: Sequence[EventT[bytes]], handle: Callable[[Message], None]) -> None:
        """Run `handle` on every message; one that fails is dead-lettered, not fatal."""
        for event in events:
            record = event.message
            value = record.value if isinstance(record.value, bytes) else b""
            message = Message(record.topic, record.partition, record.offset, value)
            tp = (message.topic, message.partition)
            self.offsets[tp] = max(self.offsets.get(tp, -1), message.offset)
            try:
                handle(message)
            except Exception:
                log.exception("processing %s|%s|%s failed", *tp, message.offset)
                self.reject(message, "internal_error")

    def reject(self, message: Message, reason: str) -> None:
        self.dead.append(DeadLetter(message.topic, message.partition, message.offset, reason))
        headers = {
            "reason": reason.encode(),
            "source_topic": message.topic.encode(),
            "source_partition": str(message.partition).encode(),
            "source_offset": str(message.offset).encode(),
        }
        self.dead_raw.append((message.raw, headers))


class Pipeline:
    """One worker's Faust app, its tables and agents, and the Redis sink."""

    def __init__(self, settings: Settings, broker: str, sink: RedisSink) -> None:
        if settings.mapping != "contact-role":
            # Leads subscribe to opportunities that name them; account-wide
            # pooling needs an account-keyed exchange not built yet.
            raise ValueError("the streaming path supports PP_MAPPING=contact-role only")
        self.settings = settings
        self.sink = sink
        self.bootstrap = broker.removeprefix("kafka://").replace(";", ",")
        self.ctx = Context(settings.engine)
        self.app = faust.App(
            settings.app_id,
            broker=broker,
            store=settings.store,
            datadir=settings.data_dir or "partnerpulse-data",
            topic_partitions=settings.partitions,
            topic_replication_factor=1,
            table_standby_replicas=0,
            consumer_auto_offset_reset="earliest",
            broker_session_timeout=settings.session_timeout,
            # Tansu answers a join only after half the rebalance timeout
            # (Faust's default 60 s makes every rebalance take 30 s).
            broker_rebalance_timeout=settings.session_timeout,
            broker_heartbeat_interval=min(1.0, settings.session_timeout / 4),
            web_enabled=False,
            producer_max_batch_size=settings.producer_batch_bytes,
            broker_credentials=settings.broker_credentials(),
        )
        n = settings.partitions

        def topic(*names: str) -> TopicT:
            return self.app.topic(
                *(settings.topic(name) for name in names),
                key_type=bytes,
                value_type=bytes,
                key_serializer="raw",
                value_serializer="raw",
                partitions=n,
            )

        def table(name: str) -> TableT[bytes, bytes]:
            # Raw byte keys hash exactly like the messages' keys, so with
            # `use_partitioner` a key's changelog partition is its source
            # partition, whatever event happens to be current in a batch.
            return self.app.Table(
                name,
                default=None,
                key_type=bytes,
                value_type=bytes,
                partitions=n,
                use_partitioner=True,
            )

        self.lead_commands = topic(LEAD_COMMANDS)
        self.lead_snapshots = topic(LEAD_SNAPSHOTS)
        self.dlq = topic(DLQ)
        self.lead_table = table("lead-state")
        self.opportunity_table = table("opportunity-state")
        self.other_table = table("other-state")
        self.registry_table = self.app.GlobalTable(
            "campaign-registry",
            default=None,
            key_type=bytes,
            value_type=bytes,
            use_partitioner=True,
        )
        self._campaign_leads: dict[str, set[str]] | None = None
        self._next_offset: dict[tuple[str, int], int] | None = None
        self.app.on_partitions_assigned.connect(self._on_assigned)
        self._registry: dict[str, RegistryEntry] = {}
        self._topic_kind = {settings.topic(name): name for name in INPUT_TOPICS}

        self.app.task(self._forward_outbox)
        self.app.timer(WATCH_SECONDS)(self._watch_deliveries)
        self._consumed = frozenset(settings.topic(name) for name in CONSUMED)
        self._agent_topics = {
            agent: frozenset(settings.topic(name) for name in names)
            for agent, names in (
                ("leads", (*LEAD_TOPICS, LEAD_COMMANDS)),
                ("opportunities", (*OPPORTUNITY_TOPICS, LEAD_SNAPSHOTS)),
                ("others", OTHER_TOPICS),
            )
        }
        self._stalled: dict[str, tuple[int, int]] = {}
        self._received: dict[str, int] = {}
        for name, channel, handle in (
            ("leads", topic(*LEAD_TOPICS, LEAD_COMMANDS), self._lead_batch),
            ("opportunities", topic(*OPPORTUNITY_TOPICS, LEAD_SNAPSHOTS), self._opportunity_batch),
            ("others", topic(*OTHER_TOPICS), self._other_batch),
        ):
            self.app.agent(channel, name=name, concurrency=1)(self._batches(name, handle))

    # --- agents ------------------------------------------------------------

    def _batches(
        self, name: str, handle: Callable[[Sequence[EventT[bytes]]], Awaitable[None]]
    ) -> Callable[[StreamT[Any]], AsyncIterator[None]]:
        """An agent body: `handle` one `take_events` batch at a time.

        Faust acks a batch's events only when the next batch is requested,
        i.e. after `handle` (and its sink call) returned.  A failure of the
        batch as a whole (not of one event: those are dead-lettered) must not
        ack it, which an exception in an agent would: the worker crashes
        instead, and its replacement processes the batch again.
        """

        async def agent(stream: StreamT[Any]) -> AsyncIterator[None]:
            batches = cast(Stream[bytes], stream).take_events(
                self.settings.batch_size, within=self.settings.batch_within
            )
            async for events in batches:
                self._received[name] = self._received.get(name, 0) + len(events)
                try:
                    await self._check_contiguous(events)
                    await handle(events)
                except Exception as exc:
                    log.critical("batch failed, stopping the worker unacked: %r", exc)
                    os._exit(RESTART_EXIT_CODE)  # no ack, no commit: the batch comes again
                yield None

        return agent

    # --- leads -------------------------------------------------------------

    async def _lead_batch(self, events: Sequence[EventT[bytes]]) -> None:
        batch = Batch()
        lead = Touched(self.lead_table, codec.load_lead, LeadState)
        touched = lead.states
        self._refresh_registry()
        campaign_leads = self._campaign_index()

        def one(message: Message) -> None:
            if self._topic_kind.get(message.topic) == "leads":
                item = self._input(message, batch, Touch | LeadCreated | Mql)
                if isinstance(item, Touch | LeadCreated | Mql):
                    state = lead(item.lead_id)
                    if state.ingest(item, message.position) and isinstance(item, Touch):
                        campaign = normalise(item.campaign) or ""
                        campaign_leads.setdefault(campaign, set()).add(item.lead_id)
                return
            command = orjson.loads(message.raw)
            if command["op"] == "subscribe":
                lead(command["lead"]).subscribe(command["opportunity"])
            elif command["op"] == "registry" and self._apply_registry(command):
                n = self.settings.partitions
                for lead_id in sorted(campaign_leads.get(command["campaign"], ())):
                    if partition_of(lead_id, n) == message.partition:
                        lead(lead_id).cause = command["event_id"]

        batch.each(events, one)

        for lead_id, state in touched.items():
            state.settle(self.ctx)
            batch.contributions[f"lead:{lead_id}"] = state.contribution
            # Resend to every subscriber, not only the ones `outbox` says lack
            # the version: a snapshot lost in a crash is repaired by the replay.
            snapshot = state.snapshot
            assert snapshot is not None
            payload = {
                "version": state.version,
                "cause": state.cause,
                "snapshot": codec.dump_snapshot(snapshot),
            }
            for opp_id in state.subscribers:
                message = orjson.dumps({**payload, "opportunity": opp_id}, default=list)
                batch.sends.append((LEAD_SNAPSHOTS, opp_id, None, message))
            self.lead_table[lead_id.encode()] = codec.dump_lead(state)
            batch.causes[f"lead:{lead_id}"] = state.cause
        await self._finish(batch)

    def _campaign_index(self) -> dict[str, set[str]]:
        """Campaign → this worker's leads that touched it, for registry changes.

        Rebuilt from the table after every assignment (Faust processes no
        batch before the assigned partitions' tables are recovered), then
        kept up to date as touches arrive.  Registry changes are rare; this
        saves scanning every lead for each.
        """
        if self._campaign_leads is None:
            index: dict[str, set[str]] = {}
            for key, raw in self.lead_table.items():
                for record in codec.load_lead(raw).touches.values():
                    index.setdefault(record.campaign, set()).add(key.decode())
            self._campaign_leads = index
        return self._campaign_leads

    async def _watch_deliveries(self) -> None:
        """Restart a worker whose agents stopped receiving messages that exist.

        Two open Faust bugs leave messages unprocessed with nothing to notice
        them: a message read but dropped at a partition's tail (no later one
        trips `_check_contiguous`), and partitions assigned after a rebalance
        but never fetched (faust #471, #629).  Every tick compares what our
        agents received with the broker's end offsets; an agent with backlog
        and no progress for `WATCH_TICKS` ticks means messages are stuck, and
        the worker exits unacked so its restart reads them again.
        """
        if self.app.rebalancing or self.app.in_recovery:
            self._stalled = {}  # no delivery is due while Faust joins or recovers
            return
        expected = await self._expected()
        consumer = self.app.consumer
        tps = [tp for tp in consumer.assignment() if tp.topic in self._consumed]
        if not tps:
            return
        ends = await consumer.highwaters(*tps)
        stalled: dict[str, tuple[int, int]] = {}
        for agent, topics in self._agent_topics.items():
            mine = [tp for tp in tps if tp.topic in topics]
            seen = self._received.get(agent, 0)
            backlog = any(
                (ends.get(tp) or 0) > expected.get((tp.topic, tp.partition), 0) for tp in mine
            )
            last, ticks = self._stalled.get(agent, (seen, 0))
            ticks = ticks + 1 if backlog and seen == last else 0
            if ticks >= WATCH_TICKS:
                log.critical("agent %s has backlog but received nothing for %s ticks", agent, ticks)
                os._exit(RESTART_EXIT_CODE)
            stalled[agent] = (seen, ticks)
        self._stalled = stalled

    async def _expected(self) -> dict[tuple[str, int], int]:
        """Next offset our agents should receive per partition, from what was applied."""
        if self._next_offset is None:
            applied = await self.sink.read_offsets()
            self._next_offset = {tp: offset + 1 for tp, offset in applied.items()}
        return self._next_offset

    async def _on_assigned(self, *_: Any, **__: Any) -> None:
        """Assignment changed: local indexes and offset expectations start over."""
        self._campaign_leads = None
        self._next_offset = None
        self._stalled = {}

    async def _check_contiguous(self, events: Sequence[EventT[bytes]]) -> None:
        """Refuse to go past a hole in a partition's offsets.

        During a rebalance Faust can mark an in-flight message as read
        without delivering it, then commit past it (its fetch loop under
        `suspend_flow`, and faust #606's commit guard): that message would
        be lost.  Offsets of our topics are contiguous (no compaction, no
        transactions), so a jump past the next expected offset means exactly
        that; the worker then exits before acking anything after the hole,
        and its restart resumes from the committed offset, before the hole.
        Expectations start from the offsets the sink recorded as applied; a
        partition with none was never committed either, so it starts at 0.
        """
        expected = await self._expected()
        for event in events:
            message = event.message
            tp = (message.topic, message.partition)
            want = expected.get(tp, 0)
            if message.offset > want:
                raise RuntimeError(f"offset gap on {tp}: expected {want}, got {message.offset}")
            expected[tp] = max(want, message.offset + 1)

    # --- registry ----------------------------------------------------------

    def _refresh_registry(self) -> None:
        """Take in registry entries that reached this worker through the global table."""
        for campaign, raw in self.registry_table.items():
            self._apply_registry({"campaign": campaign.decode(), **orjson.loads(raw)})

    def _apply_registry(self, entry: dict[str, Any]) -> bool:
        """Keep the latest entry by event time; True if `entry` is the one in force.

        Not "if it changed anything": the global table may have delivered the
        entry before its command, and the command is what re-settles leads.
        """
        campaign = entry["campaign"]
        held = self._registry.get(campaign)
        new = RegistryEntry(entry["ts"], entry["event_id"], entry["partner"])
        if held is not None and (held.ts, held.event_id) > (new.ts, new.event_id):
            return False
        self._registry[campaign] = new
        self.ctx.registry[campaign] = new.partner
        return True

    # --- opportunities -----------------------------------------------------

    async def _opportunity_batch(self, events: Sequence[EventT[bytes]]) -> None:
        batch = Batch()
        opportunity = Touched(self.opportunity_table, codec.load_opportunity, OpportunityState)
        touched = opportunity.states

        def one(message: Message) -> None:
            if self._topic_kind.get(message.topic) == "opportunities":
                item = self._input(message, batch, OpportunityCreated | OpportunityStage)
                if isinstance(item, OpportunityCreated | OpportunityStage):
                    opportunity(item.opportunity_id).ingest(item, self.ctx, message.position)
                return
            update = orjson.loads(message.raw)
            opportunity(update["opportunity"]).receive(
                update["version"], codec.load_snapshot(update["snapshot"]), update["cause"]
            )

        batch.each(events, one)

        for opp_id, state in touched.items():
            state.settle(self.ctx)
            batch.contributions[f"opportunity:{opp_id}"] = state.contribution
            batch.causes[f"opportunity:{opp_id}"] = state.cause
            for lead_id in sorted(state.contacts - state.leads.keys()):
                command = orjson.dumps({"op": "subscribe", "lead": lead_id, "opportunity": opp_id})
                batch.sends.append((LEAD_COMMANDS, lead_id, None, command))
            self.opportunity_table[opp_id.encode()] = codec.dump_opportunity(state)
        await self._finish(batch)

    # --- integration, account, campaign and partner topics -----------------

    async def _other_batch(self, events: Sequence[EventT[bytes]]) -> None:
        batch = Batch()
        touched: dict[str, dict[str, Subject]] = {}

        def one(message: Message) -> None:
            item = self._input(message, batch, OtherEvent)
            if item is None:
                return
            kind, key = route(item)
            subjects = touched.get(key)
            if subjects is None:
                stored = self.other_table.get(key.encode())
                subjects = touched[key] = (
                    {k: codec.load_subject(v.encode()) for k, v in orjson.loads(stored).items()}
                    if stored is not None
                    else {}
                )
            subject = subjects.setdefault(kind, Subject(key))
            if subject.admit(item.event_id, item.ts, message.position) and isinstance(
                item, Campaign
            ):
                self._broadcast_registry(item, batch)

        batch.each(events, one)

        for key, subjects in touched.items():
            for kind, subject in subjects.items():
                batch.contributions[f"{kind}:{key}"] = Contribution(subject.quality(), {})
            self.other_table[key.encode()] = orjson.dumps(
                {kind: codec.dump_subject(s).decode() for kind, s in subjects.items()}
            )
        await self._finish(batch)

    def _broadcast_registry(self, item: Campaign, batch: Batch) -> None:
        """Record the entry globally and tell every lead partition about it."""
        campaign = normalise(item.campaign) or ""
        entry = {"ts": item.ts, "event_id": item.event_id, "partner": partner_id(item.partner)}
        held = self.registry_table.get(campaign.encode())
        if held is None or _newer(entry, orjson.loads(held)):
            self.registry_table[campaign.encode()] = orjson.dumps(entry)
        command = orjson.dumps({"op": "registry", "campaign": campaign, **entry})
        for partition in range(self.settings.partitions):
            batch.sends.append((LEAD_COMMANDS, None, partition, command))

    # --- Kafka outputs -----------------------------------------------------

    async def _forward_outbox(self) -> None:
        """Relay the sink's outbox to `partnerpulse.metrics` / `partnerpulse.credits`.

        Its own aiokafka producer: delivery is awaited message by message
        before an outbox entry is acknowledged (docs/guarantees.md).
        """
        settings = self.settings
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            max_batch_size=settings.producer_batch_bytes,
            acks="all",
            **settings.aiokafka_security(),
        )
        await producer.start()
        try:
            output = AiokafkaOutput(producer)
            forwarder = OutboxForwarder(
                self.sink.client,
                output.send,
                output.flush,
                consumer=f"{socket.gethostname()}-{os.getpid()}",
                prefix=settings.key_prefix,
                metrics_topic=settings.topic(METRICS),
                credits_topic=settings.topic(CREDITS),
            )
            await forwarder.run(asyncio.Event())
        finally:
            await producer.stop()

    # --- shared ------------------------------------------------------------

    def _input(self, message: Message, batch: Batch, expected: Any) -> Event | None:
        """The message's event if valid and of a type its topic carries; else None,
        after dead-lettering it."""
        item = parse_event(
            message.raw,
            max_bytes=self.settings.max_message_bytes,
            currencies=self.ctx.config.currencies,
        )
        if isinstance(item, Rejection):
            batch.reject(message, item.reason)
            return None
        event: Event = item
        if not isinstance(item, expected) or route(event)[0] != self._topic_kind[message.topic]:
            batch.reject(message, "wrong_topic")
            return None
        return event

    async def _finish(self, batch: Batch) -> None:
        """Produce (and flush) before the sink records the offsets: see module doc."""
        for topic, key, partition, value in batch.sends:
            await self.app.topic(self.settings.topic(topic)).send(
                key=key.encode() if key is not None else None,
                value=value,
                partition=partition,
                key_serializer="raw",
                value_serializer="raw",
            )
        for raw, headers in batch.dead_raw:
            await self.dlq.send(value=raw, headers=headers)
        await self._drain_producer()
        await self.sink.apply(batch.contributions, batch.dead, batch.offsets, causes=batch.causes)

    async def _drain_producer(self) -> None:
        """Wait until every table changelog record and message of this batch is delivered.

        Faust's own flush gives up on its buffer after 0.1 s without a send
        (`ProducerBuffer.flush_atmost`), and then commits offsets whose
        changelog records were never written: a SIGKILL at that moment loses
        state.  Draining here, before the batch is acked, closes that window.
        """
        producer = self.app.producer
        while producer.buffer.size:
            await producer.buffer.flush()
            await asyncio.sleep(0.001)
        await producer.flush()


def _newer(entry: dict[str, Any], held: dict[str, Any]) -> bool:
    return bool((entry["ts"], entry["event_id"]) > (held["ts"], held["event_id"]))
