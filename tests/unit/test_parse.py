"""The parser turns any bytes into an event or a rejection with a stable reason."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.events import OpportunityCreated, Touch
from models.parse import Rejection, parse_event

TOUCH = {
    "type": "touch",
    "event_id": "e1",
    "occurred_at": "2026-03-01T10:00:00+01:00",
    "lead_id": "l1",
    "campaign": "2026Q1_ptnr_slack_webinar_emea_ai",
    "action": "registered",
}


def encoded(**changes: object) -> bytes:
    event = {**TOUCH, **changes}
    return json.dumps({k: v for k, v in event.items() if v is not None}).encode()


def reason(raw: bytes, **kwargs: int) -> tuple[str, str | None]:
    result = parse_event(raw, **kwargs)  # type: ignore[arg-type]
    assert isinstance(result, Rejection), result
    assert result.raw == raw
    return result.reason, result.field


def test_valid_touch_keeps_the_offset_in_event_time() -> None:
    event = parse_event(encoded())
    assert isinstance(event, Touch)
    # 10:00 at +01:00 is 09:00 UTC
    assert event.ts == (1772355600 * 1_000_000)


def test_action_is_optional() -> None:
    # SPEC §1: `action` is optional (absent = a plain touch); blank is absent
    for raw in (encoded(action=None), encoded(action="  ")):
        event = parse_event(raw)
        assert isinstance(event, Touch)
        assert event.action is None
    event = parse_event(encoded(action="Webinar Q&A"))  # "or other": any name
    assert isinstance(event, Touch)
    assert event.action == "Webinar Q&A"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"{not json", ("invalid_json", None)),
        (b"\xff\xfe\x00", ("invalid_json", None)),
        (b"[1, 2]", ("not_an_object", None)),
        (b"null", ("not_an_object", None)),
        (b'{"event_id": "x"}', ("missing_type", "type")),
        (encoded(type="page_view"), ("unknown_type", "type")),
        (encoded(campaign=None), ("missing_field", "campaign")),
        (encoded(action=17), ("invalid_field", "action")),
        (encoded(lead_id=None), ("missing_field", "lead_id")),
        (encoded(occurred_at="2026-03-01T10:00:00"), ("invalid_field", "occurred_at")),
        (encoded(occurred_at="yesterday"), ("invalid_field", "occurred_at")),
        (encoded(lead_id=17), ("invalid_field", "lead_id")),
        (encoded(event_id=""), ("invalid_field", "event_id")),
        (encoded(event_id="x" * 129), ("invalid_field", "event_id")),
        (encoded(campaign="c" * 257), ("invalid_field", "campaign")),
    ],
)
def test_rejections_have_stable_reasons(raw: bytes, expected: tuple[str, str | None]) -> None:
    assert reason(raw) == expected


def test_opportunity_limits() -> None:
    base = {
        "type": "opportunity_created",
        "event_id": "o1",
        "occurred_at": "2026-03-01T10:00:00Z",
        "opportunity_id": "o",
        "account_id": "a",
        "lead_ids": ["l1"],
        "business": "new_business",
        "arr": 1200.5,
    }
    assert isinstance(parse_event(json.dumps(base).encode()), OpportunityCreated)
    for change, expected in [
        ({"arr": -1}, ("invalid_field", "arr")),
        ({"lead_ids": []}, ("invalid_field", "lead_ids")),
        ({"business": "renewal"}, ("invalid_field", "business")),
        ({"currency": "usd"}, ("invalid_field", "currency")),
        ({"currency": "JPY"}, ("unknown_currency", "currency")),
    ]:
        assert reason(json.dumps({**base, **change}).encode()) == expected


def test_oversize_is_rejected_before_parsing() -> None:
    raw = encoded(campaign="x" * 100)
    assert reason(raw, max_bytes=len(raw) - 1) == ("oversize", None)
    assert isinstance(parse_event(raw, max_bytes=len(raw)), Touch)


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_never_raises_on_arbitrary_bytes(raw: bytes) -> None:
    result = parse_event(raw)
    assert isinstance(result, Rejection) and result.raw == raw and result.reason


@settings(max_examples=1000, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([*TOUCH, "arr", "lead_ids", "stage", "partner", "business"]),
        st.none() | st.integers() | st.floats() | st.text(max_size=20) | st.lists(st.text()),
    )
)
def test_never_raises_on_arbitrary_objects(fields: dict[str, object]) -> None:
    result = parse_event(json.dumps(fields).encode())
    assert isinstance(result, Rejection) or result.event_id


def test_an_instant_outside_the_calendar_in_utc_is_an_invalid_field() -> None:
    """9999-12-31T23:00-05:00 is year 10000 in UTC: no daily series day can name it
    (the parser fuzz found it crashing the integration series)."""
    raw = (
        b'{"type": "mql", "event_id": "e", "lead_id": "l",'
        b' "occurred_at": "9999-12-31T23:00:00-05:00"}'
    )
    rejection = parse_event(raw)
    assert isinstance(rejection, Rejection)
    assert (rejection.reason, rejection.field) == ("invalid_field", "occurred_at")
