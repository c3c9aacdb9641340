"""Lead journeys: touches across campaigns (registered -> attended, repeat
clicks, overrides), lead creation, MQLs and dormant leads re-engaged by partners."""

from __future__ import annotations

from itertools import accumulate
from typing import TYPE_CHECKING

from datagen.campaigns import pick_campaign
from datagen.catalogue import (
    DAY,
    EXPORTED_ACTIONS,
    HOUR,
    JOURNEY_LENGTHS,
    JOURNEY_WEIGHTS,
)
from datagen.entities import Campaign, Lead

if TYPE_CHECKING:
    from datagen.world import World


def make_leads(world: World) -> None:
    rng = world.rng
    n_accounts = len(world.accounts)
    ranks = list(range(n_accounts))
    rng.shuffle(ranks)
    account_cum = list(accumulate([1.0 / (r + 1) ** 0.7 for r in ranks]))
    accounts = range(n_accounts)
    days = world.cfg.days
    for i in range(world.cfg.leads):
        account = rng.choices(accounts, cum_weights=account_cum)[0]
        lead = Lead(f"lead-{i + 1:06d}", account)
        world.leads.append(lead)
        world.accounts[account].leads.append(i)
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
            if t >= world.end:
                break
            reuse = previous is not None and rng.random() < 0.15
            c = previous if previous is not None and reuse else pick_campaign(world, int(t))
            touch(world, lead, c, t)
            previous = c
        if dormant and lead.touches:
            last = max(tt for tt, _ in lead.touches)
            t = last + rng.uniform(92, 125) * DAY
            for _ in range(rng.randint(1, 2)):
                if t < world.end:
                    touch(world, lead, pick_campaign(world, int(t), partner_only=True), t)
                t += rng.uniform(1, 10) * DAY
        lead.touches.sort()
        lead_milestones(world, lead)


def touch(world: World, lead: Lead, ci: int, t: float) -> None:
    """One interaction (sometimes two: registered, then attended) with campaign `ci`."""
    rng = world.rng
    c = world.campaigns[ci]
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
    at = world.office_time(t)
    touch_event(world, lead, c, at, action)
    if follow_up is not None:
        touch_event(world, lead, c, world.office_time(at + rng.uniform(1, 14) * DAY), follow_up)


def touch_event(world: World, lead: Lead, c: Campaign, t: int, action: str) -> None:
    rng = world.rng
    if t >= world.end:
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
        partner = world.partner()
        fields["partner"] = partner if rng.random() < 0.8 else partner.capitalize()
    elif partner is not None and r < 0.04:
        fields["partner"] = partner if rng.random() < 0.7 else partner.capitalize()
    elif partner is not None and r < 0.06:
        partner = world.partner()  # co-sponsored: another partner takes it
        fields["partner"] = partner
    if rng.random() < 0.2:
        fields["account_id"] = world.accounts[lead.account].id
    if action == "clicked":
        c.clicks += 1
    world.emit(t, "touch", fields)
    lead.touches.append((t, partner))


def lead_milestones(world: World, lead: Lead) -> None:
    rng = world.rng
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
        fields["account_id"] = world.accounts[lead.account].id
    lc_partner = touches[k][1] if k >= 0 else None
    if lc_partner is not None and rng.random() < 0.3:
        lead.source_partner = lc_partner
    elif rng.random() < 0.03:
        lead.source_partner = world.partner()
    if lead.source_partner is not None:
        fields["source_partner"] = lead.source_partner
    world.emit(created, "lead_created", fields)
    if rng.random() < 0.015:  # a CRM re-sync: the later one must not count
        world.emit(created + rng.uniform(5, 60) * DAY, "lead_created", dict(fields))
    # MQL: likelier the more the lead engaged; after creation and a later touch
    if rng.random() < min(0.8, 0.18 + 0.07 * len(touches)):
        j = rng.randint(max(0, k), len(touches) - 1)
        mql_at = max(created, touches[j][0]) + rng.uniform(HOUR, 5 * DAY)
        world.emit(mql_at, "mql", {"lead_id": lead.id})
        if rng.random() < 0.02:
            world.emit(mql_at + rng.uniform(1, 30) * DAY, "mql", {"lead_id": lead.id})
