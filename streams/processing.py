"""One batch of Kafka messages in, everything the broker and the sink must get out.

The pipeline (streams/pipeline.py) hands `Processor.process` the messages of
one poll, from every partition the worker owns.  Subjects are keyed by the
partition their messages arrive on (the topics are co-partitioned, see
streams/worker.py), and the worker's `Engine` (models/engine.py, the batch
oracle's engine) settles them; what crosses to another key goes through
internal topics (`KafkaExchange`):

- a lead's snapshot to the opportunities that list it (`pp-lead-snapshots`,
  key opportunity id);
- an opportunity's subscription to its contact leads (`pp-lead-commands`, key
  lead id);
- a campaign registry entry now in force, to every partition of
  `pp-lead-commands`, so each lead partition re-settles its leads of that
  campaign;
- with the account mapping, a lead or an opportunity joining its account
  (`pp-account-commands`, key account id): the account's partition holds its
  members and subscribes every lead of it to every opportunity of it.

The steps of a batch, in this order (the last three are the pipeline's,
streams/pipeline.py, which also admits the messages first):

1. decode every message (a bad one is dead-lettered with its reason, one whose
   decoding fails as `internal_error`: never fatal);
2. load the touched subjects' state (streams/state: the cache, else Redis,
   one round trip);
3. ingest and settle in the engine: the subjects' new contributions, their new
   state, the internal messages.  A subject whose ingesting or settling raises
   keeps its state from before the batch, and the batch's messages that
   reached it are dead-lettered as `processing_error` (models/engine.py);
4. produce the internal messages and dead letters, and wait for the broker's
   acknowledgements (registry entries are recorded in Redis first);
5. apply the `SinkBatch` to Redis in one fenced, atomic call (while the next
   batch goes through steps 1-4);
6. report the applied offsets, which the runtime commits to Kafka (lag
   monitoring only).

Nothing here writes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final, NamedTuple, cast

import orjson

from models.engine import PROCESSING_ERROR, Engine, RegistryEntry
from models.events import (
    INPUT_TOPICS,
    Campaign,
    Event,
    LeadCreated,
    Mql,
    OpportunityCreated,
    OpportunityStage,
    OtherEvent,
    Touch,
    route,
)
from models.lead import LeadSnapshot
from models.parse import Rejection, parse_event
from models.partners import normalise
from models.subject import EMPTY, Contribution, Subject
from sinks.redis_sink import NOTHING, DeadLetter, Published, SinkBatch
from streams.settings import Settings
from streams.state import codec
from streams.state.store import KINDS, StateStore
from streams.state.subjects import CachedSubjects

log = logging.getLogger(__name__)

LEAD_COMMANDS: Final = "pp-lead-commands"
LEAD_SNAPSHOTS: Final = "pp-lead-snapshots"
ACCOUNT_COMMANDS: Final = "pp-account-commands"
DLQ: Final = "partnerpulse.dlq"
CREDITS: Final = "partnerpulse.credits"
METRICS: Final = "partnerpulse.metrics"
INTERNAL_TOPICS: Final = (LEAD_COMMANDS, LEAD_SNAPSHOTS, ACCOUNT_COMMANDS)
CONSUMED: Final = (*INPUT_TOPICS, *INTERNAL_TOPICS)
"""Topics the workers' consumer group reads (before `PP_TOPIC_PREFIX`)."""
TOPICS: Final = (*CONSUMED, DLQ, CREDITS, METRICS)
"""Every topic the pipeline reads or writes."""


def consumed_by(mapping: str) -> tuple[str, ...]:
    """The topics a worker reads: the account exchange only under the account mapping
    (an idle topic's partitions still cost the broker's fetches)."""
    return tuple(t for t in CONSUMED if t != ACCOUNT_COMMANDS or mapping == "account")


POSITION_BITS: Final = 40
EXPECTED: Final[dict[str, Any]] = {
    "leads": (Touch, LeadCreated, Mql),
    "opportunities": (OpportunityCreated, OpportunityStage),
}
"""Event classes per input topic; any other input topic carries an `OtherEvent`."""


class Message(NamedTuple):
    """One consumed record, reduced to what processing needs."""

    topic: str
    partition: int
    offset: int
    raw: bytes

    @property
    def position(self) -> int:
        """A delivery position unique across the partitions of one topic."""
        return (self.partition << POSITION_BITS) | self.offset


class Send(NamedTuple):
    """A message to produce before the sink call."""

    topic: str
    """Before `PP_TOPIC_PREFIX`."""
    key: str | None
    partition: int | None
    value: bytes


@dataclass
class Batch:
    """What one batch produces, gathered before anything is written."""

    sink: SinkBatch = field(default_factory=SinkBatch)
    sends: list[Send] = field(default_factory=list)
    dead_raw: list[bytes] = field(default_factory=list)
    """The original bytes of `sink.dead_letters`, in the same order (for the DLQ)."""
    registry: dict[str, bytes] = field(default_factory=dict)
    """Campaign -> registry entry now in force, to record *before* the sends: a lead
    worker that sees the broadcast, or takes over its partition later, must find
    the entry in Redis."""

    def reject(self, message: Message, reason: str, error: str = "") -> None:
        dead = DeadLetter(message.topic, message.partition, message.offset, reason, error)
        self.sink.dead_letters.append(dead)
        self.dead_raw.append(message.raw)

    def note(self, message: Message) -> None:
        """Count `message` in the batch's offsets."""
        tp = (message.topic, message.partition)
        self.sink.first.setdefault(tp, message.offset)
        self.sink.last[tp] = message.offset


class KafkaExchange:
    """The engine's `Exchange` in a worker: messages to the internal topics."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.batch = Batch()

    def snapshot(
        self, opportunities: Sequence[str], version: int, snapshot: LeadSnapshot, cause: str
    ) -> None:
        payload = {"version": version, "cause": cause, "snapshot": codec.dump_snapshot(snapshot)}
        for opp_id in opportunities:
            value = orjson.dumps({**payload, "opportunity": opp_id}, default=list)
            self.batch.sends.append(Send(LEAD_SNAPSHOTS, opp_id, None, value))

    def subscribe(self, lead_id: str, opportunity_id: str) -> None:
        command = orjson.dumps({"op": "subscribe", "lead": lead_id, "opportunity": opportunity_id})
        self.batch.sends.append(Send(LEAD_COMMANDS, lead_id, None, command))

    def registry(self, campaign: str, entry: RegistryEntry) -> None:
        self.batch.registry[campaign] = codec.dump_registry(entry)
        command = orjson.dumps(
            {
                "op": "registry",
                "campaign": campaign,
                "ts": entry.ts,
                "event_id": entry.event_id,
                "partner": entry.partner,
            }
        )
        for partition in range(self.partitions):
            self.batch.sends.append(Send(LEAD_COMMANDS, None, partition, command))

    def account(self, account: str, lead_id: str | None, opportunity_id: str | None) -> None:
        command = orjson.dumps({"account": account, "lead": lead_id, "opportunity": opportunity_id})
        self.batch.sends.append(Send(ACCOUNT_COMMANDS, account, None, command))


Item = tuple[str, Any]
"""A decoded message: (what, payload), `what` naming the engine call that takes it."""


class Processor:
    """A worker's processing: decoding, its engine and the engine's subject store."""

    def __init__(self, settings: Settings, store: StateStore) -> None:
        self.settings = settings
        self.store = store
        self.subjects = CachedSubjects(
            store, settings.state_cache, settings.partitions, settings.state_hot
        )
        self.exchange = KafkaExchange(settings.partitions)
        self.engine = Engine(settings.engine, subjects=self.subjects, exchange=self.exchange)
        self._kind = {settings.topic(name): name for name in CONSUMED}

    async def start(self) -> None:
        """Take in the registry entries recorded so far (on every assignment).

        The cached subjects are dropped: partitions this worker gave up meanwhile
        may have been processed by another worker.
        """
        self.subjects.clear()
        for campaign, raw in (await self.store.registry()).items():
            self.engine.registry.offer(campaign, codec.load_registry(raw))

    async def process(self, messages: Sequence[Message]) -> Batch:
        """Steps 1-3 of a batch (module docstring)."""
        self.exchange.batch = batch = Batch()
        items: list[tuple[Message, Item]] = []
        for message in messages:
            batch.note(message)
            item = self._guarded(message, batch, partial(self._decode, message, batch))
            if item is not None:
                items.append((message, item))

        wanted: dict[str, set[str]] = {kind: set() for kind in KINDS}
        campaigns: set[str] = set()
        registry: set[tuple[str, int]] = set()
        for message, (what, payload) in items:
            if what == "event":
                wanted[_kind(payload)].add(route(payload)[1])
                if isinstance(payload, Campaign):
                    campaigns.add(normalise(payload.campaign) or "")
            elif what == "subscribe":
                wanted["lead"].add(payload["lead"])
            elif what == "snapshot":
                wanted["opportunity"].add(payload["opportunity"])
            elif what == "account":
                wanted["account"].add(payload["account"])
            else:
                registry.add((payload["campaign"], message.partition))
        held = await self.subjects.load(wanted, campaigns, registry)
        engine = self.engine
        for campaign, entry in held.items():
            engine.registry.offer(campaign, entry)

        handlers: dict[str, Callable[[Message, Any], object]] = {
            "event": lambda m, e: engine.ingest(e, m.position, m),
            "subscribe": lambda m, c: engine.subscribe(c["lead"], c["opportunity"], m),
            "registry": lambda m, c: engine.on_registry(c["campaign"], codec.load_registry(c), m),
            "snapshot": lambda m, u: engine.receive(
                u["opportunity"], u["version"], codec.load_snapshot(u["snapshot"]), u["cause"], m
            ),
            "account": lambda m, c: engine.on_account(c["account"], c["lead"], c["opportunity"], m),
        }
        for message, (what, payload) in items:
            self._guarded(message, batch, partial(handlers[what], message, payload))
        settled = engine.settle_into(partial(_publish, batch.sink))
        poisoned: dict[Message, str] = {}
        for failure in settled.failed:
            poisoned.update(
                dict.fromkeys(cast(tuple[Message, ...], failure.origins), failure.error)
            )
        for message, error in poisoned.items():
            batch.reject(message, PROCESSING_ERROR, error)
        batch.sink.states = self.subjects.writes(settled)
        self.subjects.trim()
        return batch

    # --- decoding ------------------------------------------------------------

    def _guarded(self, message: Message, batch: Batch, step: Callable[[], Any]) -> Any:
        """`step()`; a message whose step fails is dead-lettered, never fatal."""
        try:
            return step()
        except Exception:
            log.exception("processing %s|%s|%s failed", *message[:3])
            batch.reject(message, "internal_error")
            return None

    def _decode(self, message: Message, batch: Batch) -> Item | None:
        kind = self._kind.get(message.topic)
        if kind == LEAD_COMMANDS:
            command = orjson.loads(message.raw)
            return ("subscribe" if command["op"] == "subscribe" else "registry"), command
        if kind == LEAD_SNAPSHOTS:
            return "snapshot", orjson.loads(message.raw)
        if kind == ACCOUNT_COMMANDS:
            return "account", orjson.loads(message.raw)
        event = self._input(message, batch, kind or "")
        return None if event is None else ("event", event)

    def _input(self, message: Message, batch: Batch, kind: str) -> Event | None:
        """The message's event if valid and of a type its topic carries; else None,
        after dead-lettering it."""
        item = parse_event(
            message.raw,
            max_bytes=self.settings.max_message_bytes,
            currencies=self.engine.ctx.config.currencies,
        )
        if isinstance(item, Rejection):
            batch.reject(message, item.reason)
            return None
        event: Event = item
        if not isinstance(item, EXPECTED.get(kind, OtherEvent)) or route(event)[0] != kind:
            batch.reject(message, "wrong_topic")
            return None
        return event


def _kind(event: Event) -> str:
    """The kind of subject state an event lands in (streams/state/store.py's KINDS)."""
    if isinstance(event, Touch | LeadCreated | Mql):
        return "lead"
    if isinstance(event, OpportunityCreated | OpportunityStage):
        return "opportunity"
    return "other"


def _publish(sink: SinkBatch, name: str, subject: Subject, new: Contribution) -> None:
    """Hand `subject`'s new contribution to the sink, with its base when known, and
    keep what Redis will hold as its next base (`Subject.sent`): a worker keeps
    that text, not the contribution's objects.

    A state read from Redis does not know what it published (contributions are
    not stored with the state): the sink diffs it.  A cached state knows, and so
    does a new one (`NOTHING`): the sink skips it when unchanged, else sends
    metric deltas from that base.
    """
    base = subject.sent
    if not isinstance(base, Published):
        base = NOTHING if subject.contribution is EMPTY else None
    subject.sent = sink.publish(name, new, base, subject.cause)
