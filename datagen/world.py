"""The clean world: its shared random stream, clock and helpers, and the build:
accounts, campaigns, lead journeys, opportunities, integrations and account
health, the partner side, then the campaign registry (last, so goals can be
set against what happened), in event-time order."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from itertools import accumulate

from datagen.accounts import make_accounts, make_integrations_and_snapshots
from datagen.campaigns import make_campaign_registry_and_stats, make_campaigns
from datagen.catalogue import (
    DAY,
    HOUR,
    PARTNERS,
)
from datagen.config import SyntheticConfig
from datagen.entities import Account, Campaign, Lead
from datagen.leads import make_leads
from datagen.opportunities import make_opportunities
from datagen.partner_side import make_partner_side
from models.periods import Calendar

__all__ = ["World"]


class World:
    """One world being built: its single random stream (so a seed pins every draw,
    in build order), its clock and the events emitted so far, which the
    `make_*` steps of the sibling modules fill in."""

    def __init__(self, config: SyntheticConfig) -> None:
        self.cfg = config
        self.rng = random.Random(f"partnerpulse:{config.seed}:world")  # noqa: S311 - not crypto
        self.end = config.days * DAY
        self.scale = max(0.05, config.leads / 1000)
        self.events: list[tuple[int, int, str, dict[str, object]]] = []
        self.campaigns: list[Campaign] = []
        self.leads: list[Lead] = []
        self.accounts: list[Account] = []
        self.partner_ids = [p.id for p in PARTNERS]
        self.partner_cum = list(accumulate([p.strength for p in PARTNERS]))
        self.partner_by_id = {p.id: p for p in PARTNERS}
        self.currency_cum = list(
            accumulate(
                6.0 if i == 0 else 4.0 / max(1, len(config.currencies) - 1)
                for i in range(len(config.currencies))
            )
        )
        self.base = datetime(config.start.year, config.start.month, config.start.day, tzinfo=UTC)
        self.calendar = Calendar(config.fiscal_start_month)
        self.active: list[tuple[list[int], list[float]]] = []
        """Per day: indexes of the campaigns running then, and their cumulative pick weights."""
        self.partner_campaigns: list[int] = []

    # helpers

    def emit(self, t: float, type_: str, fields: dict[str, object]) -> None:
        """Record an event at `t` seconds; events past the end of the span never happen."""
        ts = int(t)
        if 0 <= ts < self.end:
            self.events.append((ts, len(self.events), type_, fields))

    def iso(self, t: float) -> str:
        return (self.base + timedelta(seconds=int(t))).isoformat()

    def partner(self) -> str:
        return self.rng.choices(self.partner_ids, cum_weights=self.partner_cum)[0]

    def currency(self) -> str:
        return self.rng.choices(self.cfg.currencies, cum_weights=self.currency_cum)[0]

    def money(self, amount: float) -> int | float:
        """Most amounts are round; some carry cents (never more than 2 decimals)."""
        if self.rng.random() < 0.7:
            return int(round(amount, -2))
        return round(amount, 2)

    def office_time(self, t: float) -> int:
        """Move `t` into working hours of its day (people act then; systems do not)."""
        day = int(t) // DAY
        return day * DAY + self.rng.randint(7 * HOUR, 19 * HOUR)

    # the build

    def build(self) -> list[dict[str, object]]:
        """Every step in its fixed order (each draws from the one stream; the
        registry comes last so goals can be set against what happened), then
        the events in time order, numbered."""
        make_accounts(self)
        make_campaigns(self)
        make_leads(self)
        make_opportunities(self)
        make_integrations_and_snapshots(self)
        make_partner_side(self)
        make_campaign_registry_and_stats(self)
        self.events.sort(key=lambda e: (e[0], e[1]))
        out: list[dict[str, object]] = []
        for n, (t, _, type_, fields) in enumerate(self.events, start=1):
            item: dict[str, object] = {
                "event_id": f"e{n:08d}",
                "type": type_,
                "occurred_at": self.iso(t),
            }
            item.update(fields)
            out.append(item)
        return out
