"""Per-opportunity state: pooled touchpoints, W-shaped / Full Path credit, metrics.

Keyed by `opportunity_id` (topic `opportunities`).  Contact leads live under
other keys, so their touchpoints arrive as `LeadSnapshot`s (versioned: an
older snapshot never replaces a newer one, whatever order they arrive in).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple

from models.attribution import (
    Moment,
    Touchpoint,
    allocate,
    eligible,
    full_path_positions,
    influenced_scopes,
    position_roles,
    scope_totals,
    split_integer,
    w_shaped_positions,
    within,
)
from models.config import DAY_US, STAGE_ORDER
from models.context import Context
from models.events import OpportunityCreated, OpportunityEvent
from models.lead import LeadSnapshot
from models.partners import PARTNERS, normalise, partner_id
from models.periods import day_of
from models.subject import (
    Contribution,
    CreditLine,
    Deltas,
    MetricKey,
    Subject,
    add_scopes,
    count_scopes,
    credit_lines,
)


class Created(NamedTuple):
    """The earliest `opportunity_created`: it fixes the creation moment and the deal's facts."""

    ts: int
    event_id: str
    account_id: str
    business: str
    currency: str
    source_partner: str | None
    referral_partner: str | None

    @property
    def moment(self) -> Moment:
        """`(ts, event_id)`: what "at or before" creation compares with."""
        return self.ts, self.event_id


class Amount(NamedTuple):
    """The latest ARR by event time, from whichever event carried one."""

    ts: int
    event_id: str
    arr: Decimal


@dataclass(slots=True)
class OpportunityState(Subject):
    created: Created | None = None
    contacts: set[str] = field(default_factory=set)
    amount: Amount | None = None
    qualified: Moment | None = None
    """The first time, by `(ts, event_id)`, a stage at or after the qualifying one was reached."""
    won: Moment | None = None
    lost: Moment | None = None
    leads: dict[str, tuple[int, LeadSnapshot]] = field(default_factory=dict)

    def ingest(self, event: OpportunityEvent, ctx: Context, position: int) -> bool:
        """Add one event; False when it was admitted before."""
        ts = event.ts
        if not self.admit(event.event_id, ts, position):
            return False
        if event.arr is not None:
            amount = Amount(ts, event.event_id, event.arr)
            if self.amount is None or amount[:2] > self.amount[:2]:
                self.amount = amount
        if isinstance(event, OpportunityCreated):
            self.contacts.update(event.lead_ids)
            created = Created(
                ts,
                event.event_id,
                normalise(event.account_id) or "",
                event.business,
                event.currency,
                partner_id(event.source_partner),
                partner_id(event.referral_partner),
            )
            if self.created is None or created[:2] < self.created[:2]:
                self.created = created
            return True
        # The ladder S1 < … < S5 < closed_won: any rung at or after the
        # qualifying stage reaches it (a win without stages too); closed_lost
        # is off the ladder.  The earliest counts, so a regression undoes nothing.
        moment = (ts, event.event_id)
        rank = STAGE_ORDER.get(event.stage)
        if rank is not None and rank >= ctx.config.qualifying_rank:
            self.qualified = _earliest(self.qualified, moment)
        if event.stage == "closed_won":
            self.won = _earliest(self.won, moment)
        elif event.stage == "closed_lost":
            self.lost = _earliest(self.lost, moment)
        return True

    def receive(self, version: int, snapshot: LeadSnapshot, cause: str) -> bool:
        """Store a contact's snapshot unless a newer one is already held.

        An equal version replaces the held one: a lead batch processed again
        after a crash reuses its version numbers, and may differ (its worker
        may know a registry entry the crashed one did not); the later message
        on the partition is the one whose state was saved.

        `cause` is the event behind the snapshot's change; it becomes ours.
        """
        held = self.leads.get(snapshot.lead_id)
        if held is not None and held[0] > version:
            return False
        self.leads[snapshot.lead_id] = (version, snapshot)
        self.cause = cause
        return True

    def members(self, ctx: Context) -> list[LeadSnapshot]:
        """Contact roles (default) or every lead of the account."""
        if self.created is None:
            return []
        if ctx.config.mapping == "account":
            account = self.created.account_id
            return [snap for _, snap in self.leads.values() if snap.account_id == account]
        return [self.leads[lead][1] for lead in sorted(self.contacts) if lead in self.leads]

    def settle(self, ctx: Context) -> Deltas:
        return self.publish(f"opportunity:{self.key}", self.contribute(ctx))

    def contribute(self, ctx: Context) -> Contribution:
        """The opportunity's current contribution (not published)."""
        created = self.created
        if created is None:
            return Contribution(self.quality(), {})
        members = self.members(ctx)
        pooled = sorted(point for snap in members for point in snap.touchpoints)
        lcs = [snap.lc for snap in members if snap.lc is not None]
        lc = min(lcs) if lcs else None
        cents = ctx.to_cents(self.amount.arr if self.amount else Decimal(0), created.currency)
        credits = self._credits(ctx, pooled, lc, cents)
        prefix = "nb" if created.business == "new_business" else "ex"
        metrics = self.quality()
        attributed = scope_totals((line.scopes, line.units) for line in credits.values())
        for stage, moment in (("s2", self.qualified), ("cw", self.won)):
            if moment is None:
                continue
            scopes = influenced_scopes(pooled, moment, ctx.config.lookback_us)
            day = day_of(moment[0])
            count_scopes(metrics, scopes, f"{prefix}.{stage}.influenced", 1, day)
            count_scopes(metrics, scopes, f"{prefix}.{stage}.influenced_arr", cents, day)
            add_scopes(metrics, attributed, f"{prefix}.{stage}.attributed_arr", day)
        opened = day_of(created.ts)
        if created.referral_partner:
            referred = ("all", PARTNERS, f"partner:{created.referral_partner}")
            count_scopes(metrics, referred, "pipeline.referrals", 1, opened)
        if created.source_partner:
            sourced = ("all", PARTNERS, f"partner:{created.source_partner}")
            count_scopes(metrics, sourced, "pipeline.sourced_deals", 1, opened)
            count_scopes(metrics, sourced, "pipeline.sourced_arr", cents, opened)
            if self.won is not None:
                won = day_of(self.won[0])
                count_scopes(metrics, sourced, "pipeline.sourced_won_arr", cents, won)
        self._performance(ctx, pooled, metrics)
        return Contribution(metrics, credits)

    def _close(self) -> Moment | None:
        """The earliest `closed_won` (a win is never undone), else the earliest `closed_lost`."""
        return self.won or self.lost

    def _performance(
        self, ctx: Context, pooled: list[Touchpoint], metrics: dict[MetricKey, int]
    ) -> None:
        """Closed, won and days to close, for partner-involved deals beside all others.

        Partner-involved: a partner touchpoint at or before the close, or a
        source or referral partner; each involved partner's scope counts the
        deal, and `all` counts it once on its side.  The close is the earliest
        `closed_won` if any (a win is never undone), else the earliest
        `closed_lost`; cycle days are whole days from creation to the close.
        The close is the conversion the touchpoints must be eligible for
        (lookback included); `partners` counts an involved deal once.
        """
        close = self._close()
        created = self.created
        if close is None or created is None:
            return
        window = eligible(pooled, close, ctx.config.lookback_us)
        partners = {p.partner for p in window if p.partner is not None}
        partners.update(p for p in (created.source_partner, created.referral_partner) if p)
        side = "perf.partner" if partners else "perf.other"
        scopes = [
            "all",
            *([PARTNERS] if partners else []),
            *(f"partner:{p}" for p in sorted(partners)),
        ]
        day = day_of(close[0])
        count_scopes(metrics, scopes, f"{side}.closed", 1, day)
        count_scopes(metrics, scopes, f"{side}.won", int(self.won is not None), day)
        cycle = max(0, (close[0] - created.ts) // DAY_US)
        count_scopes(metrics, scopes, f"{side}.cycle_days", cycle, day)

    def _credits(
        self, ctx: Context, pooled: list[Touchpoint], lc: Touchpoint | None, cents: int
    ) -> dict[str, CreditLine]:
        """W-shaped (bounded by creation) or Full Path (bounded by close, else Pending).

        The lookback window is measured back from creation for both models:
        the opportunity's credit is one allocation, shared by its S2 and
        closed-won ARR, and creation is the moment both models bound by.
        """
        assert self.created is not None
        created, lookback = self.created.moment, ctx.config.lookback_us
        if ctx.config.model == "full-path":
            close = self._close()
            start = None if lookback is None else created[0] - lookback
            points = within(pooled, start, close)
            positions = full_path_positions(points, lc, created)
            roles = position_roles(positions, pending=close is None)
        else:
            points = eligible(pooled, created, lookback)
            positions = w_shaped_positions(points, lc)
            roles = position_roles(positions)
        share = allocate(positions, points, ctx.config.opportunity_weights)
        return credit_lines(share, split_integer(cents, share), roles)


def _earliest(held: Moment | None, new: Moment) -> Moment:
    return new if held is None or new < held else held
