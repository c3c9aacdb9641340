"""The in-memory engine: keyed subjects wired together, deltas out.

`Engine` is the batch oracle's whole machinery and the reference wiring for
the streaming agents: each agent owns one kind of subject for its partitions
and forwards what `Engine` forwards in memory (lead snapshots to
opportunities, subscriptions to leads) through Kafka topics instead.

`ingest` only records an event (cheap); `settle` recomputes the subjects the
ingested events touched and returns the deltas.  The streaming path settles
once per `stream.take()` batch, the batch oracle once per file, property
tests after every event: all three give the same totals.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction

from models.config import EngineConfig
from models.context import Context
from models.contrib import Deltas, MetricKey, Subject, merge
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
from models.lead import LeadState
from models.opportunity import OpportunityState
from models.parse import Rejection
from models.partners import normalise, partner_id


@dataclass(slots=True)
class RegistryEntry:
    ts: int
    event_id: str
    partner: str | None


class Engine:
    """Every subject of one event stream, and the running totals of its deltas."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.ctx = Context(config or EngineConfig())
        self.leads: dict[str, LeadState] = {}
        self.opportunities: dict[str, OpportunityState] = {}
        self.others: dict[tuple[str, str], Subject] = {}
        self.groups: dict[tuple[str, str], GroupState] = {}
        self.registry: dict[str, RegistryEntry] = {}
        self.totals: dict[MetricKey, int] = {}
        self._campaign_leads: dict[str, set[str]] = {}
        self._account_leads: dict[str, set[str]] = {}
        self._account_opportunities: dict[str, set[str]] = {}
        self._dirty_leads: set[str] = set()
        self._dirty_opportunities: set[str] = set()
        self._dirty_others: set[tuple[str, str]] = set()
        self._dirty_groups: set[tuple[str, str]] = set()
        self._position = 0

    # --- input -------------------------------------------------------------

    def ingest(self, event: Event, position: int | None = None) -> None:
        """Record one event delivered at `position` (default: a fresh one).

        Redelivering an event at the position it was first seen at is a
        replay and changes nothing; at any other position it is a duplicate.
        """
        if position is None:
            self._position += 1
            position = self._position
        if isinstance(event, Touch | LeadCreated | Mql):
            self._ingest_lead(event, position)
        elif isinstance(event, OpportunityCreated | OpportunityStage):
            self._ingest_opportunity(event, position)
        elif self._other(route(event)).admit(event.event_id, event.ts, position):
            # a topic's subject admits (deduplicates and counts), its group computes
            if isinstance(event, Campaign):
                self._ingest_registry(event)
            self._ingest_group(event)

    def reject(self, rejection: Rejection) -> Deltas:
        """Count a dead letter (the caller publishes it)."""
        out = Deltas()
        out.bump(("all", "dq.dead_letters"))
        out.bump(("all", f"dq.dead_letters.{rejection.reason}"))
        self._add(out)
        return out

    def settle(self) -> Deltas:
        """Recompute every subject touched since the last settle; leads first."""
        out = Deltas()
        while self._dirty_leads or self._dirty_opportunities:
            dirty, self._dirty_leads = self._dirty_leads, set()
            for lead_id in sorted(dirty):
                lead = self.leads[lead_id]
                out.extend(lead.settle(self.ctx))
                self._index_account(lead)
                for opp_id, version, snapshot in lead.outbox():
                    if self.opportunities[opp_id].receive(version, snapshot, lead.cause):
                        self._dirty_opportunities.add(opp_id)
            dirty, self._dirty_opportunities = self._dirty_opportunities, set()
            for opp_id in sorted(dirty):
                out.extend(self.opportunities[opp_id].settle(self.ctx))
        for topic, key in sorted(self._dirty_others):
            subject = self.others[(topic, key)]
            out.extend(subject.publish(f"{topic}:{key}", subject.contribute(self.ctx)))
        self._dirty_others.clear()
        for family_key in sorted(self._dirty_groups):
            out.extend(self.groups[family_key].settle(self.ctx))
        self._dirty_groups.clear()
        self._add(out)
        return out

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
        for prefix, subjects in (("lead", self.leads), ("opportunity", self.opportunities)):
            for key, subject in subjects.items():
                lines = subject.contribution.credits
                if lines:
                    out[f"{prefix}:{key}"] = {tid: line.credit for tid, line in lines.items()}
        return out

    # --- wiring ------------------------------------------------------------

    def _lead(self, lead_id: str) -> LeadState:
        lead = self.leads.get(lead_id)
        if lead is None:
            lead = self.leads[lead_id] = LeadState(lead_id)
        return lead

    def _other(self, key: tuple[str, str]) -> Subject:
        self._dirty_others.add(key)
        subject = self.others.get(key)
        if subject is None:
            subject = self.others[key] = Subject(key[1])
        return subject

    def _ingest_group(self, event: OtherEvent) -> None:
        key = group_key(event)
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = GroupState(key[1], family=key[0])
        if group.ingest(event):
            self._dirty_groups.add(key)

    def _ingest_lead(self, event: Touch | LeadCreated | Mql, position: int) -> None:
        lead = self._lead(event.lead_id)
        self._dirty_leads.add(lead.key)
        if lead.ingest(event, position) and isinstance(event, Touch):
            campaign = normalise(event.campaign) or ""
            self._campaign_leads.setdefault(campaign, set()).add(lead.key)

    def _ingest_opportunity(
        self, event: OpportunityCreated | OpportunityStage, position: int
    ) -> None:
        opp = self.opportunities.get(event.opportunity_id)
        if opp is None:
            opp = self.opportunities[event.opportunity_id] = OpportunityState(event.opportunity_id)
        self._dirty_opportunities.add(opp.key)
        if not opp.ingest(event, self.ctx, position) or not isinstance(event, OpportunityCreated):
            return
        if self.ctx.config.mapping == "account":
            account = normalise(event.account_id) or ""
            self._account_opportunities.setdefault(account, set()).add(opp.key)
            contacts: Iterable[str] = self._account_leads.get(account, ())
        else:
            contacts = event.lead_ids
        for lead_id in contacts:
            self._subscribe(lead_id, opp.key)

    def _subscribe(self, lead_id: str, opp_id: str) -> None:
        lead = self._lead(lead_id)
        if opp_id not in lead.subscribers:
            lead.subscribe(opp_id)
            self._dirty_leads.add(lead_id)

    def _index_account(self, lead: LeadState) -> None:
        """Account mapping: a lead joins every opportunity of its account."""
        account = lead.account_id
        if self.ctx.config.mapping != "account" or account is None:
            return
        self._account_leads.setdefault(account, set()).add(lead.key)
        for opp_id in self._account_opportunities.get(account, ()):
            self._subscribe(lead.key, opp_id)

    def _ingest_registry(self, event: Campaign) -> None:
        """The latest registry entry of a campaign decides its partner, retroactively."""
        campaign = normalise(event.campaign) or ""
        entry = RegistryEntry(event.ts, event.event_id, partner_id(event.partner))
        held = self.registry.get(campaign)
        if held is not None and (held.ts, held.event_id) > (entry.ts, entry.event_id):
            return
        self.registry[campaign] = entry
        if self.ctx.registry.get(campaign) != entry.partner:
            self.ctx.registry[campaign] = entry.partner
            for lead_id in self._campaign_leads.get(campaign, ()):
                self.leads[lead_id].cause = event.event_id
                self._dirty_leads.add(lead_id)

    def _add(self, deltas: Deltas) -> None:
        merge(self.totals, deltas.metrics)
