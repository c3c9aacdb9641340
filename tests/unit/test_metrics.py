"""One test per metric of docs/metrics.md beyond the attribution funnel.

Every expectation is worked out by hand in the comments (the engine is only
driven through `parse_event` -> `Engine`).  Days are offsets from
2026-01-01T00:00Z (day 0 = 2026-01-01); money is in cents.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import orjson
import pytest

from datagen import SyntheticConfig, generate
from models.config import DAY_US, EngineConfig
from models.derived import by_scope, derive
from models.engine import Engine
from models.events import to_micros
from models.output import render
from models.parse import parse_event
from tests.unit.test_rules import (
    T0,
    Raw,
    at,
    created,
    dg,
    opp,
    ptnr,
    registry,
    run,
    stage,
    touch,
    value,
)

EPOCH_DAY_2026 = (date(2026, 1, 1) - date(1970, 1, 1)).days


def event(kind: str, eid: str, day: float, **fields: Any) -> Raw:
    return {"type": kind, "event_id": eid, "occurred_at": at(day), **fields}


def install(eid: str, day: float, name: str, partner: str, account: str = "A") -> Raw:
    return event(
        "integration_installed", eid, day, account_id=account, integration=name, partner=partner
    )


def uninstall(eid: str, day: float, name: str, partner: str, account: str = "A") -> Raw:
    return event(
        "integration_uninstalled", eid, day, account_id=account, integration=name, partner=partner
    )


def used(eid: str, day: float, name: str, account: str = "A", **extra: Any) -> Raw:
    return event("integration_used", eid, day, account_id=account, integration=name, **extra)


def snapshot(eid: str, day: float, account: str, arr: float, **extra: Any) -> Raw:
    return event("account_snapshot", eid, day, account_id=account, arr=arr, **extra)


def derived_of(engine: Engine, as_of_day: float) -> dict[str, dict[str, float | None]]:
    return derive(by_scope(engine.totals), to_micros(T0) + int(as_of_day * DAY_US))


# --- integrations ----------------------------------------------------------------


def test_installs_uninstalls_activity_flows_and_headline() -> None:
    slack, zoom = "integration:slack/slack-app", "integration:zoom/zap"
    events = [
        install("i1", 0.5, "Slack-App", "slack"),
        used("u1", 1.2, "slack-app"),  # partner from its install
        used("u2", 5.9, "slack-app"),
        uninstall("x1", 10.5, "slack-app", "slack"),
        used("u3", 12, "slack-app"),  # while uninstalled: not activity
        install("i2", 20.1, "slack-app", "slack"),
        used("u4", 21.3, "slack-app", partner="slack"),
        install("i3", 2, "zap", "zoom"),  # never used: installed, not active
    ]
    engine = run(events)
    assert value(engine, "all", "integrations.installs") == 3
    assert value(engine, "partner:slack", "integrations.installs") == 2
    assert value(engine, slack, "integrations.installs") == 2
    assert value(engine, zoom, "integrations.installs") == 1
    assert value(engine, "partner:slack", "integrations.uninstalls") == 1
    assert value(engine, "partner:zoom", "integrations.uninstalls") == 0
    # daily install series: days 0, 2 and 20
    assert value(engine, "all", "integrations.installs@2026-01-01") == 1
    assert value(engine, "all", "integrations.installs@2026-01-03") == 1
    assert value(engine, "all", "integrations.installs@2026-01-21") == 1
    assert value(engine, slack, "integrations.uninstalls@2026-01-11") == 1
    # Uses on days 1 and 5 are active from day 1 until the uninstall on day 10;
    # the use on day 12 is while uninstalled; after the reinstall on day 20 the
    # use on day 21 is active for 30 days: days 21..50.
    assert value(engine, slack, "integrations.activations@2026-01-02") == 1  # day 1
    assert value(engine, slack, "integrations.deactivations@2026-01-11") == 1  # day 10
    assert value(engine, slack, "integrations.activations@2026-01-22") == 1  # day 21
    assert value(engine, slack, "integrations.deactivations@2026-02-21") == 1  # day 51
    assert value(engine, "all", "integrations.activations@2026-01-13") == 0  # day 12
    # As of the latest event (day 21): slack-app active, zap not.
    assert value(engine, "all", "integrations.active") == 1
    assert value(engine, slack, "integrations.active") == 1
    assert value(engine, "partner:zoom", "integrations.active") == 0
    assert value(engine, "all", "accounts.depth.1") == 1


def test_activity_window_is_configurable_and_usage_before_any_install_counts() -> None:
    # No install event: usage implies an install before the stream began.
    events = [used("u1", 3, "crm", partner="hubspot"), used("u2", 9.5, "crm")]
    engine = run(events, EngineConfig(activity_days=5))
    # days 3..7 from u1, 9..13 from u2: two runs
    crm = "integration:hubspot/crm"
    assert value(engine, crm, "integrations.activations@2026-01-04") == 1
    assert value(engine, crm, "integrations.deactivations@2026-01-09") == 1
    assert value(engine, crm, "integrations.activations@2026-01-10") == 1
    assert value(engine, crm, "integrations.deactivations@2026-01-15") == 1
    assert value(engine, "partner:hubspot", "integrations.active") == 1
    assert value(engine, "all", "integrations.installs") == 0


def test_depth_buckets_and_cohorts() -> None:
    events = [
        # B: no integrations, one live snapshot: depth 0, below the threshold (2)
        snapshot("b1", 1, "B", 1000, health_score=80.5, churned=False),
        # C: two integrations used on days 1 and 2; live on day 3 (depth 2:
        # above), churned on day 40 (its latest event; nothing active then).
        used("c1", 1, "one", account="C", partner="slack"),
        used("c2", 2, "two", account="C", partner="zoom"),
        snapshot("c3", 3, "C", 2000, health_score=60),
        snapshot("c4", 40, "C", 0, churned=True),
        # D: two integrations used on day 5, live snapshot on day 6: above.
        used("d1", 5, "one", account="D", partner="slack"),
        used("d2", 5, "two", account="D", partner="zoom"),
        snapshot("d3", 6, "D", 3000, health_score=90, churned=False),
        # E: five integrations, no snapshot: counted by depth, not in a cohort
        *(used(f"e{i}", 1, f"int-{i}", account="E", partner="slack") for i in range(5)),
    ]
    engine = run(events)
    assert value(engine, "all", "accounts.depth.0") == 2  # B, C (as of day 40)
    assert value(engine, "all", "accounts.depth.2") == 1  # D
    assert value(engine, "all", "accounts.depth.4+") == 1  # E
    assert value(engine, "all", "cohort.below.accounts") == 1
    assert value(engine, "all", "cohort.below.arr") == 100_000
    assert value(engine, "all", "cohort.below.churned") == 0
    assert value(engine, "all", "cohort.below.health_sum") == 8050
    assert value(engine, "all", "cohort.below.health_count") == 1
    assert value(engine, "all", "cohort.above.accounts") == 2  # C and D
    assert value(engine, "all", "cohort.above.churned") == 1  # C
    assert value(engine, "all", "cohort.above.arr") == 300_000  # D only: C's ARR is lost
    assert value(engine, "all", "cohort.above.health_sum") == 6000 + 9000  # C keeps its 60
    assert value(engine, "all", "cohort.above.health_count") == 2

    everyone = derived_of(engine, 40)["all"]
    assert everyone["cohort.below.churn_rate"] == 0
    assert everyone["cohort.below.retention"] == 1
    assert everyone["cohort.below.acv"] == 100_000
    assert everyone["cohort.below.health_avg"] == pytest.approx(80.5)
    assert everyone["cohort.below.ltv"] is None  # nobody churned: undefined
    assert everyone["cohort.above.churn_rate"] == 0.5
    assert everyone["cohort.above.retention"] == 0.5
    assert everyone["cohort.above.acv"] == 300_000  # one live account
    assert everyone["cohort.above.health_avg"] == 75
    assert everyone["cohort.above.ltv"] == 600_000  # 300 000 / 0.5


def test_depth_threshold_is_configurable() -> None:
    events = [used("u", 1, "one", account="C", partner="slack"), snapshot("s", 2, "C", 10)]
    assert value(run(events), "all", "cohort.below.accounts") == 1
    assert value(run(events, EngineConfig(depth_threshold=1)), "all", "cohort.above.accounts") == 1


# --- campaigns -------------------------------------------------------------------


def test_campaign_engagement_reach_spend_goal_and_rates() -> None:
    launch = dg("launch")  # 2026-09 period, channel paid-social; the registry names zoom
    scopes = (f"campaign:{launch}", "partner:zoom", "channel:paid-social", "all")
    entry = registry("r1", launch, 0, partner="zoom")
    entry.update(spend=1500.5, goal={"metric": "nb.leads.influenced", "target": 4})
    topped_up = dict(entry, event_id="r2", occurred_at=at(3), spend=2000)
    events = [
        entry,
        topped_up,  # the later entry is in force: spend 2000.00
        event("campaign_stats", "st2", 20, campaign=launch, impressions=5000, clicks=40),
        event("campaign_stats", "st1", 10, campaign=launch, impressions=1000, clicks=10),
        touch("t1", "L1", 1, launch, action="registered"),
        touch("t2", "L1", 2, launch, action="attended"),
        touch("t3", "L1", 3, launch, action="Attended"),  # same lead again: once
        created("c1", "L1", 4),
        touch("t4", "L2", 1, launch, action="Registered"),
        created("c2", "L2", 5),
        touch("t6", "L4", 1, launch),  # a plain touch (no action): not a registration
        touch("t5", "L3", 1, launch, action="clicked"),  # not a registration
        opp("o", "O", 6, ["L1"], arr=5000),
        stage("w", "O", 8, "closed_won"),
    ]
    engine = run(events)
    for scope in scopes:
        assert value(engine, scope, "campaigns.registrations") == 2
        assert value(engine, scope, "campaigns.attendees") == 1
        assert value(engine, scope, "campaigns.spend") == 200_000
        assert value(engine, scope, "campaigns.impressions") == 5000  # latest by event time
        assert value(engine, scope, "campaigns.clicks") == 40
        assert value(engine, scope, "nb.leads.influenced") == 2
        assert value(engine, scope, "nb.cw.attributed_arr") == 500_000  # the only touchpoint
    # every scope of the campaign owns the goal; its period sits in the campaign's scope
    sept, october = EPOCH_DAY_2026 + 243, EPOCH_DAY_2026 + 273  # Jan..Aug = 243 days
    for scope in scopes:
        assert value(engine, scope, "goal.target:nb.leads.influenced") == 4
        assert value(engine, scope, f"goal.of:nb.leads.influenced:{launch}") == 4
    assert value(engine, scopes[0], "goal.start:nb.leads.influenced") == 4 * sept
    assert value(engine, scopes[0], "goal.end:nb.leads.influenced") == 4 * october
    assert value(engine, "partner:zoom", "goal.start:nb.leads.influenced") == 0

    # 2026-09-16 is day 243 + 15 of 2026: half of September elapsed
    rates = derived_of(engine, 243 + 15)[f"campaign:{launch}"]
    assert rates["campaigns.attendance_rate"] == 0.5  # 1 / 2
    assert rates["campaigns.ctr"] == 0.008  # 40 / 5000
    assert rates["campaigns.conversion_rate"] == 1  # 2 influenced leads / 2 registrations
    assert rates["campaigns.cost_per_influenced_lead"] == 100_000  # 200 000 / 2
    assert rates["campaigns.roi"] == 1.5  # (500 000 - 200 000) / 200 000
    # both leads were created in January, outside the September goal period
    assert rates["goal.attainment:nb.leads.influenced"] == 0  # 0 / 4
    assert rates["goal.pace:nb.leads.influenced"] == 0  # 0 / (4 * 0.5)
    before = derived_of(engine, 200)[f"campaign:{launch}"]
    assert before["goal.pace:nb.leads.influenced"] is None  # the period has not started


def test_conversion_rate_falls_back_to_clicks_and_goal_units() -> None:
    ads = dg("ads")
    entry = registry("r", ads, 0)
    entry["goal"] = {
        "metric": "nb.leads.attributed",
        "target": 2.5,  # conversions, as `recompute --json` shows them
        "period_start": "2026-01-01T12:00:00+00:00",  # rounded down to day 0
        "period_end": "2026-01-10T06:00:00+00:00",  # rounded up to day 10
    }
    events = [
        entry,
        event("campaign_stats", "s", 1, campaign=ads, impressions=100, clicks=4),
        touch("t", "L", 1, ads, action="clicked"),
        created("c", "L", 2),
    ]
    engine = run(events)
    scope = f"campaign:{ads}"
    assert value(engine, scope, "goal.target:nb.leads.attributed") == 2_500_000  # millionths
    assert value(engine, scope, "goal.start:nb.leads.attributed") == 2_500_000 * EPOCH_DAY_2026
    assert value(engine, scope, "goal.end:nb.leads.attributed") == 2_500_000 * (EPOCH_DAY_2026 + 10)
    rates = derived_of(engine, 5)[scope]
    assert rates["campaigns.conversion_rate"] == 0.25  # 1 influenced lead / 4 clicks
    assert "campaigns.roi" not in rates  # no spend
    assert rates["goal.attainment:nb.leads.attributed"] == 0.4  # 1 / 2.5
    assert rates["goal.pace:nb.leads.attributed"] == 0.8  # 1 / (2.5 * 5/10)
    assert render(engine.totals, {})["metrics"][scope]["goal.target:nb.leads.attributed"] == 2.5


# --- partner performance ----------------------------------------------------------


def test_partner_involved_win_rate_and_cycle_beside_others() -> None:
    events = [
        # O1: slack touchpoint before close, won after 10.5 days -> 10 whole days
        touch("t1", "L", 1, ptnr("slack", "a")),
        opp("o1", "O1", 2, ["L"]),
        stage("w1", "O1", 12.5, "closed_won"),
        # O2: no touches, sourced by hubspot, lost after 30 days
        opp("o2", "O2", 0, ["X"], source_partner="hubspot"),
        stage("l2", "O2", 30, "closed_lost"),
        # O3: non-partner touch, won after 5 days
        touch("t3", "M", 0, dg("m")),
        opp("o3", "O3", 0, ["M"]),
        stage("w3", "O3", 5, "closed_won"),
        # O4: lost after 7 days, no touches
        opp("o4", "O4", 0, ["N"]),
        stage("l4", "O4", 7, "closed_lost"),
        # O5: open with a partner touchpoint: not closed, not counted
        touch("t5", "Q", 0, ptnr("zoom", "q")),
        opp("o5", "O5", 1, ["Q"]),
        # O6: its only partner touch comes after the close: not partner-involved
        opp("o6", "O6", 0, ["P"]),
        stage("w6", "O6", 3, "closed_won"),
        touch("t6", "P", 10, ptnr("slack", "p")),
    ]
    engine = run(events)
    assert value(engine, "all", "perf.partner.closed") == 2  # O1, O2
    assert value(engine, "all", "perf.partner.won") == 1
    assert value(engine, "all", "perf.partner.cycle_days") == 10 + 30
    assert value(engine, "all", "perf.other.closed") == 3  # O3, O4, O6
    assert value(engine, "all", "perf.other.won") == 2
    assert value(engine, "all", "perf.other.cycle_days") == 5 + 7 + 3
    assert value(engine, "partner:slack", "perf.partner.cycle_days") == 10
    assert value(engine, "partner:hubspot", "perf.partner.closed") == 1
    assert value(engine, "partner:hubspot", "perf.partner.won") == 0
    assert value(engine, "partner:zoom", "perf.partner.closed") == 0

    rates = derived_of(engine, 30)
    everyone, slack, hubspot = rates["all"], rates["partner:slack"], rates["partner:hubspot"]
    assert everyone["perf.partner.win_rate"] == 0.5
    assert everyone["perf.other.win_rate"] == pytest.approx(2 / 3)
    assert everyone["perf.win_rate_lift"] == pytest.approx(0.5 - 2 / 3)
    assert everyone["perf.partner.cycle_days_avg"] == 20  # 40 / 2
    assert everyone["perf.other.cycle_days_avg"] == 5  # 15 / 3
    assert everyone["perf.cycle_days_delta"] == 15
    assert slack["perf.win_rate_lift"] == pytest.approx(1 - 2 / 3)
    assert slack["perf.cycle_days_delta"] == 5  # 10 - 5
    assert hubspot["perf.win_rate_lift"] == pytest.approx(-2 / 3)
    assert hubspot["perf.cycle_days_delta"] == 25  # 30 - 5


def test_lift_is_undefined_without_other_deals() -> None:
    engine = run(
        [
            opp("o", "O", 0, ["X"], source_partner="slack"),
            stage("w", "O", 4, "closed_won"),
        ]
    )
    slack = derived_of(engine, 4)["partner:slack"]
    assert slack["perf.partner.win_rate"] == 1
    assert slack["perf.win_rate_lift"] is None
    assert slack["perf.cycle_days_delta"] is None


# --- partner side: NPS and referrals we sent --------------------------------------


def test_partner_nps() -> None:
    scores = [("slack", 10), ("slack", 9), ("slack", 8), ("slack", 6), ("slack", 0)]
    scores += [("zoom", 9), ("none", 2)]  # "none" names no partner: ignored
    engine = run(
        [
            event("partner_feedback", f"f{i}", i, partner=partner, score=score)
            for i, (partner, score) in enumerate(scores)
        ]
    )
    assert value(engine, "partner:slack", "nps.responses") == 5
    assert value(engine, "partner:slack", "nps.promoters") == 2
    assert value(engine, "partner:slack", "nps.detractors") == 2
    assert value(engine, "all", "nps.responses") == 6
    # each answer on its own day (f0 on 2026-01-01, f1 the next day, ...)
    slack_days = {
        "nps.responses": ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04", "2026-01-05"],
        "nps.promoters": ["2026-01-01", "2026-01-02"],
        "nps.detractors": ["2026-01-04", "2026-01-05"],
    }
    points = {m: n for (s, m), n in engine.totals.items() if s == "partner:slack"}
    for metric, days in slack_days.items():
        assert {m: n for m, n in points.items() if m.startswith(f"{metric}@")} == {
            f"{metric}@{day}": 1 for day in days
        }
    rates = derived_of(engine, 7)
    assert rates["partner:slack"]["nps"] == 0  # 40 % - 40 %
    assert rates["partner:zoom"]["nps"] == 100
    assert rates["all"]["nps"] == pytest.approx(100 / 6)  # (3 - 2) / 6


def test_referrals_we_sent() -> None:
    def sent(eid: str, ref: str, partner: str) -> Raw:
        return event("referral_sent", eid, 0, referral_id=ref, partner=partner)

    def outcome(eid: str, ref: str, day: float, status: str, **extra: Any) -> Raw:
        return event("referral_outcome", eid, day, referral_id=ref, status=status, **extra)

    events = [
        sent("s1", "r1", "slack"),
        outcome("a1", "r1", 2, "accepted", arr=100),
        outcome("w1", "r1", 10, "won", arr=250.5),  # the latest ARR counts
        sent("s2", "r2", "slack"),
        outcome("w2", "r2", 3, "won"),  # won without an accepted event: accepted too
        sent("s3", "r3", "zoom"),
        outcome("a3", "r3", 1, "accepted"),
        outcome("l3", "r3", 5, "lost"),
        outcome("w4", "r4", 1, "won", arr=999),  # never sent: names no partner
        sent("s5", "r5", "zoom"),
        outcome("w5", "r5", 1, "won", arr=50),
        outcome("l5", "r5", 2, "lost"),  # a win is not undone
    ]
    engine = run(events)
    expected = {
        "partner:slack": (2, 2, 2, 25_050),
        "partner:zoom": (2, 2, 1, 5_000),
        "all": (4, 4, 3, 30_050),
    }
    for scope, (n_sent, accepted, won, arr) in expected.items():
        assert value(engine, scope, "referrals.sent") == n_sent
        assert value(engine, scope, "referrals.accepted") == accepted
        assert value(engine, scope, "referrals.won") == won
        assert value(engine, scope, "referrals.won_arr") == arr
    # sent on the referral_sent, accepted on the first acceptance or win, won (and
    # its ARR, the latest) on the first win
    days = {
        "partner:slack": {
            "referrals.sent@2026-01-01": 2,
            "referrals.accepted@2026-01-03": 1,  # r1 accepted on day 2
            "referrals.accepted@2026-01-04": 1,  # r2 won on day 3
            "referrals.won@2026-01-04": 1,
            "referrals.won@2026-01-11": 1,  # r1 won on day 10
            "referrals.won_arr@2026-01-11": 25_050,
        },
        "partner:zoom": {
            "referrals.sent@2026-01-01": 2,
            "referrals.accepted@2026-01-02": 2,  # r3 and r5 on day 1
            "referrals.won@2026-01-02": 1,
            "referrals.won_arr@2026-01-02": 5_000,
        },
    }
    for scope, points in days.items():
        held = {m: n for (s, m), n in engine.totals.items() if s == scope and "@" in m}
        assert held == points


# --- data quality on the extension topics ------------------------------------------


def test_extension_duplicates_and_late_events_are_counted_not_applied() -> None:
    first = install("i1", 5, "crm", "hubspot")
    engine = run([first, dict(first), install("i0", 1, "crm", "hubspot")])
    assert value(engine, "all", "integrations.installs") == 2
    assert value(engine, "all", "dq.duplicates_ignored") == 1
    assert value(engine, "all", "dq.late_events") == 1  # i0 is older than i1


# --- the JSON document -------------------------------------------------------------


def test_render_puts_daily_series_apart_and_omits_zeros() -> None:
    totals = {
        ("all", "integrations.installs"): 2,
        ("all", "integrations.installs@2026-01-02"): 1,
        ("all", "integrations.installs@2026-01-01"): 1,
        ("all", "integrations.uninstalls@2026-01-01"): 0,
        ("all", "cohort.below.health_sum"): 8050,
    }
    document = render(totals, {})
    assert document["metrics"] == {
        "all": {"integrations.installs": 2, "cohort.below.health_sum": 80.5}
    }
    assert document["series"] == {
        "all": {"integrations.installs": {"2026-01-01": 1, "2026-01-02": 1}}
    }


# --- the generator exercises them all ------------------------------------------------

EXERCISED = [
    "integrations.installs",
    "integrations.uninstalls",
    "integrations.active",
    "accounts.depth.0",
    "accounts.depth.1",
    "accounts.depth.2",
    "cohort.below.accounts",
    "cohort.below.churned",
    "cohort.above.accounts",
    "cohort.above.health_count",
    "campaigns.registrations",
    "campaigns.attendees",
    "campaigns.impressions",
    "campaigns.clicks",
    "campaigns.spend",
    "perf.partner.closed",
    "perf.partner.won",
    "perf.other.closed",
    "nps.promoters",
    "nps.detractors",
    "referrals.accepted",
    "referrals.won",
    "referrals.won_arr",
    "leads.reengaged",
]


def test_synthetic_stream_exercises_every_metric_family() -> None:
    items = generate(SyntheticConfig(seed=3, leads=400))
    engine = Engine()
    engine.run(parse_event(orjson.dumps(item)) for item in items if not isinstance(item, str))
    everyone = {metric: v for (scope, metric), v in engine.totals.items() if scope == "all"}
    assert [m for m in EXERCISED if not everyone.get(m)] == []
    assert any(m.startswith("integrations.activations@") for m in everyone)
    goals = {m for (scope, m) in engine.totals if scope.startswith("partner:")}
    assert any(m.startswith("goal.of:") for m in goals)
