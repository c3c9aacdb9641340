"""The partner side: feedback scores and the referrals we send to partners."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from datagen.catalogue import (
    DAY,
    PARTNERS,
)

if TYPE_CHECKING:
    from datagen.world import World


def make_partner_side(world: World) -> None:
    rng = world.rng
    for p in PARTNERS:
        for _ in range(max(2, round(world.cfg.leads / 150))):
            score = min(10, max(0, round(rng.gauss(p.nps_mean, 1.6))))
            world.emit(
                world.office_time(rng.uniform(0, world.end)),
                "partner_feedback",
                {"partner": p.id, "score": score},
            )
    n_refs = round(world.cfg.leads / 40)
    for i in range(n_refs):
        ref = f"ref-{i + 1:05d}"
        t: float = world.office_time(rng.uniform(0, world.end * 0.9))
        world.emit(t, "referral_sent", {"partner": world.partner(), "referral_id": ref})
        r = rng.random()
        if r < 0.15:
            continue  # no answer yet
        if r < 0.35:
            world.emit(
                t + rng.uniform(3, 20) * DAY,
                "referral_outcome",
                {"referral_id": ref, "status": "lost"},
            )
            continue
        t += rng.uniform(2, 10) * DAY
        accepted: dict[str, object] = {"referral_id": ref, "status": "accepted"}
        estimate = math.exp(rng.uniform(math.log(10_000), math.log(150_000)))
        if rng.random() < 0.3:
            accepted["arr"] = world.money(estimate)
        world.emit(t, "referral_outcome", accepted)
        r = rng.random()
        t += rng.uniform(15, 60) * DAY
        if r < 0.45:
            world.emit(
                t,
                "referral_outcome",
                {"referral_id": ref, "status": "won", "arr": world.money(estimate)},
            )
        elif r < 0.75:
            world.emit(t, "referral_outcome", {"referral_id": ref, "status": "lost"})
