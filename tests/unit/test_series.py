"""Daily series of every additive metric (SPEC §4.1), and windows over them.

The property: for every scope and every metric with a series, the days add
up to the running total, whatever the arrival order, duplicates or restarts
(a redelivery at the position first seen, as after a worker restart).  The
hand-computed cases put conversions on both sides of a quarter boundary,
under a fiscal year starting in February, and move or retract a conversion's
contribution with late events.  Days are offsets from 2026-01-01T00:00Z.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from datagen import SyntheticConfig, generate
from models.config import EngineConfig
from models.engine import Engine
from models.parse import parse_event
from models.periods import SERIES_METRICS, Calendar, Window, split_point, window_totals
from tests.unit.test_metrics import install
from tests.unit.test_properties import EXAMPLES, configs, events, parsed
from tests.unit.test_rules import camp, created, feed, mql, opp, ptnr, run, stage, touch

Q1, Q2, Q3 = (Calendar().period(f"2026Q{n}") for n in (1, 2, 3))


def series_sums(totals: dict[tuple[str, str], int]) -> dict[tuple[str, str], int]:
    """(scope, metric) → the sum of its series points."""
    out: dict[tuple[str, str], int] = {}
    for (scope, metric), value in totals.items():
        name, day = split_point(metric)
        if day is not None:
            out[(scope, name)] = out.get((scope, name), 0) + value
    return out


def assert_series_sum_to_totals(engine: Engine) -> None:
    sums = series_sums(engine.totals)
    for (scope, metric), value in engine.totals.items():
        if metric in SERIES_METRICS:
            assert sums.get((scope, metric), 0) == value, (scope, metric)
    for scope, metric in sums:
        assert metric in SERIES_METRICS, metric  # no series outside the documented set
        if not metric.startswith(("integrations.activations", "integrations.deactivations")):
            assert sums[(scope, metric)] == engine.totals.get((scope, metric), 0), (scope, metric)


@EXAMPLES
@given(raw=events(), config=configs, data=st.data())
def test_series_sum_to_running_totals_in_any_order(
    raw: list[dict[str, Any]], config: EngineConfig, data: st.DataObject
) -> None:
    items = parsed(raw)
    extra = data.draw(st.lists(st.sampled_from(items), max_size=6)) if items else []
    arrival = data.draw(st.permutations(items + extra))
    engine = Engine(config)
    positions: list[tuple[Any, int]] = []
    for position, item in enumerate(arrival, start=1):
        engine.apply(item, position)
        positions.append((item, position))
        assert_series_sum_to_totals(engine)
    # a restart: the tail is delivered again at the positions it was first seen at
    for item, position in positions[len(positions) // 2 :]:
        engine.apply(item, position)
    assert_series_sum_to_totals(engine)
    reference = Engine(config)
    reference.run(items)
    for key, value in reference.totals.items():
        if split_point(key[1])[1] is not None:
            assert engine.totals.get(key) == value, key  # every day as the batch oracle


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10**6), shuffle=st.sampled_from([0.0, 0.5, 1.0]))
def test_series_sum_to_totals_on_generated_files(seed: int, shuffle: float) -> None:
    """Generated streams (shuffled, duplicates, malformed lines), as `recompute` reads them."""
    items = generate(
        SyntheticConfig(seed=seed, leads=120, duplicates=0.05, shuffle=shuffle, invalid=0.02)
    )
    engine = Engine()
    engine.run(parse_event(i.encode() if isinstance(i, str) else orjson.dumps(i)) for i in items)
    assert engine.totals[("all", "dq.dead_letters")] > 0
    assert_series_sum_to_totals(engine)


def test_quarter_boundary_splits_by_utc_day() -> None:
    slack = ptnr("slack", "q")
    engine = run(
        [
            touch("t1", "A", 80, slack, action="registered"),
            touch("t2", "B", 80, slack, action="registered"),
            created("c1", "A", 89.99),  # 2026-03-31T23:45Z: Q1
            created("c2", "B", 90),  # 2026-04-01T00:00Z: Q2
            mql("m1", "A", 90.5),  # Q2
        ]
    )
    q1, q2 = window_totals(engine.totals, Q1), window_totals(engine.totals, Q2)
    for scope in ("all", "partner:slack", camp(slack)):
        assert engine.totals[(scope, "nb.leads.influenced@2026-03-31")] == 1
        assert engine.totals[(scope, "nb.leads.influenced@2026-04-01")] == 1
        assert q1[(scope, "nb.leads.influenced")] == 1
        assert q2[(scope, "nb.leads.influenced")] == 1
        assert (scope, "nb.mqls.influenced") not in q1
        assert q2[(scope, "nb.mqls.influenced")] == 1
        assert q1[(scope, "nb.leads.attributed")] == 1_000_000  # one whole conversion
    assert q1[("partner:slack", "leads.acquired")] == 1  # LC touchpoint is slack's
    assert q1[("partner:slack", "campaigns.registrations")] == 2  # both touches on day 80


def test_fiscal_year_starting_in_february() -> None:
    # FY2026 starts 2026-02-01: January 2026 is FY2025Q4, February FY2026Q1.
    feb = Calendar(start_month=2)
    engine = run(
        [
            touch("t1", "A", 0, ptnr("zoom", "f")),
            created("c1", "A", 30),  # 2026-01-31: FY2025Q4
            touch("t2", "B", 0, ptnr("zoom", "f")),
            created("c2", "B", 31),  # 2026-02-01: FY2026Q1
            touch("t3", "C", 0, ptnr("zoom", "f")),
            created("c3", "C", 119),  # 2026-04-30: FY2026Q1's last day
        ]
    )
    assert window_totals(engine.totals, feb.period("2025Q4"))[("all", "nb.leads.influenced")] == 1
    assert window_totals(engine.totals, feb.period("2026Q1"))[("all", "nb.leads.influenced")] == 2
    assert window_totals(engine.totals, feb.period("2026"))[("all", "nb.leads.influenced")] == 2
    calendar_q1 = window_totals(engine.totals, Calendar().period("2026Q1"))
    assert calendar_q1[("all", "nb.leads.influenced")] == 2  # January and February 1


def test_late_earlier_stage_retracts_an_s2_to_nothing() -> None:
    # S2 on day 80 (Q1), after the only touchpoint (day 70): counted in Q1.
    # A late S2 on day 10 moves the moment before any touchpoint: nothing is
    # influenced any more, so Q1 loses it and no other day gains it.
    slack = ptnr("slack", "r")
    engine = Engine()
    for raw in (
        touch("t1", "L", 70, slack),
        opp("o1", "O", 5, ["L"], arr=100),
        stage("s1", "O", 80, "S2"),
    ):
        feed(engine, raw)
    q1 = window_totals(engine.totals, Q1)
    assert q1[("partner:slack", "nb.s2.influenced")] == 1
    assert q1[("partner:slack", "nb.s2.influenced_arr")] == 10_000
    assert engine.totals[("all", "nb.s2.influenced@2026-03-22")] == 1  # day 80
    feed(engine, stage("s0", "O", 10, "S3"))
    assert not [key for key in engine.totals if key[1].startswith("nb.s2.")]
    assert ("all", "nb.s2.influenced") not in window_totals(engine.totals, Q1)


def test_arr_change_after_close_restates_the_conversion_days() -> None:
    # S2 on day 40 (Q1), won on day 100 (Q2), ARR changed on day 200 (Q3):
    # the S2 and the win keep their days with the new ARR; Q3 gets nothing.
    slack = ptnr("slack", "a")
    events = [
        touch("t1", "L", 1, slack),
        opp("o1", "O", 2, ["L"], arr=1000),
        stage("s2", "O", 40, "S2"),
        stage("w", "O", 100, "closed_won"),
    ]
    before = run(events)
    assert window_totals(before.totals, Q2)[("partner:slack", "nb.cw.influenced_arr")] == 100_000
    after = run([*events, stage("x", "O", 200, "closed_won", arr=1500)])
    q1, q2, q3 = (window_totals(after.totals, q) for q in (Q1, Q2, Q3))
    assert q1[("partner:slack", "nb.s2.influenced_arr")] == 150_000
    assert q1[("partner:slack", "nb.s2.attributed_arr")] == 150_000  # the only touchpoint
    assert q2[("partner:slack", "nb.cw.influenced_arr")] == 150_000
    assert q2[("partner:slack", "nb.cw.influenced")] == 1  # a repeated win counts once
    assert ("partner:slack", "nb.cw.influenced_arr") not in q3
    assert after.totals[("all", "nb.cw.influenced_arr@2026-04-11")] == 150_000  # day 100


def test_pipeline_and_performance_days() -> None:
    # created day 10, S2 day 20, lost day 50, then won day 95: the close is the win.
    events = [
        touch("t1", "L", 1, ptnr("zoom", "p")),
        opp("o1", "O", 10, ["L"], arr=500, source_partner="Stripe", referral_partner="zoom"),
        stage("s", "O", 20, "S2"),
        stage("l", "O", 50, "closed_lost"),
        stage("w", "O", 95, "closed_won"),
    ]
    totals = run(events).totals
    opened, won = "2026-01-11", "2026-04-06"
    for scope in ("all", "partner:stripe"):
        assert totals[(scope, f"pipeline.sourced_deals@{opened}")] == 1
        assert totals[(scope, f"pipeline.sourced_arr@{opened}")] == 50_000
        assert totals[(scope, f"pipeline.sourced_won_arr@{won}")] == 50_000
    assert totals[("partner:zoom", f"pipeline.referrals@{opened}")] == 1
    assert totals[("partner:zoom", f"perf.partner.won@{won}")] == 1
    assert totals[("partner:zoom", f"perf.partner.closed@{won}")] == 1
    assert totals[("partner:zoom", f"perf.partner.cycle_days@{won}")] == 85  # day 95 - day 10


def test_engagement_and_reengagement_days() -> None:
    slack = ptnr("slack", "e")
    totals = run(
        [
            touch("t1", "L", 5, slack, action="registered"),  # registered: day 5
            touch("t2", "L", 3, slack, action="registered"),  # earlier: day 3 counts
            touch("t3", "L", 4, slack, action="attended"),
            created("c", "L", 6),
            touch("t4", "L", 200, ptnr("slack", "back")),  # 194 days quiet: re-engaged
        ]
    ).totals
    assert totals[("partner:slack", "campaigns.registrations@2026-01-04")] == 1
    assert ("partner:slack", "campaigns.registrations@2026-01-06") not in totals
    assert totals[("partner:slack", "campaigns.attendees@2026-01-05")] == 1
    assert totals[("partner:slack", "leads.reengaged@2026-07-20")] == 1  # day 200


def test_integrations_keep_their_series() -> None:
    totals = run([install("i", 3, "crm", "hubspot")]).totals
    assert totals[("partner:hubspot", "integrations.installs@2026-01-04")] == 1


def test_windows_are_inclusive_days() -> None:
    window = Window(date(2026, 3, 31), date(2026, 4, 1))
    assert date(2026, 3, 31) in window and "2026-04-01" in window
    assert date(2026, 4, 2) not in window
