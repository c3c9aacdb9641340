"""One small lead journey, shared by the engine's and the worker's wiring tests."""

from __future__ import annotations

from typing import Any

CAMPAIGN = "webinar-x"
"""Not in the naming convention: no partner of its own, only the registry's."""


def lead_journey() -> list[dict[str, Any]]:
    """Lead `l1` touched by `CAMPAIGN` (a click) a day before its creation."""
    return [
        {
            "event_id": "t1",
            "type": "touch",
            "occurred_at": "2026-03-01T00:00:00Z",
            "lead_id": "l1",
            "campaign": CAMPAIGN,
            "action": "clicked",
        },
        {
            "event_id": "c1",
            "type": "lead_created",
            "occurred_at": "2026-03-02T00:00:00Z",
            "lead_id": "l1",
        },
    ]
