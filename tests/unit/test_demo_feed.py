"""The demo's feed: six months of history up to "now", then a live feed stamped with the clock."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from functools import cache
from itertools import islice

import orjson

from models.config import DEFAULT_NAMING
from models.events import Campaign, CampaignStats, Event, Touch
from models.parse import Rejection, parse_event
from models.periods import Calendar, Window
from streams.demo import applied_count, demo_feed

NOW = datetime(2026, 11, 15, 13, 30, tzinfo=UTC)
"""Mid-November: the current quarter is 2026Q4 (Oct-Dec) with a January fiscal start."""
NAMING = re.compile(DEFAULT_NAMING)


@cache
def history(start_month: int = 1) -> tuple[Event | Rejection, ...]:
    lines, _ = demo_feed(5, lambda: NOW, Calendar(start_month))
    return tuple(parse_event(raw) for raw in lines)


def valid(items: tuple[Event | Rejection, ...]) -> list[Event]:
    return [item for item in items if not isinstance(item, Rejection)]


def goal_periods(items: tuple[Event | Rejection, ...], calendar: Calendar) -> set[Window]:
    """SPEC §4.1: the registry entry's period_start/period_end, else the name's period."""
    periods = set()
    for entry in valid(items):
        if not isinstance(entry, Campaign) or entry.goal is None:
            continue
        goal = entry.goal
        if goal.period_start is not None and goal.period_end is not None:
            periods.add(Window(goal.period_start.date(), goal.period_end.date()))
        elif match := NAMING.match(entry.campaign.lower()):
            periods.add(calendar.period(match["period"]))
    return periods


def test_history_covers_the_six_months_up_to_now() -> None:
    items = history()
    assert any(isinstance(item, Rejection) for item in items)  # dead letters move too
    moments = sorted(event.occurred_at for event in valid(items))
    assert len(moments) > 20_000
    # now - 183 days = 2026-05-16; the world starts at its midnight
    assert moments[0] == datetime(2026, 5, 16, tzinfo=UTC)
    assert NOW - timedelta(days=1) < moments[-1] <= NOW
    assert all(event.event_id.startswith("h-") for event in valid(items))


def test_history_names_and_sets_goals_for_the_current_and_previous_quarters() -> None:
    items = history()
    names = {e.campaign.lower() for e in valid(items) if isinstance(e, Touch | Campaign)}
    periods = {m["period"] for name in names if (m := NAMING.match(name))}
    assert periods & {"2026q4", "2026-10", "2026-11"}
    assert periods & {"2026q3", "2026-07", "2026-08", "2026-09"}
    goals = goal_periods(items, Calendar())
    assert Window(date(2026, 10, 1), date(2026, 12, 31)) in goals
    assert Window(date(2026, 7, 1), date(2026, 9, 30)) in goals
    registry = [e for e in valid(items) if isinstance(e, Campaign) and e.goal is not None]
    # some goals take their period from the name alone, some from the registry
    assert any(e.goal is not None and e.goal.period_start is None for e in registry)
    assert any(e.goal is not None and e.goal.period_start is not None for e in registry)


def test_history_follows_the_fiscal_calendar() -> None:
    """February start: mid-November is in FY2026 Q4 = November to January."""
    goals = goal_periods(history(2), Calendar(2))
    assert Window(date(2026, 11, 1), date(2027, 1, 31)) in goals
    assert Window(date(2026, 8, 1), date(2026, 10, 31)) in goals


class Ticking:
    """A clock that moves one second each time it is read."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def test_live_events_carry_the_clock() -> None:
    clock = Ticking()
    _, live = demo_feed(5, clock)
    start = clock.now
    events = valid(tuple(parse_event(raw) for raw in islice(live, 3000)))
    assert len(events) > 2900
    assert all(e.event_id.startswith("r0-") for e in events)
    # each new event is stamped as it is taken: after the history, one reading each
    firsts: dict[str, datetime] = {}
    for event in events:
        firsts.setdefault(event.event_id, event.occurred_at)
    stamps = list(firsts.values())
    assert start < stamps[0] and stamps[-1] <= clock.now
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)


def test_live_campaigns_leave_the_history_goals_in_force() -> None:
    """About 1 % of live touches land on the history's campaigns touched in its
    last 14 days; the live feed's own campaigns never take a history name (no
    registry entry or stats of theirs replaces the history's) and have no goal."""
    lines, live = demo_feed(5, Ticking())
    history = valid(tuple(parse_event(raw) for raw in lines))
    known = {e.campaign.lower() for e in history if isinstance(e, Touch | Campaign)}
    recent = {
        e.campaign.lower()
        for e in history
        if isinstance(e, Touch) and e.occurred_at >= NOW - timedelta(days=15)
    }
    events = valid(tuple(parse_event(raw) for raw in islice(live, 30_000)))
    touches = [e for e in events if isinstance(e, Touch)]
    landed = [t for t in touches if t.campaign.lower() in known]
    assert landed and {t.campaign.lower() for t in landed} <= recent
    assert 0.005 < len(landed) / len(touches) < 0.03
    registry = [e for e in events if isinstance(e, Campaign)]
    assert registry and all(e.goal is None for e in registry)
    assert all(e.campaign.lower() not in known for e in registry)
    stats = [e for e in events if isinstance(e, CampaignStats)]
    assert stats and all(e.campaign.lower() not in known for e in stats)
    assert any(e.campaign == "webinar-ai-live" for e in registry + touches)


def test_live_duplicates_repeat_the_first_delivery() -> None:
    _, live = demo_feed(5, Ticking())
    seen: dict[str, bytes] = {}
    repeats = 0
    for raw in islice(live, 6000):
        if not raw.startswith(b"{") or not raw.endswith(b"}"):
            continue
        event_id = orjson.loads(raw).get("event_id")
        if isinstance(event_id, str) and event_id in seen:
            assert seen[event_id] == raw
            repeats += 1
        elif isinstance(event_id, str):
            seen[event_id] = raw
    assert repeats > 10


def epoch_of(lines: Iterator[bytes]) -> set[str]:
    return {e.event_id.split("-", 1)[0] for e in valid(tuple(parse_event(raw) for raw in lines))}


def test_live_stream_continues_with_fresh_ids_after_an_epoch() -> None:
    """An epoch is 1000 leads: well under 30 000 events; ids of the next are `r1-`."""
    _, live = demo_feed(5, Ticking())
    assert epoch_of(islice(live, 100)) == {"r0"}
    assert "r1" in epoch_of(islice(live, 30_000))


def test_applied_count_sums_next_offsets_of_the_topics_asked() -> None:
    offsets = {("leads", 0): 9, ("leads", 1): 0, ("opportunities", 0): 4, ("internal", 0): 99}
    assert applied_count(offsets, ["leads", "opportunities"]) == 10 + 1 + 5
    assert applied_count({}, ["leads"]) == 0
