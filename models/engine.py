"""The engine: keyed subjects wired together, over a subject store and an exchange.

There is one engine.  The batch oracle (`recompute`), the property tests and
the streaming worker all run `Engine`; they differ only in two things it is
given:

- its `SubjectStore`, where subjects live: `MemorySubjects` (every subject of
  the file) for the oracle, the worker's cache of subjects loaded from Redis
  (streams/state) for a batch;
- its `Exchange`, how a subject reaches a subject under another key (a lead's
  snapshot to the opportunities that list it, an opportunity's subscription to
  its contact leads, a campaign registry entry to every lead, and with the
  account mapping a lead or an opportunity joining its account):
  `Direct` delivers back into the same engine at once; the worker's exchange
  produces the messages to the internal Kafka topics, and the receiving
  worker hands them to its engine's `subscribe`, `receive`, `on_registry` and
  `on_account`.

`ingest` only records an event (cheap); `settle` recomputes the subjects the
ingested events touched.  The worker settles once per batch, the oracle once
per file, property tests after every event: all three give the same totals.

A subject whose ingesting or settling raises is *poisoned* for that settle:
it goes back to its state from before (`SubjectStore.restore`), publishes
nothing, and every input that reached it since the last settle (its
*origins*: a file position, or the worker's message) is reported in
`Settled.failed`, to be dead-lettered as `processing_error`; the rest of the
settle goes on.  The oracle counts those dead letters like the worker, so a
subject that fails on its own data fails the same way in both.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Final, Protocol

from models.config import EngineConfig
from models.context import Context
from models.events import (
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
from models.lead import LeadSnapshot, LeadState
from models.opportunity import OpportunityState
from models.parse import Rejection
from models.partners import normalise, partner_id
from models.subject import Contribution, Deltas, MetricKey, Subject, merge

log = logging.getLogger(__name__)

GROUP: Final = "group:"
"""Kind prefix of a group (models/groups.py) among the subjects of one key."""

Publish = Callable[[str, Subject, Contribution], None]
"""Called for every settled subject: (its name, the subject still holding the
contribution it published last, its new contribution)."""
SubjectId = tuple[str, str]
"""(kind, key): kind `lead`, `opportunity`, `other` (all subjects of an
extension-topic key) or `account` (its members, account mapping)."""
PROCESSING_ERROR: Final = "processing_error"
"""Dead-letter reason of the inputs of a subject that failed to ingest or settle."""


@dataclass(frozen=True, slots=True)
class RegistryEntry:
    """A campaign registry entry: the partner it gives the campaign's touches."""

    ts: int
    event_id: str
    partner: str | None


class Registry:
    """Campaign -> the registry entry in force: the latest by `(occurred_at, event_id)`.

    The only place that rule lives.  The partner in force is mirrored into the
    context, where touchpoints resolve their partner.
    """

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.entries: dict[str, RegistryEntry] = {}

    def offer(self, campaign: str, entry: RegistryEntry) -> bool:
        """Keep `entry` unless a later one is held; True if `entry` is in force.

        True also when it was in force already: the caller re-settles the
        campaign's leads on True, and a worker may have loaded the entry (at
        start, or with the campaign's own event) before its broadcast reached
        the leads.
        """
        held = self.entries.get(campaign)
        if held is not None and (held.ts, held.event_id) > (entry.ts, entry.event_id):
            return False
        self.entries[campaign] = entry
        self.ctx.registry[campaign] = entry.partner
        return True


@dataclass(slots=True)
class AccountMembers:
    """The leads and opportunities of one account (account mapping): every pair of
    them is subscribed, whichever joined first."""

    leads: set[str] = field(default_factory=set)
    opportunities: set[str] = field(default_factory=set)


class SubjectStore(Protocol):
    """Where an engine's subjects live, and the campaign -> leads index.

    `others` maps a Kafka key of the extension topics to its subjects by kind:
    the topic's subject (deduplication and data quality) under the topic name,
    and the event's group under `group:<family>`.
    """

    leads: dict[str, LeadState]
    opportunities: dict[str, OpportunityState]
    others: dict[str, dict[str, Subject]]
    accounts: dict[str, AccountMembers]

    def index_campaign(self, campaign: str, lead_id: str) -> None:
        """`lead_id` touched `campaign` (its leads re-settle on a registry entry)."""

    def campaign_leads(self, campaign: str) -> Iterable[str]:
        """The leads of `campaign` this engine holds."""

    def checkpoint(self, kind: str, key: str) -> None:
        """The subject is about to change for the first time since the last settle."""

    def restore(self, kind: str, key: str) -> None:
        """Put the subject back as it was at its checkpoint (absent if it was)."""

    def release(self) -> None:
        """A settle is over: checkpoints are no longer needed."""


class Exchange(Protocol):
    """How a subject reaches subjects under other keys."""

    def snapshot(
        self, opportunities: Sequence[str], version: int, snapshot: LeadSnapshot, cause: str
    ) -> None:
        """A lead's snapshot for the opportunities that lack its `version`."""

    def subscribe(self, lead_id: str, opportunity_id: str) -> None:
        """An opportunity lists `lead_id` as a contact and needs its snapshots."""

    def registry(self, campaign: str, entry: RegistryEntry) -> None:
        """A registry entry now in force, for every lead of the campaign."""

    def account(self, account: str, lead_id: str | None, opportunity_id: str | None) -> None:
        """A lead or an opportunity of `account` (account mapping), for its members."""


@dataclass(slots=True)
class MemorySubjects:
    """Every subject in memory (the batch oracle, tests)."""

    leads: dict[str, LeadState] = field(default_factory=dict)
    opportunities: dict[str, OpportunityState] = field(default_factory=dict)
    others: dict[str, dict[str, Subject]] = field(default_factory=dict)
    accounts: dict[str, AccountMembers] = field(default_factory=dict)
    campaigns: dict[str, set[str]] = field(default_factory=dict)
    _before: dict[SubjectId, object] = field(default_factory=dict)

    def index_campaign(self, campaign: str, lead_id: str) -> None:
        self.campaigns.setdefault(campaign, set()).add(lead_id)

    def campaign_leads(self, campaign: str) -> Iterable[str]:
        return self.campaigns.get(campaign, ())

    def checkpoint(self, kind: str, key: str) -> None:
        """A copy of the subject (in the oracle, mostly of one not created yet)."""
        self._before[(kind, key)] = copy.deepcopy(table(self, kind).get(key))

    def restore(self, kind: str, key: str) -> None:
        held, subjects = self._before[(kind, key)], table(self, kind)
        if held is None:
            subjects.pop(key, None)
        else:
            subjects[key] = held

    def release(self) -> None:
        self._before.clear()


def table(store: SubjectStore, kind: str) -> dict[str, Any]:
    """The store's subjects of `kind` (a `SubjectId`'s kind), by key."""
    tables: dict[str, dict[str, Any]] = {
        "lead": store.leads,
        "opportunity": store.opportunities,
        "other": store.others,
        "account": store.accounts,
    }
    return tables[kind]


class Direct:
    """The in-memory exchange: delivers into the same engine at once."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def snapshot(
        self, opportunities: Sequence[str], version: int, snapshot: LeadSnapshot, cause: str
    ) -> None:
        for opp_id in opportunities:
            self.engine.receive(opp_id, version, snapshot, cause)

    def subscribe(self, lead_id: str, opportunity_id: str) -> None:
        self.engine.subscribe(lead_id, opportunity_id)

    def registry(self, campaign: str, entry: RegistryEntry) -> None:
        self.engine.on_registry(campaign, entry)

    def account(self, account: str, lead_id: str | None, opportunity_id: str | None) -> None:
        self.engine.on_account(account, lead_id, opportunity_id)


@dataclass(frozen=True, slots=True)
class Failure:
    """A subject that failed to ingest or settle, and the inputs that reached it."""

    kind: str
    key: str
    origins: tuple[Hashable, ...]
    error: str
    """The exception's type and message (no stack)."""


@dataclass(slots=True)
class Settled:
    """The keys one `settle` recomputed, by kind (the worker saves their state), and
    the subjects that failed (restored, their inputs to dead-letter)."""

    leads: list[str] = field(default_factory=list)
    opportunities: list[str] = field(default_factory=list)
    others: list[str] = field(default_factory=list)
    accounts: list[str] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)


class Engine:
    """Every rule of wiring subjects together, and the running totals of its deltas."""

    def __init__(
        self,
        config: EngineConfig | None = None,
        *,
        subjects: SubjectStore | None = None,
        exchange: Exchange | None = None,
    ) -> None:
        self.ctx = Context(config or EngineConfig())
        self.subjects: SubjectStore = subjects if subjects is not None else MemorySubjects()
        self.exchange: Exchange = exchange if exchange is not None else Direct(self)
        self.registry = Registry(self.ctx)
        self.totals: dict[MetricKey, int] = {}
        self._dirty_leads: set[str] = set()
        self._dirty_opportunities: set[str] = set()
        self._dirty_others: set[str] = set()
        self._dirty_accounts: set[str] = set()
        self._origins: dict[SubjectId, list[Hashable]] = {}
        """Subjects changed since the last settle -> the inputs that reached them."""
        self._campaigns: dict[str, set[str]] = {}
        """Lead -> campaigns it touched since the last settle (indexed once it settles)."""
        self._poisoned: dict[SubjectId, str] = {}
        self._position = 0

    @property
    def leads(self) -> dict[str, LeadState]:
        return self.subjects.leads

    @property
    def opportunities(self) -> dict[str, OpportunityState]:
        return self.subjects.opportunities

    @property
    def others(self) -> dict[str, dict[str, Subject]]:
        return self.subjects.others

    # --- input -------------------------------------------------------------

    def ingest(
        self, event: Event, position: int | None = None, origin: Hashable | None = None
    ) -> None:
        """Record one event delivered at `position` (default: a fresh one).

        Redelivering an event at the position it was first seen at is a
        replay and changes nothing; at any other position it is a duplicate.
        `origin` names the input for a dead letter (default: the position).
        """
        if position is None:
            self._position += 1
            position = self._position
        origin = position if origin is None else origin
        if isinstance(event, Touch | LeadCreated | Mql):
            self._guarded(("lead", event.lead_id), origin, self._ingest_lead, event, position)
        elif isinstance(event, OpportunityCreated | OpportunityStage):
            target = ("opportunity", event.opportunity_id)
            self._guarded(target, origin, self._ingest_opportunity, event, position)
        else:
            self._guarded(("other", route(event)[1]), origin, self._ingest_other, event, position)

    def subscribe(self, lead_id: str, opp_id: str, origin: Hashable | None = None) -> None:
        """An opportunity lists the lead as a contact: the lead sends it snapshots."""
        self._guarded(("lead", lead_id), origin, self._subscribe, lead_id, opp_id)

    def receive(
        self,
        opp_id: str,
        version: int,
        snapshot: LeadSnapshot,
        cause: str,
        origin: Hashable | None = None,
    ) -> None:
        """A contact lead's snapshot reaches the opportunity."""
        target = ("opportunity", opp_id)
        self._guarded(target, origin, self._receive, opp_id, version, snapshot, cause)

    def on_registry(
        self, campaign: str, entry: RegistryEntry, origin: Hashable | None = None
    ) -> None:
        """A registry entry reaches the leads: the campaign's leads re-settle under it
        (the partner of a touch is decided by the latest entry, retroactively)."""
        if not self.registry.offer(campaign, entry):
            return
        for lead_id in self.subjects.campaign_leads(campaign):
            self._guarded(("lead", lead_id), origin, self._recause, lead_id, entry.event_id)

    def on_account(
        self,
        account: str,
        lead_id: str | None,
        opp_id: str | None,
        origin: Hashable | None = None,
    ) -> None:
        """Account mapping: a lead or an opportunity joins its account, and every lead
        of the account is subscribed to every opportunity of it."""
        self._guarded(("account", account), origin, self._join, account, lead_id, opp_id)

    def reject(self, rejection: Rejection) -> Deltas:
        """Count a dead letter (the caller publishes it)."""
        out = Deltas()
        _count_dead_letter(out, rejection.reason)
        self._add(out)
        return out

    # --- settling ----------------------------------------------------------

    def settle(self) -> Deltas:
        """Recompute every subject touched since the last settle; their deltas, and a
        `processing_error` dead letter per input of a subject that failed."""
        out = Deltas()

        def publish(name: str, subject: Subject, new: Contribution) -> None:
            out.extend(subject.publish(name, new))

        settled = self.settle_into(publish)
        for _ in dict.fromkeys(o for failure in settled.failed for o in failure.origins):
            _count_dead_letter(out, PROCESSING_ERROR)
        self._add(out)
        return out

    def settle_into(self, publish: Publish) -> Settled:
        """Recompute every subject touched since the last settle, leads first (their
        snapshots reach opportunities), handing each new contribution to `publish`."""
        settled = Settled()
        while self._dirty_leads or self._dirty_opportunities:
            dirty, self._dirty_leads = self._dirty_leads, set()
            for lead_id in sorted(dirty):
                if self._settled(settled, ("lead", lead_id), self._settle_lead, lead_id, publish):
                    settled.leads.append(lead_id)
            dirty, self._dirty_opportunities = self._dirty_opportunities, set()
            for opp_id in sorted(dirty):
                target = ("opportunity", opp_id)
                if self._settled(settled, target, self._settle_opportunity, opp_id, publish):
                    settled.opportunities.append(opp_id)
        for key in sorted(self._dirty_others):
            if self._settled(settled, ("other", key), self._settle_others, key, publish):
                settled.others.append(key)
        for account in sorted(self._dirty_accounts):
            if self._settled(settled, ("account", account), _nothing):
                settled.accounts.append(account)
        self._dirty_others.clear()
        self._dirty_accounts.clear()
        self._origins.clear()
        self._campaigns.clear()
        self._poisoned.clear()
        self.subjects.release()
        return settled

    def apply(self, event: Event, position: int | None = None) -> Deltas:
        """Ingest and settle one event: the fully incremental step."""
        self.ingest(event, position)
        return self.settle()

    def run(self, items: Iterable[Event | Rejection]) -> None:
        """Batch mode: ingest everything, settle once."""
        for item in items:
            if isinstance(item, Rejection):
                self.reject(item)
            else:
                self.ingest(item)
        self.settle()

    # --- output ------------------------------------------------------------

    def credits(self) -> dict[str, dict[str, Fraction]]:
        """Subject → touch id → credit, for every subject with credit."""
        out: dict[str, dict[str, Fraction]] = {}
        kinds: tuple[tuple[str, dict[str, LeadState] | dict[str, OpportunityState]], ...] = (
            ("lead", self.leads),
            ("opportunity", self.opportunities),
        )
        for prefix, subjects in kinds:
            for key, subject in subjects.items():
                lines = subject.contribution.credits
                if lines:
                    out[f"{prefix}:{key}"] = {tid: line.credit for tid, line in lines.items()}
        return out

    # --- poison isolation ----------------------------------------------------

    def _guarded(
        self, target: SubjectId, origin: Hashable | None, step: Callable[..., object], *args: Any
    ) -> None:
        """Run `step(*args)`, which changes the `target` subject, after recording
        `origin` against it (and, on its first change, its checkpoint); a step that
        raises poisons the subject until the settle."""
        origins = self._origins.get(target)
        if origins is None:
            self.subjects.checkpoint(*target)
            origins = self._origins[target] = []
        if origin is not None:
            origins.append(origin)
        if target in self._poisoned:
            return
        try:
            step(*args)
        except Exception as exc:
            self._poison(target, exc)
            self._dirty(target[0]).add(target[1])  # reported by the settle

    def _settled(
        self, settled: Settled, target: SubjectId, step: Callable[..., object], *args: Any
    ) -> bool:
        """Run the settle `step(*args)` of `target`; False if the subject is poisoned
        or the step raises: it is then restored and reported."""
        if target not in self._poisoned:
            try:
                step(*args)
                return True
            except Exception as exc:
                self._poison(target, exc)
        self.subjects.restore(*target)
        if target[0] == "lead":
            self._campaigns.pop(target[1], None)
        origins = tuple(dict.fromkeys(self._origins.get(target, ())))
        settled.failed.append(Failure(*target, origins, self._poisoned[target]))
        return False

    def _poison(self, target: SubjectId, exc: Exception) -> None:
        log.exception("%s %s failed; its inputs are dead-lettered", *target)
        self._poisoned[target] = f"{type(exc).__name__}: {exc}"

    def _dirty(self, kind: str) -> set[str]:
        dirty = {
            "lead": self._dirty_leads,
            "opportunity": self._dirty_opportunities,
            "other": self._dirty_others,
        }
        return dirty.get(kind, self._dirty_accounts)

    # --- wiring ------------------------------------------------------------

    def _lead(self, lead_id: str) -> LeadState:
        lead = self.leads.get(lead_id)
        if lead is None:
            lead = self.leads[lead_id] = LeadState(lead_id)
        return lead

    def _opportunity(self, opp_id: str) -> OpportunityState:
        opp = self.opportunities.get(opp_id)
        if opp is None:
            opp = self.opportunities[opp_id] = OpportunityState(opp_id)
        return opp

    def _ingest_lead(self, event: Touch | LeadCreated | Mql, position: int) -> None:
        lead = self._lead(event.lead_id)
        self._dirty_leads.add(lead.key)
        if lead.ingest(event, position) and isinstance(event, Touch):
            campaign = normalise(event.campaign) or ""
            self._campaigns.setdefault(lead.key, set()).add(campaign)

    def _subscribe(self, lead_id: str, opp_id: str) -> None:
        lead = self._lead(lead_id)
        if opp_id not in lead.subscribers:
            lead.subscribe(opp_id)
            self._dirty_leads.add(lead_id)

    def _receive(self, opp_id: str, version: int, snapshot: LeadSnapshot, cause: str) -> None:
        if self._opportunity(opp_id).receive(version, snapshot, cause):
            self._dirty_opportunities.add(opp_id)

    def _recause(self, lead_id: str, cause: str) -> None:
        self._lead(lead_id).cause = cause
        self._dirty_leads.add(lead_id)

    def _ingest_opportunity(
        self, event: OpportunityCreated | OpportunityStage, position: int
    ) -> None:
        opp = self._opportunity(event.opportunity_id)
        self._dirty_opportunities.add(opp.key)
        if not opp.ingest(event, self.ctx, position) or not isinstance(event, OpportunityCreated):
            return
        if self.ctx.config.mapping == "account":
            self.exchange.account(normalise(event.account_id) or "", None, opp.key)
            return
        for lead_id in event.lead_ids:
            self.exchange.subscribe(lead_id, opp.key)

    def _ingest_other(self, event: OtherEvent, position: int) -> None:
        """Into the topic's subject (deduplication, data quality) and, once admitted,
        the event's group (metrics); both live under the event's Kafka key."""
        topic, key = route(event)
        self._dirty_others.add(key)
        subjects = self.others.setdefault(key, {})
        if not subjects.setdefault(topic, Subject(key)).admit(event.event_id, event.ts, position):
            return
        family, _ = group_key(event)
        group = subjects.setdefault(f"{GROUP}{family}", GroupState(key, family=family))
        assert isinstance(group, GroupState)
        group.ingest(event)
        if isinstance(event, Campaign):
            campaign = normalise(event.campaign) or ""
            entry = RegistryEntry(event.ts, event.event_id, partner_id(event.partner))
            if self.registry.offer(campaign, entry):
                self.exchange.registry(campaign, entry)

    def _settle_lead(self, lead_id: str, publish: Publish) -> None:
        lead = self.leads[lead_id]
        publish(f"lead:{lead_id}", lead, lead.contribute(self.ctx))
        for campaign in sorted(self._campaigns.pop(lead_id, ())):
            self.subjects.index_campaign(campaign, lead_id)
        self._index_account(lead)
        due = lead.outbox()
        if due:
            _, version, snapshot = due[0]
            self.exchange.snapshot([o for o, _, _ in due], version, snapshot, lead.cause)

    def _settle_opportunity(self, opp_id: str, publish: Publish) -> None:
        opp = self.opportunities[opp_id]
        publish(f"opportunity:{opp_id}", opp, opp.contribute(self.ctx))

    def _settle_others(self, key: str, publish: Publish) -> None:
        """Every subject of the key, all computed before any is published."""
        subjects = self.others[key]
        new = {kind: subject.contribute(self.ctx) for kind, subject in subjects.items()}
        for kind, subject in subjects.items():
            publish(f"{kind.removeprefix(GROUP)}:{key}", subject, new[kind])

    def _index_account(self, lead: LeadState) -> None:
        """Account mapping: a lead joins its account (every settle: its account may
        have changed; joining again changes nothing)."""
        account = lead.account_id
        if self.ctx.config.mapping == "account" and account is not None:
            self.exchange.account(account, lead.key, None)

    def _join(self, account: str, lead_id: str | None, opp_id: str | None) -> None:
        members = self.subjects.accounts.get(account)
        if members is None:
            members = self.subjects.accounts[account] = AccountMembers()
        if lead_id is not None and lead_id not in members.leads:
            members.leads.add(lead_id)
            self._dirty_accounts.add(account)
            for opportunity in sorted(members.opportunities):
                self.exchange.subscribe(lead_id, opportunity)
        if opp_id is not None and opp_id not in members.opportunities:
            members.opportunities.add(opp_id)
            self._dirty_accounts.add(account)
            for lead in sorted(members.leads):
                self.exchange.subscribe(lead, opp_id)

    def _add(self, deltas: Deltas) -> None:
        """Running totals: each series point also adds to its metric's total."""
        merge(self.totals, deltas.totals)


def _nothing() -> None:
    """An account's settle: its members hold no contribution."""


def _count_dead_letter(out: Deltas, reason: str) -> None:
    out.bump(("all", "dq.dead_letters"))
    out.bump(("all", f"dq.dead_letters.{reason}"))
