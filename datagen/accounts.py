"""Accounts: customers and prospects, integration installs and usage,
abandonment and uninstalls, churn falling with integration depth, and
monthly snapshots."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from datagen.catalogue import (
    DAY,
    HOUR,
    PARTNERS,
)
from datagen.entities import Account, Install

if TYPE_CHECKING:
    from datagen.world import World


def make_accounts(world: World) -> None:
    rng = world.rng
    for i in range(world.cfg.account_count):
        customer = rng.random() < 0.35
        base_arr = math.exp(rng.uniform(math.log(10_000), math.log(300_000)))
        world.accounts.append(Account(f"acct-{i + 1:05d}", 0 if customer else None, base_arr))


def make_integrations_and_snapshots(world: World) -> None:
    rng = world.rng
    for account in world.accounts:
        nb_wins = [t for t, _ in account.wins]
        if account.customer_at is None and nb_wins:
            account.customer_at = min(nb_wins)
        customer = account.customer_at is not None
        affinity = rng.uniform(0.3, 1.7) * (1.0 if customer else 0.35)
        installs: list[Install] = []
        for p in PARTNERS:
            if rng.random() >= p.install_rate * affinity:
                continue
            if account.customer_at is not None:
                lo = max(0.0, account.customer_at - 10 * DAY)
                installed = rng.uniform(lo, max(lo, world.end * 0.9))
            else:
                installed = rng.uniform(0, world.end)
            installed_at = int(installed)
            uninstalled: int | None = None
            last_use = world.end
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
                Install(p.id, integration, installed_at, uninstalled, last_use, reinstalled)
            )
        depth = sum(1 for i in installs if i.uninstalled is None and i.last_use >= world.end)
        churn_at: int | None = None
        if account.customer_at is not None:
            p_churn = (0.30, 0.20, 0.10, 0.06)[depth] if depth < 4 else 0.04
            if rng.random() < p_churn:
                lo = max(account.customer_at + 30 * DAY, int(world.end * 0.3))
                churn_at = int(rng.uniform(lo, max(lo, world.end)))
        for inst in installs:
            integration_events(world, account, inst, churn_at, affinity)
        if account.customer_at is not None:
            snapshots(world, account, depth, churn_at)


def integration_events(
    world: World, account: Account, inst: Install, churn_at: int | None, affinity: float
) -> None:
    rng = world.rng
    base: dict[str, object] = {
        "account_id": account.id,
        "integration": inst.integration,
        "partner": inst.partner,
    }
    stop = inst.last_use if churn_at is None else min(inst.last_use, churn_at)
    mean_gap = min(25.0, max(4.0, 12.0 / max(affinity, 0.1))) * DAY
    periods = [(inst.installed, stop)]
    world.emit(inst.installed, "integration_installed", dict(base))
    if inst.uninstalled is not None:
        world.emit(inst.uninstalled, "integration_uninstalled", dict(base))
        if inst.reinstalled is not None:
            world.emit(inst.reinstalled, "integration_installed", dict(base))
            periods.append((inst.reinstalled, world.end if churn_at is None else churn_at))
    elif churn_at is not None and rng.random() < 0.5:
        world.emit(churn_at + rng.uniform(0, 14) * DAY, "integration_uninstalled", dict(base))
    for begin, until in periods:
        t = begin + rng.uniform(HOUR, 2 * DAY)
        while t < until and t < world.end:
            used: dict[str, object] = {
                "account_id": account.id,
                "integration": inst.integration,
            }
            if rng.random() < 0.7:
                used["partner"] = inst.partner
            world.emit(t, "integration_used", used)
            t += rng.expovariate(1.0 / mean_gap) + HOUR


def snapshots(world: World, account: Account, depth: int, churn_at: int | None) -> None:
    rng = world.rng
    assert account.customer_at is not None
    health = min(95.0, rng.uniform(45, 80) + 6 * min(depth, 4))
    t = float(max(account.customer_at + DAY, int(rng.uniform(0, 30) * DAY)))
    while t < world.end:
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
        fields: dict[str, object] = {"account_id": account.id, "arr": world.money(arr)}
        if rng.random() < 0.9:
            fields["health_score"] = round(health, 1)
        if churned or rng.random() < 0.85:
            fields["churned"] = churned
        world.emit(t, "account_snapshot", fields)
        if churned:
            break
        t += rng.uniform(27, 33) * DAY
