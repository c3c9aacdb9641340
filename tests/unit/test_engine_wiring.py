"""The engine's wiring rules, where the worker's former copy of them diverged."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from models.context import Context
from models.engine import Engine, RegistryEntry
from models.events import Event
from models.lead import LeadState
from models.opportunity import OpportunityState
from models.parse import Rejection, parse_event
from models.subject import Contribution, Subject
from tests.lead_journey import CAMPAIGN, lead_journey

DAY_US = 86_400_000_000
TOUCH = {
    "type": "touch",
    "occurred_at": "2026-03-01T00:00:00Z",
    "campaign": "2026Q1_ptnr_slack_webinar_emea_x",
    "action": "clicked",
}


def event(line: dict[str, Any]) -> Event:
    parsed = parse_event(orjson.dumps(line))
    assert not isinstance(parsed, Rejection), parsed
    return parsed


def lead_events() -> list[Event]:
    """`lead_journey`, parsed."""
    return [event(line) for line in lead_journey()]


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
    assert ("partner:slack", "nb.leads.influenced") not in first.totals
    assert first.totals[("all", "nb.leads.influenced")] == 1

    entry = RegistryEntry(1, "r1", "slack")
    assert engine.registry.offer(CAMPAIGN, entry)  # known already (a worker's start)
    engine.on_registry(CAMPAIGN, entry)  # then its broadcast arrives
    later = engine.settle()

    # the one touchpoint is FT and LC: the lead is influenced and acquired by slack
    assert later.totals[("partner:slack", "nb.leads.influenced")] == 1
    assert later.totals[("partner:slack", "leads.acquired")] == 1
    assert later.totals[("partner:slack", "nb.leads.attributed")] == 1_000_000
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


def poison(monkeypatch: pytest.MonkeyPatch, cls: type[Subject], key: str) -> None:
    """Make settling the subject `key` of `cls` raise (a bug met by its data)."""
    original = cls.contribute

    def contribute(self: Subject, ctx: Context) -> Contribution:
        if self.key == key:
            raise RuntimeError(f"poisoned {key}")
        return original(self, ctx)

    monkeypatch.setattr(cls, "contribute", contribute)


def test_a_subject_that_fails_to_settle_is_isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its inputs of the settle are dead letters (`processing_error`), it keeps its
    state from before, and every other subject settles as if it had never been."""
    poison(monkeypatch, LeadState, "bad")
    engine = Engine()
    for item in lead_events():
        engine.ingest(item)
    for day in (1, 2):
        engine.ingest(event({**TOUCH, "event_id": f"b{day}", "lead_id": "bad"}))
    deltas = engine.settle()

    assert "bad" not in engine.leads
    assert deltas.metrics[("all", "dq.dead_letters.processing_error")] == 2
    assert deltas.metrics[("all", "dq.dead_letters")] == 2
    assert deltas.totals[("all", "nb.leads.influenced")] == 1  # l1 only
    assert {c.subject for c in deltas.credits} == {"lead:l1"}

    later = engine.apply(event({**TOUCH, "event_id": "b3", "lead_id": "bad"}))
    assert later.metrics == {
        ("all", "dq.dead_letters.processing_error"): 1,
        ("all", "dq.dead_letters"): 1,
    }


def test_an_opportunity_keeps_its_state_from_before_the_failed_settle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    created = {
        "event_id": "o1c",
        "type": "opportunity_created",
        "occurred_at": "2026-03-03T00:00:00Z",
        "opportunity_id": "o1",
        "account_id": "a1",
        "lead_ids": ["l1"],
        "business": "new_business",
        "arr": 1000,
    }
    won = {
        "event_id": "o1w",
        "type": "opportunity_stage",
        "occurred_at": "2026-03-04T00:00:00Z",
        "opportunity_id": "o1",
        "stage": "closed_won",
    }
    engine = Engine()
    for item in [*lead_events(), event(created)]:
        engine.ingest(item)
    engine.settle()
    before = engine.opportunities["o1"].contribution
    with monkeypatch.context() as patched:
        poison(patched, OpportunityState, "o1")
        failed = engine.apply(event(won))
    assert failed.metrics == {
        ("all", "dq.dead_letters.processing_error"): 1,
        ("all", "dq.dead_letters"): 1,
    }
    assert engine.opportunities["o1"].won is None  # the won event is gone with the batch
    assert engine.opportunities["o1"].contribution == before
    # the same event again (its redelivery) now settles: the deal is won
    assert engine.apply(event(won)).totals[("all", "nb.cw.influenced")] == 1
