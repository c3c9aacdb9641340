"""The engine's wiring rules, where the worker's former copy of them diverged."""

from __future__ import annotations

from typing import cast

import orjson

from models.engine import Engine, RegistryEntry
from models.events import Event
from models.parse import Rejection, parse_event

DAY_US = 86_400_000_000
CAMPAIGN = "webinar-x"
"""Not in the naming convention: no partner of its own, only the registry's."""


def lead_events() -> list[Event]:
    """A lead touched by `CAMPAIGN` a day before its creation."""
    lines = [
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
    events = [parse_event(orjson.dumps(line)) for line in lines]
    assert all(not isinstance(e, Rejection) for e in events)
    return cast(list[Event], events)


def test_an_entry_known_before_its_broadcast_still_resettles_the_campaigns_leads() -> None:
    """A worker loads the registry at start (or with the campaign's own event), so
    the entry's broadcast finds the partner already in force.  The broadcast must
    still re-settle the campaign's leads: their contributions were computed
    without it.  (The batch oracle re-settled only when the partner changed, the
    worker whenever an entry is in force; one rule now, the latter.)"""
    engine = Engine()
    for event in lead_events():
        engine.ingest(event)
    first = engine.settle()
    assert ("partner:slack", "nb.leads.influenced") not in first.metrics
    assert first.metrics[("all", "nb.leads.influenced")] == 1

    entry = RegistryEntry(1, "r1", "slack")
    assert engine.registry.offer(CAMPAIGN, entry)  # known already (a worker's start)
    engine.on_registry(CAMPAIGN, entry)  # then its broadcast arrives
    later = engine.settle()

    # the one touchpoint is FT and LC: the lead is influenced and acquired by slack
    assert later.metrics[("partner:slack", "nb.leads.influenced")] == 1
    assert later.metrics[("partner:slack", "leads.acquired")] == 1
    assert later.metrics[("partner:slack", "nb.leads.attributed")] == 1_000_000
    assert ("all", "nb.leads.influenced") not in later.metrics  # unchanged there


def test_an_older_entry_changes_nothing() -> None:
    """The latest entry by (occurred_at, event_id) is in force, whatever the order."""
    engine = Engine()
    for event in lead_events():
        engine.ingest(event)
    engine.settle()
    engine.on_registry(CAMPAIGN, RegistryEntry(2 * DAY_US, "r2", "slack"))
    engine.settle()
    engine.on_registry(CAMPAIGN, RegistryEntry(DAY_US, "r9", "hubspot"))
    assert not engine.settle()
    assert engine.ctx.registry[CAMPAIGN] == "slack"
