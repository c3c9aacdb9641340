"""Goals counted in their own period (SPEC §4.1), computed by hand.

Days are offsets from 2026-01-01T00:00Z (day 0); 2026Q2 is days 90-180
(April 1 to June 30, 91 days), July 1 is day 181.
"""

from __future__ import annotations

from typing import Any

import pytest

from models.config import DAY_US, EngineConfig
from models.derived import by_scope, derive, goal_member, goal_progress
from models.engine import Engine
from models.events import to_micros
from models.periods import Calendar, day_number
from tests.unit.test_rules import T0, Raw, created, registry, run, touch

Q2_GOAL = "2026Q2_ptnr_slack_webinar_emea_spring"  # period from the name
JULY_GOAL = "2026Q3_ptnr_slack_webinar_emea_july"  # period from the registry entry
STANDING = "Slack Standing Offer"  # no convention, no period: the running total
EPOCH_2026 = day_number(T0.date())


def goal_entry(eid: str, campaign: str, target: float, **period: str) -> Raw:
    entry = registry(eid, campaign, 0, partner="slack")
    entry["goal"] = {"metric": "nb.leads.influenced", "target": target, **period}
    return entry


def lead(n: int, campaign: str, day: float) -> list[Raw]:
    """A lead touched by `campaign` one day before its creation on `day`."""
    return [touch(f"t{n}", f"L{n}", day - 1, campaign), created(f"c{n}", f"L{n}", day)]


def as_of(day: float) -> int:
    return to_micros(T0) + int(day * DAY_US)


def progress(engine: Engine, day: float, **options: Any) -> dict[str, Any]:
    return goal_progress(by_scope(engine.totals), as_of(day), **options)


SPRING = [goal_entry("g1", Q2_GOAL, 2), *lead(1, Q2_GOAL, 10), *lead(2, Q2_GOAL, 100)]


def test_a_q2_goal_counts_only_q2_conversions() -> None:
    # Leads of the campaign on day 10 (Q1) and day 100 (Q2): only day 100 counts.
    engine = run(SPRING)
    goal = progress(engine, 135.5)[f"campaign:{Q2_GOAL.lower()}"]["nb.leads.influenced"]
    assert (goal.target, goal.actual) == (2, 1)
    assert goal.attainment == 0.5
    assert goal.pace == 1.0  # 45.5 of 91 days elapsed: 1 / (2 * 0.5)
    # Q3 conversions of the same campaign change nothing
    later = run([*SPRING, *lead(3, Q2_GOAL, 200)])
    assert later.totals[(f"campaign:{Q2_GOAL.lower()}", "nb.leads.influenced")] == 3
    after = progress(later, 135.5)[f"campaign:{Q2_GOAL.lower()}"]["nb.leads.influenced"]
    assert (after.actual, after.attainment, after.pace) == (1, 0.5, 1.0)
    assert progress(later, 300)["partner:slack"]["nb.leads.influenced"].pace == 0.5  # over
    assert progress(later, 50)["partner:slack"]["nb.leads.influenced"].pace is None  # not begun


def test_scopes_above_campaigns_sum_each_goal_over_its_own_period() -> None:
    july = goal_entry(
        "g2", JULY_GOAL, 4, period_start="2026-07-01T00:00:00Z", period_end="2026-08-01T00:00:00Z"
    )
    engine = run([*SPRING, july, *lead(3, JULY_GOAL, 185), *lead(4, JULY_GOAL, 190)])
    goals = progress(engine, 196.5)
    # the July goal: 2 of 4; the Q2 goal: 1 of 2 (the day-10 lead is outside Q2)
    july_goal = goals[f"campaign:{JULY_GOAL.lower()}"]["nb.leads.influenced"]
    assert (july_goal.actual, july_goal.pace) == (2, 1.0)  # half of July: 2 / (4 * 0.5)
    for scope in ("partner:slack", "partners", "channel:webinar", "all"):
        goal = goals[scope]["nb.leads.influenced"]
        assert (goal.target, goal.actual) == (6, 3)
        assert goal.attainment == 0.5
        # due by day 196.5: Q2's 2 in full + July's 4 * 15.5/31 = 4 in all; 3 / 4
        assert goal.pace == 0.75
        assert goal.campaigns == (Q2_GOAL.lower(), JULY_GOAL.lower())
    rates = derive(by_scope(engine.totals), as_of(196.5))["partner:slack"]
    assert rates["goal.attainment:nb.leads.influenced"] == 0.5
    assert rates["goal.pace:nb.leads.influenced"] == 0.75
    # a window keeps the goals whose period overlaps it
    q3 = progress(engine, 196.5, window=Calendar().period("2026Q3"))
    assert q3["partner:slack"]["nb.leads.influenced"].campaigns == (JULY_GOAL.lower(),)
    assert q3["partner:slack"]["nb.leads.influenced"].target == 4


def test_a_goal_without_a_period_uses_the_running_total_and_has_no_pace() -> None:
    engine = run([goal_entry("g", STANDING, 5), *lead(1, STANDING, 10), *lead(2, STANDING, 200)])
    goal = progress(engine, 100)["partner:slack"]["nb.leads.influenced"]
    assert (goal.actual, goal.attainment, goal.paced) == (2, 0.4, False)
    rates = derive(by_scope(engine.totals), as_of(100))["partner:slack"]
    assert rates["goal.attainment:nb.leads.influenced"] == 0.4
    assert "goal.pace:nb.leads.influenced" not in rates
    in_2026 = progress(engine, 100, window=Calendar().period("2026"))
    assert in_2026["partner:slack"]["nb.leads.influenced"] == goal  # listed in every window


def test_campaign_name_periods_follow_the_fiscal_calendar() -> None:
    # With fiscal years starting in February, 2026Q1 is February 1 to May 1 (exclusive).
    config = EngineConfig(fiscal_year_start=2)
    engine = run([goal_entry("g", "2026Q1_ptnr_slack_webinar_emea_f", 3)], config)
    scope = "campaign:2026q1_ptnr_slack_webinar_emea_f"
    assert engine.totals[(scope, "goal.start:nb.leads.influenced")] == 3 * (EPOCH_2026 + 31)
    assert engine.totals[(scope, "goal.end:nb.leads.influenced")] == 3 * (EPOCH_2026 + 120)


def test_campaign_names_with_at_signs_stay_out_of_the_series() -> None:
    name = "slack@summit 100%"
    engine = run([goal_entry("g", name, 1), *lead(1, name, 5)])
    member = goal_member("nb.leads.influenced", name)
    assert "@" not in member
    assert engine.totals[("partner:slack", member)] == 1
    goal = progress(engine, 5)["partner:slack"]["nb.leads.influenced"]
    assert (goal.campaigns, goal.actual) == ((name,), 1)


@pytest.mark.parametrize("metric", ["nb.leads.influenced@2026-01-01", "goal.target:x"])
def test_goals_on_names_that_cannot_be_metrics_are_left_out(metric: str) -> None:
    entry = registry("g", STANDING, 0, partner="slack")
    entry["goal"] = {"metric": metric, "target": 1}
    engine = run([entry])
    assert not [k for k in engine.totals if k[1].startswith("goal.")]


def test_report_goal_rows_use_goal_progress() -> None:
    from models.report import build_report

    engine = run([*SPRING, *lead(3, Q2_GOAL, 200)])
    document = build_report(engine.totals, as_of(135.5))
    rows = {r["label"]: r["values"] for r in document["tables"]["goals"]["rows"]}
    assert rows["partner:slack"] == {
        "metric": "nb.leads.influenced",
        "target": 2,
        "actual": 1,
        "goal.attainment": 0.5,
        "goal.pace": 1.0,
    }
