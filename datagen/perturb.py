"""Perturbations, applied after the clean stream is built from their own random
streams (so they never change the clean events): shuffling, duplicates and
malformed lines."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from typing import Final

from datagen.config import SyntheticConfig

__all__ = ["perturb"]

_REQUIRED: Final[dict[str, tuple[str, ...]]] = {
    "touch": ("lead_id", "campaign"),
    "lead_created": ("lead_id",),
    "mql": ("lead_id",),
    "opportunity_created": ("opportunity_id", "account_id", "lead_ids", "business", "arr"),
    "opportunity_stage": ("opportunity_id", "stage"),
    "integration_installed": ("account_id", "integration", "partner"),
    "integration_uninstalled": ("account_id", "integration", "partner"),
    "integration_used": ("account_id", "integration"),
    "account_snapshot": ("account_id", "arr"),
    "campaign": ("campaign",),
    "campaign_stats": ("campaign", "impressions", "clicks"),
    "partner_feedback": ("partner", "score"),
    "referral_sent": ("partner", "referral_id"),
    "referral_outcome": ("referral_id", "status"),
}


def perturb(
    config: SyntheticConfig, events: list[dict[str, object]]
) -> list[dict[str, object] | str]:
    n = len(events)
    seed = config.seed
    # (position key, tie-break, item); each perturbation has its own random stream
    keyed: list[tuple[float, int, dict[str, object] | str]] = []
    shuffle_rng = random.Random(f"partnerpulse:{seed}:shuffle")  # noqa: S311
    keys = [float(i) for i in range(n)]
    for i in sorted(shuffle_rng.sample(range(n), round(config.shuffle * n))):
        keys[i] = shuffle_rng.uniform(-0.5, n)  # moved anywhere: early or late
    placed = [events[i] for i in sorted(range(n), key=keys.__getitem__)]
    keyed.extend((float(pos), 0, item) for pos, item in enumerate(placed))

    dup_rng = random.Random(f"partnerpulse:{seed}:duplicates")  # noqa: S311
    for k, pos in enumerate(sorted(dup_rng.sample(range(n), round(config.duplicates * n)))):
        later = pos + 0.5 + dup_rng.random() * (n - pos - 0.5)
        keyed.append((later, 1 + k, _copy(placed[pos])))

    bad_rng = random.Random(f"partnerpulse:{seed}:invalid")  # noqa: S311
    for k in range(round(config.invalid * n)):
        line = _malformed(bad_rng, k + 1, events, config)
        keyed.append((bad_rng.uniform(-0.5, n), n + 1 + k, line))

    keyed.sort(key=lambda e: (e[0], e[1]))
    return [item for _, _, item in keyed]


def _copy(item: dict[str, object]) -> dict[str, object]:
    """A copy sharing no mutable parts with the original (content identical)."""
    out: dict[str, object] = {}
    for key, value in item.items():
        if isinstance(value, list):
            out[key] = list(value)
        elif isinstance(value, dict):
            out[key] = dict(value)
        else:
            out[key] = value
    return out


def _malformed(
    rng: random.Random, n: int, events: list[dict[str, object]], config: SyntheticConfig
) -> str:
    """One bad line, usually a corrupted copy of a real event under its own id."""
    bad_id = f"bad{n:08d}"
    if events:
        base = _copy(rng.choice(events))
    else:
        moment = datetime(config.start.year, config.start.month, config.start.day, tzinfo=UTC)
        base = {
            "event_id": "",
            "type": "mql",
            "occurred_at": moment.isoformat(),
            "lead_id": "lead-000001",
        }
    base["event_id"] = bad_id
    kind = rng.randrange(7)
    if kind == 0:  # truncated JSON
        text = json.dumps(base)
        return text[: max(1, rng.randint(len(text) // 4, len(text) - 2))]
    if kind == 1:  # not JSON at all
        return rng.choice(
            (
                "lead_id=lead-000001,type=touch",
                "<html><body>502 Bad Gateway</body></html>",
                "{'event_id': 'x', 'type': 'mql'}",
            )
        )
    if kind == 2:  # a required field missing
        type_ = str(base["type"])
        del base[rng.choice(("event_id", "occurred_at", *_REQUIRED[type_]))]
        return json.dumps(base)
    if kind == 3:  # an unknown type
        base["type"] = rng.choice(("page_view", "lead_deleted", "Touch", "opportunity"))
        return json.dumps(base)
    if kind == 4:  # negative money
        arr = -round(rng.uniform(100, 50_000), 2)
        if base["type"] in ("opportunity_created", "account_snapshot"):
            base["arr"] = arr
        else:
            base = {
                "event_id": bad_id,
                "type": "opportunity_created",
                "occurred_at": base["occurred_at"],
                "opportunity_id": f"opp-bad-{n}",
                "account_id": "acct-00001",
                "lead_ids": ["lead-000001"],
                "business": "new_business",
                "arr": arr,
            }
        return json.dumps(base)
    if kind == 5:  # a naive timestamp (no UTC offset)
        base["occurred_at"] = str(base["occurred_at"])[:19]
        return json.dumps(base)
    # a field of the wrong kind
    base = {
        "event_id": bad_id,
        "type": "opportunity_stage",
        "occurred_at": base["occurred_at"],
        "opportunity_id": "opp-000001",
        "stage": rng.choice(("S9", "won", "closed")),
    }
    return json.dumps(base)
