"""What a group holds of its events: equal to them, with its names shared."""

from __future__ import annotations

import orjson

from models.events import IntegrationUsed
from models.groups import GroupState, held
from models.parse import parse_event


def _used(event_id: str, at: str = "2026-03-09T10:00:00+00:00") -> IntegrationUsed:
    raw = {
        "type": "integration_used",
        "event_id": event_id,
        "occurred_at": at,
        "account_id": "acct-" + "00042",  # built at run time: not a compile-time constant
        "integration": "jira-" + "cloud",
    }
    event = parse_event(orjson.dumps(raw))
    assert isinstance(event, IntegrationUsed)
    return event


def test_a_held_event_equals_the_parsed_one() -> None:
    kept = held(_used("evt-1"))
    assert kept == _used("evt-1")
    assert kept.model_dump() == _used("evt-1").model_dump()
    given = {"type", "event_id", "occurred_at", "account_id", "integration"}
    assert kept.model_fields_set == given
    assert kept.ts == _used("evt-1").ts


def test_held_events_share_their_names_and_field_sets() -> None:
    group = GroupState("acct-00042", family="account")
    assert group.ingest(_used("evt-1"))
    assert group.ingest(_used("evt-2"))
    assert not group.ingest(_used("evt-2"))
    one, two = group.events.values()
    assert isinstance(one, IntegrationUsed)
    assert isinstance(two, IntegrationUsed)
    assert one.account_id is two.account_id
    assert one.model_fields_set is two.model_fields_set
    assert one.event_id != two.event_id


def test_a_group_keeps_its_events_in_event_time_order_whatever_their_arrival() -> None:
    group = GroupState("acct-00042", family="account")
    for event_id, at in (
        ("evt-b", "2026-03-09T10:00:00+00:00"),
        ("evt-d", "2026-03-11T10:00:00+00:00"),
        ("evt-a", "2026-03-08T23:59:59+00:00"),  # late: before both
        ("evt-c", "2026-03-09T10:00:00+00:00"),  # same moment as evt-b: by id
        ("evt-e", "2026-03-12T00:00:00+00:00"),
    ):
        assert group.ingest(_used(event_id, at))
    ordered = ["evt-a", "evt-b", "evt-c", "evt-d", "evt-e"]
    assert [event.event_id for event in group.in_order()] == ordered
    assert list(group.events) == ordered  # kept sorted
    assert group.ingest(_used("evt-f", "2026-03-13T00:00:00+00:00"))
    assert [event.event_id for event in group.in_order()] == [*ordered, "evt-f"]
