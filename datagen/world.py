"""The clean world: accounts, campaigns, lead journeys, opportunities,
integrations, account health and the partner side, in event-time order."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import accumulate

from datagen.catalogue import (
    CHANNEL_WEIGHT,
    CHANNELS_BY_PROGRAM,
    DAY,
    EXPORTED_ACTIONS,
    HOUR,
    JOURNEY_LENGTHS,
    JOURNEY_WEIGHTS,
    N_CONVENTIONAL,
    OFF_CONVENTION,
    PARTNERS,
    PROGRAM_WEIGHTS,
    PROGRAMS,
    RATES_TO_USD,
    REGION_WEIGHTS,
    REGIONS,
    SLUGS,
    SPEND,
)
from datagen.config import SyntheticConfig
from datagen.goals import Outcomes
from models.periods import Calendar, Window

__all__ = ["World"]


@dataclass(slots=True)
class _Campaign:
    name: str
    channel: str
    program: str
    name_partner: str | None  # partner in the name (None for `none` / off-convention)
    registry_partner: str | None
    start: int  # active window, seconds from the start of the stream
    end: int
    period: Window | None = None  # the period in the name (None off-convention)
    registered: bool = False
    clicks: int = 0

    @property
    def partner(self) -> str | None:
        """The partner a touch inherits: registry entry first, then the name."""
        if self.registered and self.registry_partner is not None:
            return self.registry_partner
        return self.name_partner


@dataclass(slots=True)
class _Lead:
    id: str
    account: int
    touches: list[tuple[int, str | None]] = field(default_factory=list)  # (t, partner)
    created_at: int | None = None
    source_partner: str | None = None


@dataclass(slots=True)
class _Account:
    id: str
    customer_at: int | None
    base_arr: float
    leads: list[int] = field(default_factory=list)
    wins: list[tuple[int, float]] = field(default_factory=list)  # (t, ARR in USD)


@dataclass(slots=True)
class _Install:
    partner: str
    integration: str
    installed: int
    uninstalled: int | None
    last_use: int  # usage stops here (abandonment, uninstall, churn or end)
    reinstalled: int | None


class World:
    def __init__(self, config: SyntheticConfig) -> None:
        self.cfg = config
        self.rng = random.Random(f"partnerpulse:{config.seed}:world")  # noqa: S311 - not crypto
        self.end = config.days * DAY
        self.scale = max(0.05, config.leads / 1000)
        self.events: list[tuple[int, int, str, dict[str, object]]] = []
        self.campaigns: list[_Campaign] = []
        self.leads: list[_Lead] = []
        self.accounts: list[_Account] = []
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
        self.make_accounts()
        self.make_campaigns()
        self.make_leads()
        self.make_opportunities()
        self.make_integrations_and_snapshots()
        self.make_partner_side()
        self.make_campaign_registry_and_stats()
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

    def make_accounts(self) -> None:
        rng = self.rng
        for i in range(self.cfg.account_count):
            customer = rng.random() < 0.35
            base_arr = math.exp(rng.uniform(math.log(10_000), math.log(300_000)))
            self.accounts.append(_Account(f"acct-{i + 1:05d}", 0 if customer else None, base_arr))

    def make_campaigns(self) -> None:
        rng = self.rng
        days = self.cfg.days
        seen: set[str] = set()
        mixed_case = set(rng.sample(range(8, N_CONVENTIONAL), 2))
        co_marketing = set(rng.sample(range(8, N_CONVENTIONAL), 3))
        for i in range(N_CONVENTIONAL):
            if i < len(PARTNERS):  # every partner runs at least one programme
                program, partner = "ptnr", PARTNERS[i].id
            else:
                program = rng.choices(PROGRAMS, weights=PROGRAM_WEIGHTS)[0]
                partner = None
                if program == "ptnr" or (program == "evt" and rng.random() < 0.3):
                    partner = self.partner()
            channel = rng.choice(CHANNELS_BY_PROGRAM[program])
            region = rng.choices(REGIONS, weights=REGION_WEIGHTS)[0]
            start, end = self.window(channel)
            begin = self.cfg.start + timedelta(seconds=start)
            if rng.random() < 0.5:
                fiscal_year, quarter = self.calendar.fiscal_quarter(begin)
                period = f"{fiscal_year}Q{quarter}"
            else:
                period = f"{begin.year}-{begin.month:02d}"
            slug = rng.choice(SLUGS[channel])
            parts = [period, program, partner or "none", channel, region, slug]
            if i in mixed_case:
                parts = [
                    period,
                    program.upper(),
                    (partner or "none").capitalize(),
                    channel.capitalize(),
                    region.upper(),
                    slug,
                ]
            name = "_".join(parts)
            k = 2
            while name.lower() in seen:
                name = "_".join(parts) + f"-{k}"
                k += 1
            seen.add(name.lower())
            registry_partner: str | None = None
            if partner is not None and rng.random() < 0.5:
                registry_partner = partner
            elif partner is None and i in co_marketing:
                registry_partner = self.partner()
            self.campaigns.append(
                _Campaign(
                    name,
                    channel,
                    program,
                    partner,
                    registry_partner,
                    start,
                    end,
                    self.calendar.period(period),
                )
            )
        for name, channel, registry_partner in OFF_CONVENTION:
            start, end = self.window(channel)
            self.campaigns.append(_Campaign(name, channel, "", None, registry_partner, start, end))
        for c in self.campaigns:
            # Partner entries of off-convention campaigns always exist (else the
            # partner would be lost); the others mostly do.
            c.registered = (c.registry_partner is not None and c.program == "") or (
                rng.random() < 0.85
            )
        # campaign index lists active per day, with their pick weights
        self.active: list[tuple[list[int], list[float]]] = []
        for day in range(days):
            t = day * DAY
            idx = [i for i, c in enumerate(self.campaigns) if c.start <= t + DAY and t <= c.end]
            if not idx:
                idx = list(range(len(self.campaigns)))
            self.active.append(
                (idx, list(accumulate([self.weight(self.campaigns[i]) for i in idx])))
            )
        self.partner_campaigns = [i for i, c in enumerate(self.campaigns) if c.partner]

    def window(self, channel: str) -> tuple[int, int]:
        rng = self.rng
        span = self.end
        if channel in ("content", "search") and rng.random() < 0.5:
            return 0, span  # always-on
        duration = rng.randint(14, 60) * DAY
        start = int(rng.uniform(0, max(0.0, span - duration * 0.5)))
        return start, min(span, start + duration)

    def weight(self, c: _Campaign) -> float:
        w = CHANNEL_WEIGHT[c.channel]
        if c.end - c.start > 90 * DAY:  # always-on: a steady trickle, not a burst
            w *= 0.3
        p = c.partner
        return w * (self.partner_by_id[p].strength if p else 0.9)

    def pick_campaign(self, t: int, partner_only: bool = False) -> int:
        rng = self.rng
        day = min(self.cfg.days - 1, max(0, t // DAY))
        idx, cum = self.active[day]
        if partner_only:
            live = [i for i in idx if self.campaigns[i].partner]
            pool = live or self.partner_campaigns
            return rng.choice(pool)
        return rng.choices(idx, cum_weights=cum)[0]

    # leads

    def make_leads(self) -> None:
        rng = self.rng
        n_accounts = len(self.accounts)
        ranks = list(range(n_accounts))
        rng.shuffle(ranks)
        account_cum = list(accumulate([1.0 / (r + 1) ** 0.7 for r in ranks]))
        accounts = range(n_accounts)
        days = self.cfg.days
        for i in range(self.cfg.leads):
            account = rng.choices(accounts, cum_weights=account_cum)[0]
            lead = _Lead(f"lead-{i + 1:06d}", account)
            self.leads.append(lead)
            self.accounts[account].leads.append(i)
            dormant = days >= 130 and rng.random() < 0.08
            n = rng.choices(JOURNEY_LENGTHS, weights=JOURNEY_WEIGHTS)[0]
            if dormant:
                t = rng.uniform(0, days - 130) * DAY
                gap = 4.0 * DAY
            else:
                t = rng.uniform(0, days * 0.92) * DAY
                gap = 9.0 * DAY
            previous: int | None = None
            for k in range(n):
                if k:
                    t += rng.expovariate(1.0 / gap) + 600
                if t >= self.end:
                    break
                reuse = previous is not None and rng.random() < 0.15
                c = previous if previous is not None and reuse else self.pick_campaign(int(t))
                self.touch(lead, c, t)
                previous = c
            if dormant and lead.touches:
                last = max(tt for tt, _ in lead.touches)
                t = last + rng.uniform(92, 125) * DAY
                for _ in range(rng.randint(1, 2)):
                    if t < self.end:
                        self.touch(lead, self.pick_campaign(int(t), partner_only=True), t)
                    t += rng.uniform(1, 10) * DAY
            lead.touches.sort()
            self.lead_milestones(lead)

    def touch(self, lead: _Lead, ci: int, t: float) -> None:
        """One interaction (sometimes two: registered, then attended) with campaign `ci`."""
        rng = self.rng
        c = self.campaigns[ci]
        r = rng.random()
        follow_up: str | None = None
        if c.channel in ("webinar", "event"):
            if r < 0.8:
                action = "registered"
                if rng.random() < (0.6 if c.channel == "webinar" else 0.7):
                    follow_up = "attended"
            else:
                action = "attended" if c.channel == "event" else "visited"
        elif c.channel == "paid-social":
            action = "clicked" if r < 0.85 else "viewed"
        elif c.channel == "email":
            action = "clicked" if r < 0.7 else "replied" if r < 0.9 else "opened"
        elif c.channel == "content":
            action = "downloaded" if r < 0.8 else "visited"
        elif c.channel == "search":
            action = "clicked" if r < 0.6 else "visited"
        else:
            action = "referred"
        at = self.office_time(t)
        self.touch_event(lead, c, at, action)
        if follow_up is not None:
            self.touch_event(lead, c, self.office_time(at + rng.uniform(1, 14) * DAY), follow_up)

    def touch_event(self, lead: _Lead, c: _Campaign, t: int, action: str) -> None:
        rng = self.rng
        if t >= self.end:
            return
        name = c.name
        if rng.random() < 0.01:
            name = name.upper()  # a CRM export shouting the name: same campaign
        fields: dict[str, object] = {"lead_id": lead.id, "campaign": name}
        if rng.random() < (0.7 if not c.program else 0.35):
            fields["channel"] = c.channel
        if action in EXPORTED_ACTIONS and rng.random() < 0.6:
            fields["action"] = action
        partner = c.partner
        r = rng.random()
        if partner is None and r < 0.05:  # co-hosted session: explicit partner
            partner = self.partner()
            fields["partner"] = partner if rng.random() < 0.8 else partner.capitalize()
        elif partner is not None and r < 0.04:
            fields["partner"] = partner if rng.random() < 0.7 else partner.capitalize()
        elif partner is not None and r < 0.06:
            partner = self.partner()  # co-sponsored: another partner takes it
            fields["partner"] = partner
        if rng.random() < 0.2:
            fields["account_id"] = self.accounts[lead.account].id
        if action == "clicked":
            c.clicks += 1
        self.emit(t, "touch", fields)
        lead.touches.append((t, partner))

    def lead_milestones(self, lead: _Lead) -> None:
        rng = self.rng
        touches = lead.touches
        if not touches or rng.random() >= 0.92:
            return
        if rng.random() < 0.05:  # imported from a list before any tracked touch
            k = -1
            created = max(0.0, touches[0][0] - rng.uniform(1, 30) * DAY)
        else:
            k = min(len(touches) - 1, int(rng.expovariate(0.8)))
            created = touches[k][0] + rng.uniform(60, 3 * DAY)
        lead.created_at = int(created)
        fields: dict[str, object] = {"lead_id": lead.id}
        if rng.random() < 0.7:
            fields["account_id"] = self.accounts[lead.account].id
        lc_partner = touches[k][1] if k >= 0 else None
        if lc_partner is not None and rng.random() < 0.3:
            lead.source_partner = lc_partner
        elif rng.random() < 0.03:
            lead.source_partner = self.partner()
        if lead.source_partner is not None:
            fields["source_partner"] = lead.source_partner
        self.emit(created, "lead_created", fields)
        if rng.random() < 0.015:  # a CRM re-sync: the later one must not count
            self.emit(created + rng.uniform(5, 60) * DAY, "lead_created", dict(fields))
        # MQL: likelier the more the lead engaged; after creation and a later touch
        if rng.random() < min(0.8, 0.18 + 0.07 * len(touches)):
            j = rng.randint(max(0, k), len(touches) - 1)
            mql_at = max(created, touches[j][0]) + rng.uniform(HOUR, 5 * DAY)
            self.emit(mql_at, "mql", {"lead_id": lead.id})
            if rng.random() < 0.02:
                self.emit(mql_at + rng.uniform(1, 30) * DAY, "mql", {"lead_id": lead.id})

    # opportunities

    def make_opportunities(self) -> None:
        rng = self.rng
        customers = [
            i
            for i, lead in enumerate(self.leads)
            if self.accounts[lead.account].customer_at is not None
        ]
        prospects = [
            i
            for i, lead in enumerate(self.leads)
            if self.accounts[lead.account].customer_at is None
        ]
        n_opps = round(self.cfg.leads / 6)
        made = 0
        attempts = 0
        while made < n_opps and attempts < n_opps * 4:
            attempts += 1
            business = "expansion" if rng.random() < 0.3 else "new_business"
            pool = (customers if business == "expansion" else prospects) or customers or prospects
            primary = self.leads[rng.choice(pool)]
            if not primary.touches:
                continue
            j = min(len(primary.touches) - 1, int(rng.expovariate(0.6)))
            created = self.office_time(primary.touches[j][0] + rng.uniform(2 * HOUR, 10 * DAY))
            if created >= self.end - DAY or created <= primary.touches[j][0]:
                continue
            made += 1
            self.opportunity(made, business, primary, created)

    def opportunity(self, n: int, business: str, primary: _Lead, created: int) -> None:
        rng = self.rng
        account = self.accounts[primary.account]
        others = [self.leads[i] for i in account.leads if self.leads[i] is not primary]
        extra = rng.choices((0, 1, 2), weights=(50, 35, 15))[0]
        contacts = [primary, *rng.sample(others, min(extra, len(others)))]
        currency = self.currency()
        high = 120_000 if business == "expansion" else 250_000
        arr = math.exp(rng.triangular(math.log(5_000), math.log(high), math.log(30_000)))
        opp_id = f"opp-{n:06d}"
        fields: dict[str, object] = {
            "opportunity_id": opp_id,
            "account_id": account.id,
            "lead_ids": [lead.id for lead in contacts],
            "business": business,
            "arr": self.money(arr),
        }
        if currency != "USD" or rng.random() < 0.5:
            fields["currency"] = currency
        involved = {p for lead in contacts for t, p in lead.touches if p and t <= created}
        if primary.source_partner is not None and rng.random() < 0.6:
            fields["source_partner"] = primary.source_partner
        elif rng.random() < 0.1:
            fields["source_partner"] = self.partner()
        if rng.random() < 0.07:
            fields["referral_partner"] = self.partner()
        for key in ("source_partner", "referral_partner"):
            if key in fields:
                involved.add(str(fields[key]))
        current = float(str(fields["arr"]))
        self.emit(created, "opportunity_created", fields)

        p_win = 0.45 if business == "expansion" else 0.2
        cycle = 1.0
        if involved:
            p_win += 0.05 + max(self.partner_by_id[p].win_boost for p in involved)
            cycle = 0.8
        won = rng.random() < p_win
        if won:
            last = rng.choices((3, 4, 5), weights=(10, 15, 75))[0]
        else:
            last = rng.choices((1, 2, 3, 4), weights=(35, 30, 20, 15))[0]
        path: list[str] = ["S1"] if rng.random() < 0.85 else []
        stage = 1
        while stage < last:
            nxt = stage + 1
            if nxt < last and rng.random() < 0.1:
                nxt += 1  # skipped stage (S1 -> S3 still reaches S2)
            path.append(f"S{nxt}")
            stage = nxt
            if stage >= 3 and rng.random() < 0.05:  # regression, then recovery
                path.extend((f"S{stage - 1}", f"S{stage}"))
        path.append("closed_won" if won else "closed_lost")
        t = created + rng.uniform(10 * 60, 2 * DAY)
        for i, name in enumerate(path):
            if i:
                t += rng.uniform(3, 21) * DAY * cycle
            stage_fields: dict[str, object] = {"opportunity_id": opp_id, "stage": name}
            if rng.random() < (0.3 if name == "closed_won" else 0.12):
                current = current * rng.uniform(0.75, 1.3)
                amount = self.money(current)
                current = float(amount)
                stage_fields["arr"] = amount
            self.emit(self.office_time(t), "opportunity_stage", stage_fields)
        if won and t < self.end:
            account.wins.append((int(t), current * RATES_TO_USD.get(currency, 1.0)))
            if rng.random() < 0.03:  # a second closed_won from a CRM re-sync
                self.emit(
                    t + rng.uniform(1, 20) * DAY,
                    "opportunity_stage",
                    {"opportunity_id": opp_id, "stage": "closed_won"},
                )

    # integrations and account health

    def make_integrations_and_snapshots(self) -> None:
        rng = self.rng
        for account in self.accounts:
            nb_wins = [t for t, _ in account.wins]
            if account.customer_at is None and nb_wins:
                account.customer_at = min(nb_wins)
            customer = account.customer_at is not None
            affinity = rng.uniform(0.3, 1.7) * (1.0 if customer else 0.35)
            installs: list[_Install] = []
            for p in PARTNERS:
                if rng.random() >= p.install_rate * affinity:
                    continue
                if account.customer_at is not None:
                    lo = max(0.0, account.customer_at - 10 * DAY)
                    installed = rng.uniform(lo, max(lo, self.end * 0.9))
                else:
                    installed = rng.uniform(0, self.end)
                installed_at = int(installed)
                uninstalled: int | None = None
                last_use = self.end
                r = rng.random()
                if r < 0.12:
                    uninstalled = installed_at + int(rng.uniform(7, 90) * DAY)
                    last_use = uninstalled - HOUR
                elif r < 0.27:
                    last_use = installed_at + int(rng.uniform(5, 60) * DAY)  # abandoned
                reinstalled = None
                if uninstalled is not None and rng.random() < 0.25:
                    reinstalled = uninstalled + int(rng.uniform(10, 60) * DAY)
                integration = rng.choice(p.integrations)
                installs.append(
                    _Install(p.id, integration, installed_at, uninstalled, last_use, reinstalled)
                )
            depth = sum(1 for i in installs if i.uninstalled is None and i.last_use >= self.end)
            churn_at: int | None = None
            if account.customer_at is not None:
                p_churn = (0.30, 0.20, 0.10, 0.06)[depth] if depth < 4 else 0.04
                if rng.random() < p_churn:
                    lo = max(account.customer_at + 30 * DAY, int(self.end * 0.3))
                    churn_at = int(rng.uniform(lo, max(lo, self.end)))
            for inst in installs:
                self.integration(account, inst, churn_at, affinity)
            if account.customer_at is not None:
                self.snapshots(account, depth, churn_at)

    def integration(
        self, account: _Account, inst: _Install, churn_at: int | None, affinity: float
    ) -> None:
        rng = self.rng
        base: dict[str, object] = {
            "account_id": account.id,
            "integration": inst.integration,
            "partner": inst.partner,
        }
        stop = inst.last_use if churn_at is None else min(inst.last_use, churn_at)
        mean_gap = min(25.0, max(4.0, 12.0 / max(affinity, 0.1))) * DAY
        periods = [(inst.installed, stop)]
        self.emit(inst.installed, "integration_installed", dict(base))
        if inst.uninstalled is not None:
            self.emit(inst.uninstalled, "integration_uninstalled", dict(base))
            if inst.reinstalled is not None:
                self.emit(inst.reinstalled, "integration_installed", dict(base))
                periods.append((inst.reinstalled, self.end if churn_at is None else churn_at))
        elif churn_at is not None and rng.random() < 0.5:
            self.emit(churn_at + rng.uniform(0, 14) * DAY, "integration_uninstalled", dict(base))
        for begin, until in periods:
            t = begin + rng.uniform(HOUR, 2 * DAY)
            while t < until and t < self.end:
                used: dict[str, object] = {
                    "account_id": account.id,
                    "integration": inst.integration,
                }
                if rng.random() < 0.7:
                    used["partner"] = inst.partner
                self.emit(t, "integration_used", used)
                t += rng.expovariate(1.0 / mean_gap) + HOUR

    def snapshots(self, account: _Account, depth: int, churn_at: int | None) -> None:
        rng = self.rng
        assert account.customer_at is not None
        health = min(95.0, rng.uniform(45, 80) + 6 * min(depth, 4))
        t = float(max(account.customer_at + DAY, int(rng.uniform(0, 30) * DAY)))
        while t < self.end:
            churned = churn_at is not None and t >= churn_at
            arr = 0.0
            if not churned:
                arr = sum(a for w, a in account.wins if w <= t)
                if account.customer_at == 0:  # a customer before the stream began
                    arr += account.base_arr
            if churn_at is not None and not churned:
                health = max(5.0, health - rng.uniform(3, 12))
            else:
                health = min(100.0, max(0.0, health + rng.uniform(-4, 4)))
            fields: dict[str, object] = {"account_id": account.id, "arr": self.money(arr)}
            if rng.random() < 0.9:
                fields["health_score"] = round(health, 1)
            if churned or rng.random() < 0.85:
                fields["churned"] = churned
            self.emit(t, "account_snapshot", fields)
            if churned:
                break
            t += rng.uniform(27, 33) * DAY

    # the partner side

    def make_partner_side(self) -> None:
        rng = self.rng
        for p in PARTNERS:
            for _ in range(max(2, round(self.cfg.leads / 150))):
                score = min(10, max(0, round(rng.gauss(p.nps_mean, 1.6))))
                self.emit(
                    self.office_time(rng.uniform(0, self.end)),
                    "partner_feedback",
                    {"partner": p.id, "score": score},
                )
        n_refs = round(self.cfg.leads / 40)
        for i in range(n_refs):
            ref = f"ref-{i + 1:05d}"
            t: float = self.office_time(rng.uniform(0, self.end * 0.9))
            self.emit(t, "referral_sent", {"partner": self.partner(), "referral_id": ref})
            r = rng.random()
            if r < 0.15:
                continue  # no answer yet
            if r < 0.35:
                self.emit(
                    t + rng.uniform(3, 20) * DAY,
                    "referral_outcome",
                    {"referral_id": ref, "status": "lost"},
                )
                continue
            t += rng.uniform(2, 10) * DAY
            accepted: dict[str, object] = {"referral_id": ref, "status": "accepted"}
            estimate = math.exp(rng.uniform(math.log(10_000), math.log(150_000)))
            if rng.random() < 0.3:
                accepted["arr"] = self.money(estimate)
            self.emit(t, "referral_outcome", accepted)
            r = rng.random()
            t += rng.uniform(15, 60) * DAY
            if r < 0.45:
                self.emit(
                    t,
                    "referral_outcome",
                    {"referral_id": ref, "status": "won", "arr": self.money(estimate)},
                )
            elif r < 0.75:
                self.emit(t, "referral_outcome", {"referral_id": ref, "status": "lost"})

    def make_campaign_registry_and_stats(self) -> None:
        rng = self.rng
        goals = {
            "ptnr": (("nb.s2.influenced", 5, 40), ("nb.leads.influenced", 30, 150)),
            "dg": (("nb.leads.influenced", 40, 200), ("nb.mqls.influenced", 20, 120)),
            "abm": (
                ("nb.s2.influenced_arr", 100_000_00, 1_000_000_00),
                ("nb.s2.influenced", 5, 30),
            ),
            "evt": (("nb.leads.influenced", 30, 150), ("nb.cw.influenced", 2, 10)),
            "": (("nb.leads.influenced", 20, 100),),
        }
        outcomes = Outcomes.of(self.events) if self.cfg.goals_from_outcomes else None
        for c in self.campaigns:
            low, high = SPEND[c.channel]
            spend = rng.uniform(low, high) * self.scale
            if c.registered:
                fields: dict[str, object] = {"campaign": c.name}
                if c.registry_partner is not None:
                    fields["partner"] = c.registry_partner
                fields["spend"] = self.money(spend)
                if rng.random() < 0.9:
                    metric, lo, hi = rng.choice(goals[c.program])
                    if outcomes is None:
                        fields["goal"] = self.window_goal(c, metric, lo, hi)
                    else:
                        fields["goal"] = self.quarterly_goal(c, metric, outcomes)
                self.emit(max(0.0, c.start - rng.uniform(1, 10) * DAY), "campaign", fields)
                if rng.random() < 0.25:  # budget top-up mid-flight; the later entry rules
                    update = dict(fields)
                    spend *= rng.uniform(1.1, 1.5)
                    update["spend"] = self.money(spend)
                    self.emit((c.start + c.end) / 2, "campaign", update)
            impressions = int(spend * rng.uniform(15, 60)) + 500
            clicks = int(impressions * rng.uniform(0.004, 0.03)) + c.clicks
            impressions = max(impressions, clicks * 10)
            if rng.random() >= 0.85:
                continue
            last_i = last_c = 0
            t = c.start + DAY
            stop = min(self.end, c.end + 14 * DAY)
            length = max(DAY, c.end - c.start)
            while t < stop:
                share = min(1.0, (t - c.start) / length) ** 0.9
                last_i = max(last_i, int(impressions * share * rng.uniform(0.95, 1.0)))
                last_c = min(last_i, max(last_c, int(clicks * share * rng.uniform(0.95, 1.0))))
                self.emit(
                    t,
                    "campaign_stats",
                    {"campaign": c.name, "impressions": last_i, "clicks": last_c},
                )
                t += 7 * DAY

    def window_goal(self, c: _Campaign, metric: str, low: int, high: int) -> dict[str, object]:
        """A target drawn from the programme's usual range, mostly over the campaign's window."""
        target = max(1, round(self.rng.uniform(low, high) * self.scale))
        goal: dict[str, object] = {"metric": metric, "target": target}
        if self.rng.random() < 0.8:
            goal["period_start"] = self.iso(c.start)
            goal["period_end"] = self.iso(c.end)
        return goal

    def quarterly_goal(self, c: _Campaign, metric: str, outcomes: Outcomes) -> dict[str, object]:
        """A goal over the fiscal quarter the campaign starts in, its target what the
        campaign achieves there give or take a third (teams set goals they can
        nearly meet).  The period is the one in the name when that is the quarter
        (half the time), else explicit in the registry entry (SPEC §4.1)."""
        quarter = self.calendar.quarter_of((self.base + timedelta(seconds=c.start)).date())
        first = (quarter.first - self.cfg.start).days * DAY
        last = (quarter.last - self.cfg.start).days * DAY + DAY - 1
        actual = outcomes.actual(c.name, metric, first, last)
        goal: dict[str, object] = {
            "metric": metric,
            "target": max(1, round(actual * self.rng.uniform(0.75, 1.35))),
        }
        if c.period != quarter or self.rng.random() < 0.5:
            goal["period_start"] = self.iso(first)
            goal["period_end"] = self.iso(last)
        return goal
