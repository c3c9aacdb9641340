"""Per-lead state: touchpoints, milestones, U-shaped lead credit, lead metrics.

A lead's state is keyed by `lead_id` (topic `leads`).  Settling it yields the
lead's own metric contribution and a `LeadSnapshot`: the part of the lead an
opportunity needs (its touchpoints and LC touchpoint), sent to every
opportunity that has the lead as a contact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from typing import NamedTuple

from models.attribution import (
    Moment,
    Touchpoint,
    allocate,
    eligible,
    influenced_scopes,
    latest_at_or_before,
    position_roles,
    scope_totals,
    split_integer,
    u_shaped_positions,
)
from models.config import DAY_US
from models.context import Context
from models.events import LeadCreated, LeadEvent, Mql, Touch
from models.partners import PARTNERS, normalise, partner_id
from models.periods import day_of
from models.subject import (
    Contribution,
    Deltas,
    MetricKey,
    Subject,
    add_scopes,
    count_scopes,
    credit_lines,
)

MICRO = 1_000_000
"""A lead conversion is split in millionths, so attributed conversions stay integers."""

ENGAGEMENT: dict[str, str] = {
    "registered": "campaigns.registrations",
    "attended": "campaigns.attendees",
}
"""Touch action → campaign engagement metric (a lead counts once per campaign).
A touch without `action` (a plain touch, stored as "") counts for none of them."""


class TouchRecord(NamedTuple):
    """A touch event as stored: compact, normalised, in event-time order."""

    ts: int
    touch_id: str
    campaign: str
    action: str
    """Normalised `action`; "" for a plain touch (no `action`)."""
    partner: str | None
    channel: str | None


class Milestone(NamedTuple):
    """The earliest `lead_created` (or `mql`): repeats never move it later."""

    ts: int
    event_id: str
    account_id: str | None = None
    source_partner: str | None = None

    @property
    def moment(self) -> Moment:
        """`(ts, event_id)`: what "at or before" this milestone compares with."""
        return self.ts, self.event_id


@dataclass(frozen=True, slots=True)
class LeadSnapshot:
    """What an opportunity needs of a contact lead."""

    lead_id: str
    account_id: str | None
    touchpoints: tuple[Touchpoint, ...]
    lc: Touchpoint | None


@dataclass(slots=True)
class LeadState(Subject):
    touches: dict[str, TouchRecord] = field(default_factory=dict)
    created: Milestone | None = None
    mql: Milestone | None = None
    touch_account: Milestone | None = None
    snapshot: LeadSnapshot | None = None
    version: int = 0
    subscribers: dict[str, int] = field(default_factory=dict)
    """Opportunity id → snapshot version last sent to it."""

    def ingest(self, event: LeadEvent, position: int) -> bool:
        """Add one event; False when it was admitted before."""
        ts = event.ts
        if not self.admit(event.event_id, ts, position):
            return False
        if isinstance(event, Touch):
            self.touches[event.event_id] = TouchRecord(
                ts,
                event.event_id,
                normalise(event.campaign) or "",
                normalise(event.action) or "",
                normalise(event.partner),
                normalise(event.channel),
            )
            account = normalise(event.account_id)
            if account is not None:
                self.touch_account = _earliest(
                    self.touch_account, Milestone(ts, event.event_id, account)
                )
        elif isinstance(event, LeadCreated):
            self.created = _earliest(
                self.created,
                Milestone(
                    ts,
                    event.event_id,
                    normalise(event.account_id),
                    partner_id(event.source_partner),
                ),
            )
        elif isinstance(event, Mql):
            self.mql = _earliest(self.mql, Milestone(ts, event.event_id))
        return True

    @property
    def account_id(self) -> str | None:
        """From the earliest lead_created that names one, else the earliest touch that does."""
        if self.created is not None and self.created.account_id is not None:
            return self.created.account_id
        return self.touch_account.account_id if self.touch_account else None

    def subscribe(self, opportunity_id: str) -> None:
        """An opportunity lists this lead as a contact: it needs our snapshots."""
        self.subscribers.setdefault(opportunity_id, 0)

    def settle(self, ctx: Context) -> Deltas:
        """Recompute the contribution and snapshot; return the lead's deltas."""
        return self.publish(f"lead:{self.key}", self.contribute(ctx))

    def contribute(self, ctx: Context) -> Contribution:
        """The lead's current contribution (not published); refreshes the snapshot."""
        points = touchpoints(self, ctx)
        created = self.created.moment if self.created is not None else None
        # LC is a fact of the lead, whatever the window; the lookback only
        # decides whether it (and the others) count for a given conversion.
        lc = latest_at_or_before(points, created) if created is not None else None
        snapshot = LeadSnapshot(self.key, self.account_id, tuple(points), lc)
        if snapshot != self.snapshot:
            self.snapshot = snapshot
            self.version += 1
        window = eligible(points, created, ctx.config.lookback_us) if created is not None else []
        return self._contribution(ctx, points, window)

    def outbox(self) -> list[tuple[str, int, LeadSnapshot]]:
        """(opportunity id, version, snapshot) for subscribers that lack the current one.

        The receiving opportunity takes this lead's `cause` as its own: its
        credit moved because of the lead's event.
        """
        if self.snapshot is None:
            return []
        due = [opp for opp, sent in self.subscribers.items() if sent < self.version]
        for opp in due:
            self.subscribers[opp] = self.version
        return [(opp, self.version, self.snapshot) for opp in due]

    def _contribution(
        self, ctx: Context, points: list[Touchpoint], window: list[Touchpoint]
    ) -> Contribution:
        """`window`: the touchpoints eligible at lead creation (U-shaped, acquisition)."""
        metrics = self.quality()
        credits = {}
        lookback = ctx.config.lookback_us
        if self.created is not None:
            created = day_of(self.created.ts)
            count_scopes(
                metrics,
                influenced_scopes(points, self.created.moment, lookback),
                "nb.leads.influenced",
                1,
                created,
            )
            if window:
                positions = u_shaped_positions(window)
                share = allocate(positions, window, ctx.config.u_shaped)
                micro = split_integer(MICRO, share)
                add_scopes(
                    metrics,
                    scope_totals((p.scopes, n) for p, n in micro.items()),
                    "nb.leads.attributed",
                    created,
                )
                credits = credit_lines(share, micro, position_roles(positions))
            acquirers = {window[-1].partner if window else None, self.created.source_partner}
            scopes = [f"partner:{p}" for p in sorted(a for a in acquirers if a is not None)]
            acquired = ["all", PARTNERS, *scopes] if scopes else []
            count_scopes(metrics, acquired, "leads.acquired", 1, created)
        if self.mql is not None:  # counts with or without a `lead_created`
            count_scopes(
                metrics,
                influenced_scopes(points, self.mql.moment, lookback),
                "nb.mqls.influenced",
                1,
                day_of(self.mql.ts),
            )
        self._reengagements(ctx, metrics)
        self._engagement(points, metrics)
        for record in self.touches.values():
            if not ctx.parser.parse(record.campaign).valid:
                invalid = dict.fromkeys(("all", f"campaign:{record.campaign}"), 1)
                add_scopes(metrics, invalid, "dq.campaign_name_invalid")
        return Contribution(metrics, credits)

    def _reengagements(self, ctx: Context, metrics: dict[MetricKey, int]) -> None:
        """Count partner touches that end a dormancy of at least the window.

        The first activity after the gap decides the episode: if it is a
        partner touch, that touch's scopes get one re-engaged lead.
        """
        window = ctx.config.dormancy_days * DAY_US
        activity: list[tuple[int, str]] = [(t.ts, t.touch_id) for t in self.touches.values()]
        activity += [(m.ts, m.event_id) for m in (self.created, self.mql) if m is not None]
        activity.sort()
        for (before, _), (ts, event_id) in pairwise(activity):
            record = self.touches.get(event_id)
            if ts - before < window or record is None:
                continue
            point = _touchpoint(self.key, record, ctx)
            if point.partner is not None:
                add_scopes(metrics, dict.fromkeys(point.scopes, 1), "leads.reengaged", day_of(ts))

    def _engagement(self, points: list[Touchpoint], metrics: dict[MetricKey, int]) -> None:
        """Registrations and attendees: once per lead, campaign and action.

        Every touch counts here, not only touchpoints ("later interactions
        with the same campaign still feed campaign engagement metrics"), in
        the scopes of the lead's touchpoint of that campaign, so a lead's
        engagement with a campaign is credited where its touchpoint is, on
        the day of the earliest such touch.
        """
        done: dict[tuple[str, str], tuple[int, str]] = {}
        for r in self.touches.values():
            if r.action in ENGAGEMENT:
                key, moment = (r.campaign, r.action), (r.ts, r.touch_id)
                done[key] = min(done.get(key, moment), moment)
        if not done:
            return
        scopes = {point.campaign: point.scopes for point in points}
        for (campaign, action), (ts, _) in done.items():
            add_scopes(metrics, dict.fromkeys(scopes[campaign], 1), ENGAGEMENT[action], day_of(ts))


def touchpoints(state: LeadState, ctx: Context) -> list[Touchpoint]:
    """One touchpoint per campaign: its earliest touch, in event-time order."""
    first: dict[str, TouchRecord] = {}
    for record in state.touches.values():
        held = first.get(record.campaign)
        if held is None or (record.ts, record.touch_id) < (held.ts, held.touch_id):
            first[record.campaign] = record
    return sorted(
        (_touchpoint(state.key, record, ctx) for record in first.values()), key=_point_order
    )


def _point_order(point: Touchpoint) -> tuple[int, str]:
    """`Touchpoint`'s own order, (ts, touch id), without the dataclass's slower `__lt__`."""
    return point.ts, point.touch_id


def _touchpoint(lead_id: str, record: TouchRecord, ctx: Context) -> Touchpoint:
    partner, channel = ctx.resolve(record.campaign, record.partner, record.channel)
    return Touchpoint(record.ts, record.touch_id, lead_id, record.campaign, partner, channel)


def _earliest(held: Milestone | None, new: Milestone) -> Milestone:
    return new if held is None or (new.ts, new.event_id) < (held.ts, held.event_id) else held
