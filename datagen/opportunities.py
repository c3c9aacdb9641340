"""Opportunities of both businesses: contacts of one account, ARR in several
currencies, partner sourcing and referral, stage histories and wins."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from datagen.catalogue import (
    DAY,
    HOUR,
    RATES_TO_USD,
)
from datagen.entities import Lead

if TYPE_CHECKING:
    from datagen.world import World


def make_opportunities(world: World) -> None:
    rng = world.rng
    customers = [
        i
        for i, lead in enumerate(world.leads)
        if world.accounts[lead.account].customer_at is not None
    ]
    prospects = [
        i for i, lead in enumerate(world.leads) if world.accounts[lead.account].customer_at is None
    ]
    n_opps = round(world.cfg.leads / 6)
    made = 0
    attempts = 0
    while made < n_opps and attempts < n_opps * 4:
        attempts += 1
        business = "expansion" if rng.random() < 0.3 else "new_business"
        pool = (customers if business == "expansion" else prospects) or customers or prospects
        primary = world.leads[rng.choice(pool)]
        if not primary.touches:
            continue
        j = min(len(primary.touches) - 1, int(rng.expovariate(0.6)))
        created = world.office_time(primary.touches[j][0] + rng.uniform(2 * HOUR, 10 * DAY))
        if created >= world.end - DAY or created <= primary.touches[j][0]:
            continue
        made += 1
        opportunity(world, made, business, primary, created)


def opportunity(world: World, n: int, business: str, primary: Lead, created: int) -> None:
    rng = world.rng
    account = world.accounts[primary.account]
    others = [world.leads[i] for i in account.leads if world.leads[i] is not primary]
    extra = rng.choices((0, 1, 2), weights=(50, 35, 15))[0]
    contacts = [primary, *rng.sample(others, min(extra, len(others)))]
    currency = world.currency()
    high = 120_000 if business == "expansion" else 250_000
    arr = math.exp(rng.triangular(math.log(5_000), math.log(high), math.log(30_000)))
    opp_id = f"opp-{n:06d}"
    fields: dict[str, object] = {
        "opportunity_id": opp_id,
        "account_id": account.id,
        "lead_ids": [lead.id for lead in contacts],
        "business": business,
        "arr": world.money(arr),
    }
    if currency != "USD" or rng.random() < 0.5:
        fields["currency"] = currency
    involved = {p for lead in contacts for t, p in lead.touches if p and t <= created}
    if primary.source_partner is not None and rng.random() < 0.6:
        fields["source_partner"] = primary.source_partner
    elif rng.random() < 0.1:
        fields["source_partner"] = world.partner()
    if rng.random() < 0.07:
        fields["referral_partner"] = world.partner()
    for key in ("source_partner", "referral_partner"):
        if key in fields:
            involved.add(str(fields[key]))
    current = float(str(fields["arr"]))
    world.emit(created, "opportunity_created", fields)

    p_win = 0.45 if business == "expansion" else 0.2
    cycle = 1.0
    if involved:
        p_win += 0.05 + max(world.partner_by_id[p].win_boost for p in involved)
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
            amount = world.money(current)
            current = float(amount)
            stage_fields["arr"] = amount
        world.emit(world.office_time(t), "opportunity_stage", stage_fields)
    if won and t < world.end:
        account.wins.append((int(t), current * RATES_TO_USD.get(currency, 1.0)))
        if rng.random() < 0.03:  # a second closed_won from a CRM re-sync
            world.emit(
                t + rng.uniform(1, 20) * DAY,
                "opportunity_stage",
                {"opportunity_id": opp_id, "stage": "closed_won"},
            )
