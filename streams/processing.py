"""One batch of Kafka messages in, everything the sink and the broker must get out.

A worker hands `Processor.process` the messages of one poll, from every
partition it owns.  Three kinds of subject are keyed by the partition their
messages arrive on (the topics are co-partitioned, see streams/worker.py):

- leads (topic `leads` + internal `pp-lead-commands`, key lead id): on every
  batch each touched lead sends its current snapshot to the opportunities
  that subscribed to it (`pp-lead-snapshots`, key opportunity id);
- opportunities (topics `opportunities` + `pp-lead-snapshots`, key
  opportunity id): ask each contact lead they hold no snapshot of to
  subscribe them (`pp-lead-commands`, key lead id);
- others (integration, account, campaign, partner topics); a campaign
  registry entry is recorded and broadcast to every partition of
  `pp-lead-commands`, so each lead partition re-settles its leads of that
  campaign.

The batch is processed in three steps: decode every message (bad ones are
dead-lettered), load the touched subjects' state from Redis in one round
trip, then ingest and settle.  The result (`Batch`) holds the subjects'
absolute contributions, their new states, the messages to produce and the
dead letters; the worker produces, then applies it to Redis in one atomic
call.  Nothing here writes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final, Generic, NamedTuple, TypeVar

import orjson

from models.context import Context
from models.contrib import Contribution, Subject
from models.engine import RegistryEntry
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
from models.groups import GroupState, group_key
from models.lead import LeadState
from models.opportunity import OpportunityState
from models.parse import Rejection, parse_event
from models.partners import normalise, partner_id
from sinks.forwarder import partition_of
from sinks.redis_sink import DeadLetter
from streams import codec
from streams.settings import Settings
from streams.state import KINDS, StateKeys, StateStore, StateWrite

log = logging.getLogger(__name__)

LEAD_COMMANDS: Final = "pp-lead-commands"
LEAD_SNAPSHOTS: Final = "pp-lead-snapshots"
DLQ: Final = "partnerpulse.dlq"
CREDITS: Final = "partnerpulse.credits"
METRICS: Final = "partnerpulse.metrics"
INTERNAL_TOPICS: Final = (LEAD_COMMANDS, LEAD_SNAPSHOTS)
CONSUMED: Final = (*INPUT_TOPICS, *INTERNAL_TOPICS)
"""Topics the workers' consumer group reads (before `PP_TOPIC_PREFIX`)."""
TOPICS: Final = (*CONSUMED, DLQ, CREDITS, METRICS)
"""Every topic the pipeline reads or writes."""
POSITION_BITS: Final = 40
GROUP: Final = "group:"
"""Kind prefix of a group (models/groups.py) in a key's stored `other` state."""
LEAD_EVENTS: Final = (Touch, LeadCreated, Mql)
OPPORTUNITY_EVENTS: Final = (OpportunityCreated, OpportunityStage)
EXPECTED: Final[dict[str, Any]] = {
    "leads": LEAD_EVENTS,
    "opportunities": OPPORTUNITY_EVENTS,
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


@dataclass
class Batch:
    """What one batch produces, gathered before anything is written."""

    contributions: dict[str, Contribution] = field(default_factory=dict)
    causes: dict[str, str] = field(default_factory=dict)
    bases: dict[str, Contribution] = field(default_factory=dict)
    """Subject -> the contribution it last published (known for cached and new
    subjects): the sink then sends metric deltas instead of having the script diff."""
    states: list[StateWrite] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    dead_raw: list[tuple[bytes, dict[str, bytes]]] = field(default_factory=list)
    first: dict[tuple[str, int], int] = field(default_factory=dict)
    last: dict[tuple[str, int], int] = field(default_factory=dict)
    sends: list[tuple[str, str | None, int | None, bytes]] = field(default_factory=list)
    """(topic before prefix, key, partition, value) to produce before the sink call."""
    registry: dict[str, str] = field(default_factory=dict)
    """Campaign -> registry entry now in force, to record *before* the sends: a lead
    worker that sees the broadcast, or takes over its partition later, must find
    the entry in Redis."""

    def reject(self, message: Message, reason: str) -> None:
        self.dead.append(DeadLetter(message.topic, message.partition, message.offset, reason))
        headers = {
            "reason": reason.encode(),
            "source_topic": message.topic.encode(),
            "source_partition": str(message.partition).encode(),
            "source_offset": str(message.offset).encode(),
        }
        self.dead_raw.append((message.raw, headers))


Item = tuple[str, Any]
"""A decoded message: (what, payload), `what` naming the step that handles it."""


class Processor:
    """A worker's processing: the engine context and the campaign registry it knows."""

    def __init__(self, settings: Settings, store: StateStore) -> None:
        if settings.mapping != "contact-role":
            # Leads subscribe to opportunities that name them; account-wide
            # pooling needs an account-keyed exchange not built yet.
            raise ValueError("the streaming path supports PP_MAPPING=contact-role only")
        self.settings = settings
        self.store = store
        self.keys: StateKeys = store.keys
        self.ctx = Context(settings.engine)
        self._registry: dict[str, RegistryEntry] = {}
        self._kind = {settings.topic(name): name for name in CONSUMED}
        self._cache: StateCache = StateCache(settings.state_cache)

    async def start(self) -> None:
        """Take in the registry entries recorded so far (on every assignment).

        The state cache is dropped: partitions this worker gave up meanwhile
        may have been processed by another worker.
        """
        self._cache.clear()
        for campaign, raw in (await self.store.registry()).items():
            self._apply_registry({"campaign": campaign, **orjson.loads(raw)})

    async def process(self, messages: Sequence[Message]) -> Batch:
        batch = Batch()
        items: list[tuple[Message, Item]] = []
        for message in messages:
            tp = (message.topic, message.partition)
            batch.first.setdefault(tp, message.offset)
            batch.last[tp] = message.offset
            item = self._guarded(message, batch, partial(self._decode, message, batch))
            if item is not None:
                items.append((message, item))

        cache = self._cache
        lead = Loaded(LeadState, codec.load_lead, cache.kind("lead"))
        opportunity = Loaded(OpportunityState, codec.load_opportunity, cache.kind("opportunity"))
        other: Loaded[dict[str, Subject]] = Loaded(lambda _: {}, _load_other, cache.kind("other"))
        loaders: dict[str, Loaded[Any]] = {"lead": lead, "opportunity": opportunity, "other": other}
        campaigns = {normalise(p.campaign) or "" for _, (w, p) in items if w == "campaign"}
        for _, (what, payload) in items:
            if what in ("lead", "subscribe"):
                lead.want(payload.lead_id if what == "lead" else payload["lead"])
            elif what == "opportunity":
                opportunity.want(payload.opportunity_id)
            elif what == "snapshot":
                opportunity.want(payload["opportunity"])
            elif what in ("other", "campaign"):
                other.want(route(payload)[1])
        registry_leads = await self._registry_leads(items)
        for ids in registry_leads.values():
            lead.wanted.update(ids)
        states, registry = await self.store.load(
            {kind: loaded.missing() for kind, loaded in loaders.items()}, campaigns
        )
        lead.raw, opportunity.raw, other.raw = (
            states["lead"],
            states["opportunity"],
            states["other"],
        )

        handlers: dict[str, Callable[[Message, Any], object]] = {
            "lead": lambda m, e: self._lead_event(m, e, lead, batch),
            "subscribe": lambda m, c: lead(c["lead"]).subscribe(c["opportunity"]),
            "registry": lambda m, c: self._registry_command(m, c, lead, registry_leads),
            "opportunity": lambda m, e: opportunity(e.opportunity_id).ingest(
                e, self.ctx, m.position
            ),
            "snapshot": lambda m, u: opportunity(u["opportunity"]).receive(
                u["version"], codec.load_snapshot(u["snapshot"]), u["cause"]
            ),
            "other": lambda m, e: self._other_event(m, e, other),
            "campaign": lambda m, e: self._campaign(m, e, other, registry, batch),
        }
        for message, (what, payload) in items:
            self._guarded(message, batch, partial(handlers[what], message, payload))

        self._settle_leads(lead.states, batch)
        self._settle_opportunities(opportunity.states, batch)
        self._settle_others(other.states, batch)
        for loaded in loaders.values():
            loaded.keep()
        cache.trim()
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
        event = self._input(message, batch, kind or "")
        if event is None:
            return None
        if kind == "leads":
            return "lead", event
        if kind == "opportunities":
            return "opportunity", event
        return ("campaign" if isinstance(event, Campaign) else "other"), event

    def _input(self, message: Message, batch: Batch, kind: str) -> Event | None:
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
        if not isinstance(item, EXPECTED.get(kind, OtherEvent)) or route(event)[0] != kind:
            batch.reject(message, "wrong_topic")
            return None
        return event

    # --- leads ---------------------------------------------------------------

    def _lead_event(
        self,
        message: Message,
        event: Touch | LeadCreated | Mql,
        lead: Loaded[LeadState],
        batch: Batch,
    ) -> None:
        if lead(event.lead_id).ingest(event, message.position) and isinstance(event, Touch):
            campaign = normalise(event.campaign) or ""
            batch.states.append(("s", self.keys.campaign(campaign), event.lead_id, b""))

    async def _registry_leads(self, items: Iterable[tuple[Message, Item]]) -> dict[str, set[str]]:
        """Per registry command's campaign: the leads on the command's partition that
        touched it (they re-settle under the new entry)."""
        wanted = {(p["campaign"], m.partition) for m, (w, p) in items if w == "registry"}
        if not wanted:
            return {}
        campaigns = sorted({c for c, _ in wanted})
        members = await self.store.campaign_leads(campaigns)
        n = self.settings.partitions
        return {
            f"{campaign}|{part}": {i for i in members[campaign] if partition_of(i, n) == part}
            for campaign, part in wanted
        }

    def _registry_command(
        self,
        message: Message,
        command: dict[str, Any],
        lead: Loaded[LeadState],
        registry_leads: dict[str, set[str]],
    ) -> None:
        if self._apply_registry(command):
            for lead_id in sorted(registry_leads[f"{command['campaign']}|{message.partition}"]):
                lead(lead_id).cause = command["event_id"]

    def _settle_leads(self, touched: dict[str, LeadState], batch: Batch) -> None:
        subjects = self.keys.subjects("lead")
        for lead_id, state in touched.items():
            _publish(batch, f"lead:{lead_id}", state, state.contribute(self.ctx))
            # Only subscribers lacking the current version: what was sent is
            # recorded in the state, which is saved only after the sends were
            # acknowledged, so a crash in between sends them again.
            due = state.outbox()
            if due:
                payload = {
                    "version": state.version,
                    "cause": state.cause,
                    "snapshot": codec.dump_snapshot(due[0][2]),
                }
                for opp_id, _, _ in due:
                    message = orjson.dumps({**payload, "opportunity": opp_id}, default=list)
                    batch.sends.append((LEAD_SNAPSHOTS, opp_id, None, message))
            batch.states.append(("h", subjects, lead_id, self.store.encode(codec.dump_lead(state))))

    # --- registry ------------------------------------------------------------

    def _apply_registry(self, entry: dict[str, Any]) -> bool:
        """Keep the latest entry by event time; True if `entry` is the one in force.

        Not "if it changed anything": a worker may have loaded the entry at
        start before its command arrived, and the command is what re-settles
        leads.
        """
        campaign = entry["campaign"]
        held = self._registry.get(campaign)
        new = RegistryEntry(entry["ts"], entry["event_id"], entry["partner"])
        if held is not None and (held.ts, held.event_id) > (new.ts, new.event_id):
            return False
        self._registry[campaign] = new
        self.ctx.registry[campaign] = new.partner
        return True

    def _campaign(
        self,
        message: Message,
        item: Campaign,
        other: Loaded[dict[str, Subject]],
        registry: dict[str, bytes],
        batch: Batch,
    ) -> None:
        """Record a registry entry and tell every lead partition about it."""
        if not self._other_event(message, item, other):
            return
        campaign = normalise(item.campaign) or ""
        entry = {"ts": item.ts, "event_id": item.event_id, "partner": partner_id(item.partner)}
        held = registry.get(campaign)
        if held is None or _newer(entry, orjson.loads(held)):
            registry[campaign] = orjson.dumps(entry)
            batch.registry[campaign] = registry[campaign].decode()
        command = orjson.dumps({"op": "registry", "campaign": campaign, **entry})
        for partition in range(self.settings.partitions):
            batch.sends.append((LEAD_COMMANDS, None, partition, command))

    # --- opportunities -------------------------------------------------------

    def _settle_opportunities(self, touched: dict[str, OpportunityState], batch: Batch) -> None:
        subjects = self.keys.subjects("opportunity")
        for opp_id, state in touched.items():
            _publish(batch, f"opportunity:{opp_id}", state, state.contribute(self.ctx))
            for lead_id in sorted(state.contacts - state.leads.keys()):
                command = orjson.dumps({"op": "subscribe", "lead": lead_id, "opportunity": opp_id})
                batch.sends.append((LEAD_COMMANDS, lead_id, None, command))
            value = self.store.encode(codec.dump_opportunity(state))
            batch.states.append(("h", subjects, opp_id, value))

    # --- integration, account, campaign and partner topics -------------------

    def _other_event(
        self, message: Message, item: OtherEvent, other: Loaded[dict[str, Subject]]
    ) -> bool:
        """Into the topic's subject (data quality) and the event's group (metrics),
        as `Engine` does; both live under the event's key."""
        topic, key = route(item)
        subjects = other(key)
        admitted = subjects.setdefault(topic, Subject(key)).admit(
            item.event_id, item.ts, message.position
        )
        if admitted:
            family, _ = group_key(item)
            group = subjects.setdefault(f"{GROUP}{family}", GroupState(key, family=family))
            assert isinstance(group, GroupState)
            group.ingest(item)
        return admitted

    def _settle_others(self, touched: dict[str, dict[str, Subject]], batch: Batch) -> None:
        subjects = self.keys.subjects("other")
        for key, kinds in touched.items():
            stored = {}
            for kind, subject in kinds.items():
                if isinstance(subject, GroupState):
                    name, value = f"{subject.family}:{key}", codec.dump_group(subject)
                else:
                    name, value = f"{kind}:{key}", codec.dump_subject(subject)
                _publish(batch, name, subject, subject.contribute(self.ctx))
                stored[kind] = value.decode()
            batch.states.append(("h", subjects, key, self.store.encode(orjson.dumps(stored))))


def _publish(batch: Batch, name: str, subject: Subject, new: Contribution) -> None:
    """Hand `subject`'s new contribution to the sink, unless it is the one published.

    The sink diffs against what it holds, so sending an unchanged contribution
    changes nothing; skipping it saves encoding and script work.  A state read
    from Redis does not know what it published (`codec.UNKNOWN`: contributions
    are not stored with the state), and its contribution is always sent.  A
    cached state knows, and so does a new one (`EMPTY`): that is the sink's
    base for sending metric deltas (`RedisSink.prepare`).
    """
    old, subject.contribution = subject.contribution, new
    if old is not codec.UNKNOWN:
        if old == new:
            return
        batch.bases[name] = old
    batch.contributions[name] = new
    batch.causes[name] = subject.cause


class StateCache:
    """Subject states kept between batches: no Redis read for a subject seen lately.

    Sound because a worker owns its partitions exclusively (the sink fences
    every batch by ownership), applies its batches in order, and exits on any
    failed batch: while it runs, what it holds is what Redis holds.  It is
    dropped on every assignment.  The least recently used subjects beyond
    `size` are let go; they are read again when next touched.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._kinds: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}

    def kind(self, kind: str) -> dict[str, Any]:
        return self._kinds[kind]

    def clear(self) -> None:
        for states in self._kinds.values():
            states.clear()

    def trim(self) -> None:
        excess = sum(map(len, self._kinds.values())) - self.size
        for states in self._kinds.values():
            while excess > 0 and states:
                del states[next(iter(states))]  # insertion order: least recently used first
                excess -= 1


S = TypeVar("S")


class Loaded(Generic[S]):
    """The subjects of one kind a batch touches: ids asked for, then states on first use
    (from the cache, else from what Redis returned, else new)."""

    def __init__(
        self, new: Callable[[str], S], load: Callable[[bytes], S], cache: dict[str, S]
    ) -> None:
        self.new, self.load, self.cache = new, load, cache
        self.wanted: set[str] = set()
        self.raw: dict[str, bytes] = {}
        self.states: dict[str, S] = {}

    def want(self, key: str) -> None:
        self.wanted.add(key)

    def missing(self) -> set[str]:
        """The wanted ids that must be read from Redis."""
        return self.wanted - self.cache.keys()

    def __call__(self, key: str) -> S:
        state = self.states.get(key)
        if state is None:
            state = self.cache.pop(key, None)
            if state is None:
                raw = self.raw.get(key)
                state = self.load(raw) if raw is not None else self.new(key)
            self.states[key] = state
        return state

    def keep(self) -> None:
        """Put the batch's states in the cache, as its most recently used."""
        self.cache.update(self.states)


def _load_other(raw: bytes) -> dict[str, Subject]:
    """A key's topic subjects and groups (kinds `<topic>` and `group:<family>`)."""
    return {
        kind: (codec.load_group if kind.startswith(GROUP) else codec.load_subject)(value.encode())
        for kind, value in orjson.loads(raw).items()
    }


def _newer(entry: dict[str, Any], held: dict[str, Any]) -> bool:
    return bool((entry["ts"], entry["event_id"]) > (held["ts"], held["event_id"]))
