"""The fiscal calendar and windows (SPEC §4.1), with hand-written dates."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.periods import Calendar, Window, bucketed, split_point, window_totals

D = date.fromisoformat


def test_calendar_periods_with_a_january_start() -> None:
    cal = Calendar()
    assert cal.period("2026Q3") == Window(D("2026-07-01"), D("2026-09-30"))
    assert cal.period("2026q1") == Window(D("2026-01-01"), D("2026-03-31"))
    assert cal.period("2026-02") == Window(D("2026-02-01"), D("2026-02-28"))
    assert cal.period("2024-02") == Window(D("2024-02-01"), D("2024-02-29"))
    assert cal.period("2026") == Window(D("2026-01-01"), D("2026-12-31"))


def test_fiscal_year_starting_in_february() -> None:
    # SPEC §4.1: fiscal year N starts in calendar year N; 2026Q1 is February-April 2026.
    cal = Calendar(start_month=2)
    assert cal.period("2026Q1") == Window(D("2026-02-01"), D("2026-04-30"))
    assert cal.period("2026Q4") == Window(D("2026-11-01"), D("2027-01-31"))
    assert cal.period("2026") == Window(D("2026-02-01"), D("2027-01-31"))
    assert cal.period("2026-07") == Window(D("2026-07-01"), D("2026-07-31"))  # months stay
    assert cal.fiscal_quarter(D("2027-01-15")) == (2026, 4)
    assert cal.fiscal_quarter(D("2026-01-31")) == (2025, 4)
    assert cal.fiscal_quarter(D("2026-02-01")) == (2026, 1)


def test_bad_periods_are_refused() -> None:
    for text in ("2026Q5", "2026-13", "26Q1", "Q3", "2026-Q3x", ""):
        with pytest.raises(ValueError):
            Calendar().period(text)
    with pytest.raises(ValueError):
        Calendar(start_month=13)


def test_previous_period() -> None:
    cal = Calendar()
    assert cal.previous(cal.period("2026Q3")) == cal.period("2026Q2")
    assert cal.previous(cal.period("2026Q1")) == cal.period("2025Q4")
    assert cal.previous(cal.period("2026-03")) == cal.period("2026-02")  # 28 days, not 31
    assert cal.previous(cal.period("2026")) == cal.period("2025")
    feb = Calendar(start_month=2)
    assert feb.previous(feb.period("2026Q1")) == Window(D("2025-11-01"), D("2026-01-31"))
    # a custom window: the same number of days just before
    assert cal.previous(Window(D("2026-09-10"), D("2026-09-19"))) == Window(
        D("2026-08-31"), D("2026-09-09")
    )


def test_window_totals_sum_days_and_drop_metrics_without_series() -> None:
    metrics = {
        ("all", "nb.cw.influenced"): 3,
        ("all", "nb.cw.influenced@2026-06-30"): 1,
        ("all", "nb.cw.influenced@2026-07-01"): 1,
        ("all", "nb.cw.influenced@2026-09-30"): 1,
        ("partner:slack", "campaigns.spend"): 500,  # a registry value: no series
    }
    q3 = Calendar().period("2026Q3")
    out = window_totals(metrics, q3)
    assert out[("all", "nb.cw.influenced")] == 2
    assert ("partner:slack", "campaigns.spend") not in out
    assert out[("all", "nb.cw.influenced@2026-06-30")] == 1  # the full series stays
    assert window_totals(metrics, None) == metrics


def test_buckets() -> None:
    cal = Calendar(start_month=2)
    points = [("2026-01-31", 1), ("2026-02-01", 2), ("2026-02-02", 4), ("2026-05-01", 8)]
    assert bucketed(points, cal, "month", None) == {
        "2026-01-01": 1,
        "2026-02-01": 6,
        "2026-05-01": 8,
    }
    assert bucketed(points, cal, "quarter", None) == {
        "2025-11-01": 1,
        "2026-02-01": 6,
        "2026-05-01": 8,
    }
    # 2026-02-02 is a Monday; 2026-02-01 a Sunday (week of Monday 2026-01-26)
    assert bucketed(points, cal, "week", Window(D("2026-01-31"), D("2026-02-28"))) == {
        "2026-01-26": 3,
        "2026-02-02": 4,
    }


def test_split_point() -> None:
    assert split_point("nb.s2.influenced@2026-07-01") == ("nb.s2.influenced", "2026-07-01")
    assert split_point("nb.s2.influenced") == ("nb.s2.influenced", None)


@given(st.integers(1, 12), st.dates(date(1990, 1, 1), date(2200, 12, 31)))
def test_every_day_is_in_exactly_the_quarter_the_calendar_names(start: int, day: date) -> None:
    cal = Calendar(start)
    year, quarter = cal.fiscal_quarter(day)
    assert day in cal.quarter(year, quarter)
    others = [cal.quarter(y, q) for y in (year - 1, year, year + 1) for q in range(1, 5)]
    assert sum(day in w for w in others) == 1
    assert day in cal.year(year)
