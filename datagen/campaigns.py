"""Campaigns: names by the convention (and some that break it), active windows,
who is picked for a touch on a given day, registry entries with spend and
goals, and weekly cumulative stats."""

from __future__ import annotations

from datetime import timedelta
from itertools import accumulate
from typing import TYPE_CHECKING

from datagen.catalogue import (
    CHANNEL_WEIGHT,
    CHANNELS_BY_PROGRAM,
    DAY,
    N_CONVENTIONAL,
    OFF_CONVENTION,
    PARTNERS,
    PROGRAM_WEIGHTS,
    PROGRAMS,
    REGION_WEIGHTS,
    REGIONS,
    SLUGS,
    SPEND,
)
from datagen.entities import Campaign
from datagen.goals import Outcomes

if TYPE_CHECKING:
    from datagen.world import World


def make_campaigns(world: World) -> None:
    rng = world.rng
    days = world.cfg.days
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
                partner = world.partner()
        channel = rng.choice(CHANNELS_BY_PROGRAM[program])
        region = rng.choices(REGIONS, weights=REGION_WEIGHTS)[0]
        start, end = window(world, channel)
        begin = world.cfg.start + timedelta(seconds=start)
        if rng.random() < 0.5:
            fiscal_year, quarter = world.calendar.fiscal_quarter(begin)
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
            registry_partner = world.partner()
        world.campaigns.append(
            Campaign(
                name,
                channel,
                program,
                partner,
                registry_partner,
                start,
                end,
                world.calendar.period(period),
            )
        )
    for name, channel, registry_partner in OFF_CONVENTION:
        start, end = window(world, channel)
        world.campaigns.append(Campaign(name, channel, "", None, registry_partner, start, end))
    for c in world.campaigns:
        # Partner entries of off-convention campaigns always exist (else the
        # partner would be lost); the others mostly do.
        c.registered = (c.registry_partner is not None and c.program == "") or (rng.random() < 0.85)
    # campaign index lists active per day, with their pick weights
    world.active = []
    for day in range(days):
        t = day * DAY
        idx = [i for i, c in enumerate(world.campaigns) if c.start <= t + DAY and t <= c.end]
        if not idx:
            idx = list(range(len(world.campaigns)))
        world.active.append(
            (idx, list(accumulate([weight(world, world.campaigns[i]) for i in idx])))
        )
    world.partner_campaigns = [i for i, c in enumerate(world.campaigns) if c.partner]


def window(world: World, channel: str) -> tuple[int, int]:
    rng = world.rng
    span = world.end
    if channel in ("content", "search") and rng.random() < 0.5:
        return 0, span  # always-on
    duration = rng.randint(14, 60) * DAY
    start = int(rng.uniform(0, max(0.0, span - duration * 0.5)))
    return start, min(span, start + duration)


def weight(world: World, c: Campaign) -> float:
    w = CHANNEL_WEIGHT[c.channel]
    if c.end - c.start > 90 * DAY:  # always-on: a steady trickle, not a burst
        w *= 0.3
    p = c.partner
    return w * (world.partner_by_id[p].strength if p else 0.9)


def pick_campaign(world: World, t: int, partner_only: bool = False) -> int:
    rng = world.rng
    day = min(world.cfg.days - 1, max(0, t // DAY))
    idx, cum = world.active[day]
    if partner_only:
        live = [i for i in idx if world.campaigns[i].partner]
        pool = live or world.partner_campaigns
        return rng.choice(pool)
    return rng.choices(idx, cum_weights=cum)[0]


def make_campaign_registry_and_stats(world: World) -> None:
    rng = world.rng
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
    outcomes = Outcomes.of(world.events) if world.cfg.goals_from_outcomes else None
    for c in world.campaigns:
        low, high = SPEND[c.channel]
        spend = rng.uniform(low, high) * world.scale
        if c.registered:
            fields: dict[str, object] = {"campaign": c.name}
            if c.registry_partner is not None:
                fields["partner"] = c.registry_partner
            fields["spend"] = world.money(spend)
            if rng.random() < 0.9:
                metric, lo, hi = rng.choice(goals[c.program])
                if outcomes is None:
                    fields["goal"] = window_goal(world, c, metric, lo, hi)
                else:
                    fields["goal"] = quarterly_goal(world, c, metric, outcomes)
            world.emit(max(0.0, c.start - rng.uniform(1, 10) * DAY), "campaign", fields)
            if rng.random() < 0.25:  # budget top-up mid-flight; the later entry rules
                update = dict(fields)
                spend *= rng.uniform(1.1, 1.5)
                update["spend"] = world.money(spend)
                world.emit((c.start + c.end) / 2, "campaign", update)
        impressions = int(spend * rng.uniform(15, 60)) + 500
        clicks = int(impressions * rng.uniform(0.004, 0.03)) + c.clicks
        impressions = max(impressions, clicks * 10)
        if rng.random() >= 0.85:
            continue
        last_i = last_c = 0
        t = c.start + DAY
        stop = min(world.end, c.end + 14 * DAY)
        length = max(DAY, c.end - c.start)
        while t < stop:
            share = min(1.0, (t - c.start) / length) ** 0.9
            last_i = max(last_i, int(impressions * share * rng.uniform(0.95, 1.0)))
            last_c = min(last_i, max(last_c, int(clicks * share * rng.uniform(0.95, 1.0))))
            world.emit(
                t,
                "campaign_stats",
                {"campaign": c.name, "impressions": last_i, "clicks": last_c},
            )
            t += 7 * DAY


def window_goal(world: World, c: Campaign, metric: str, low: int, high: int) -> dict[str, object]:
    """A target drawn from the programme's usual range, mostly over the campaign's window."""
    target = max(1, round(world.rng.uniform(low, high) * world.scale))
    goal: dict[str, object] = {"metric": metric, "target": target}
    if world.rng.random() < 0.8:
        goal["period_start"] = world.iso(c.start)
        goal["period_end"] = world.iso(c.end)
    return goal


def quarterly_goal(world: World, c: Campaign, metric: str, outcomes: Outcomes) -> dict[str, object]:
    """A goal over the fiscal quarter the campaign starts in, its target what the
    campaign achieves there give or take a third (teams set goals they can
    nearly meet).  The period is the one in the name when that is the quarter
    (half the time), else explicit in the registry entry (SPEC §4.1)."""
    quarter = world.calendar.quarter_of((world.base + timedelta(seconds=c.start)).date())
    first = (quarter.first - world.cfg.start).days * DAY
    last = (quarter.last - world.cfg.start).days * DAY + DAY - 1
    actual = outcomes.actual(c.name, metric, first, last)
    goal: dict[str, object] = {
        "metric": metric,
        "target": max(1, round(actual * world.rng.uniform(0.75, 1.35))),
    }
    if c.period != quarter or world.rng.random() < 0.5:
        goal["period_start"] = world.iso(first)
        goal["period_end"] = world.iso(last)
    return goal
