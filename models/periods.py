"""Days, windows and the fiscal calendar (SPEC §4.1).

Every additive metric has a daily series: the value contributed by the
conversions or activities whose moment falls on that UTC day, stored as the
metric `<metric>@YYYY-MM-DD` beside the running total.  A window is an
inclusive range of UTC days; a period (month, fiscal quarter, fiscal year)
is a window of the fiscal calendar.  Readers (`recompute --from/--to`, the
report, the dashboard API) all go through these functions, so a quarter means
the same days everywhere.

Fiscal year N starts on the first day of the start month in calendar year N
(with a February start, `2026Q1` is February-April 2026): the convention of
Salesforce's "fiscal year based on the starting month".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from itertools import product
from typing import Final, Literal

from models.config import DAY_US

MetricKey = tuple[str, str]
"""(scope, metric), e.g. `("partner:slack", "nb.cw.attributed_arr")`; a series point's
metric is `<metric>@<day>`.  Defined here, below models.subject, which re-exports it."""

SERIES_MARK: Final = "@"
"""Separates a metric from its day in a series point's name: `nb.cw.influenced@2026-09-14`."""

Bucket = Literal["day", "week", "month", "quarter"]

EPOCH_DAY: Final = date(1970, 1, 1)

SERIES_METRICS: Final = frozenset(
    [
        "nb.leads.influenced",
        "nb.mqls.influenced",
        "nb.leads.attributed",
        *map(".".join, product(("nb", "ex"), ("s2", "cw"), ("influenced", "influenced_arr"))),
        *map(".".join, product(("nb", "ex"), ("s2", "cw"), ("attributed_arr",))),
        *map(".".join, product(("perf",), ("partner", "other"), ("won", "closed", "cycle_days"))),
        "pipeline.referrals",
        "pipeline.sourced_deals",
        "pipeline.sourced_arr",
        "pipeline.sourced_won_arr",
        "leads.acquired",
        "leads.reengaged",
        "campaigns.registrations",
        "campaigns.attendees",
        "integrations.installs",
        "integrations.uninstalls",
        "integrations.activations",
        "integrations.deactivations",
        "nps.responses",
        "nps.promoters",
        "nps.detractors",
        "referrals.sent",
        "referrals.accepted",
        "referrals.won",
        "referrals.won_arr",
    ]
)
"""Every metric with a daily series (SPEC §4.1).  The others are levels (active
integrations, cohorts), registry values (spend, targets, reach) or counters
without a moment of their own (data quality); a windowed reader leaves them
out.  `integrations.activations`/`deactivations` exist only as series.  NPS
answers and the referrals we sent are activities with a day (a partner
manager reviews "this quarter's NPS"), so they have series too (2026-12-02)."""

_PERIOD = re.compile(r"^(?P<year>\d{4})(?:(?:-(?P<month>\d{1,2}))|(?:[qQ](?P<quarter>[1-4])))?$")


@lru_cache(maxsize=2**16)
def series_point(metric: str, day: date | str) -> str:
    """The metric name of `metric`'s point on `day`: one string per point, shared by
    every contribution that holds it (a lead's contribution keeps about twenty)."""
    return f"{metric}{SERIES_MARK}{day if isinstance(day, str) else day.isoformat()}"


@lru_cache(maxsize=8192)
def day_name(day: int) -> str:
    """`YYYY-MM-DD` of a UTC day number (days since 1970-01-01)."""
    return (EPOCH_DAY + timedelta(days=day)).isoformat()


def day_of(ts: int) -> str:
    """`YYYY-MM-DD`: the UTC day of an event time in microseconds (a series point's day)."""
    return day_name(ts // DAY_US)


def day_number(day: date) -> int:
    """Days since 1970-01-01 (inverse of `day_name`)."""
    return (day - EPOCH_DAY).days


def split_point(metric: str) -> tuple[str, str | None]:
    """(metric, day) of a series point's name; (metric, None) for a running total."""
    name, mark, day = metric.partition(SERIES_MARK)
    return (name, day) if mark else (metric, None)


@dataclass(frozen=True, slots=True, order=True)
class Window:
    """Inclusive UTC days `[first, last]`."""

    first: date
    last: date

    def __post_init__(self) -> None:
        if self.last < self.first:
            raise ValueError(f"a window ends before it starts: {self.first} > {self.last}")

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def __contains__(self, day: object) -> bool:
        if isinstance(day, str):
            day = date.fromisoformat(day)
        return isinstance(day, date) and self.first <= day <= self.last

    def previous(self) -> Window:
        """The window of the same length just before this one.

        For a whole month, quarter or year of the calendar the caller should
        prefer `Calendar.previous`, which respects unequal month lengths.
        """
        last = self.first - timedelta(days=1)
        return Window(last - timedelta(days=self.days - 1), last)


@dataclass(frozen=True, slots=True)
class Calendar:
    """The fiscal calendar: the month fiscal years start in (1 = January)."""

    start_month: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.start_month <= 12:
            raise ValueError(f"fiscal year start month must be 1..12, not {self.start_month}")

    # --- periods -------------------------------------------------------------

    def month(self, year: int, month: int) -> Window:
        first = date(year, month, 1)
        return Window(first, _add_months(first, 1) - timedelta(days=1))

    def quarter(self, year: int, quarter: int) -> Window:
        """Fiscal quarter `quarter` (1-4) of fiscal year `year`."""
        if not 1 <= quarter <= 4:
            raise ValueError(f"quarter must be 1..4, not {quarter}")
        first = _add_months(date(year, self.start_month, 1), 3 * (quarter - 1))
        return Window(first, _add_months(first, 3) - timedelta(days=1))

    def year(self, year: int) -> Window:
        """Fiscal year `year` (it starts in calendar year `year`)."""
        first = date(year, self.start_month, 1)
        return Window(first, _add_months(first, 12) - timedelta(days=1))

    def period(self, text: str) -> Window:
        """`2026-07` (a month), `2026Q3` (a fiscal quarter) or `2026` (a fiscal year)."""
        match = _PERIOD.match(text.strip())
        if match is None:
            raise ValueError(f"not a period (2026-07, 2026Q3 or 2026): {text!r}")
        year = int(match["year"])
        if match["month"] is not None:
            month = int(match["month"])
            if not 1 <= month <= 12:
                raise ValueError(f"not a month: {text!r}")
            return self.month(year, month)
        if match["quarter"] is not None:
            return self.quarter(year, int(match["quarter"]))
        return self.year(year)

    def fiscal_quarter(self, day: date) -> tuple[int, int]:
        """(fiscal year, quarter) that `day` falls in."""
        months = (day.year * 12 + day.month - 1) - self.start_month + 1
        year, month_index = divmod(months, 12)
        return year, month_index // 3 + 1

    def quarter_of(self, day: date) -> Window:
        return self.quarter(*self.fiscal_quarter(day))

    def previous(self, window: Window) -> Window:
        """The period before `window`: the previous month, quarter or year when
        `window` is one (a quarter's predecessor is the whole quarter before,
        not the same number of days), else the same number of days before."""
        for months in (12, 3, 1):
            if _spans_months(window, months) and self._aligned(window, months):
                first = _add_months(window.first, -months)
                return Window(first, window.first - timedelta(days=1))
        return window.previous()

    def _aligned(self, window: Window, months: int) -> bool:
        """Whether `window` starts on a boundary of the calendar's `months`-long periods."""
        if months == 1:
            return True
        offset = (window.first.month - self.start_month) % 12
        return offset % months == 0

    # --- buckets -------------------------------------------------------------

    def bucket(self, day: date, size: Bucket) -> date:
        """The first day of the `size` bucket containing `day` (weeks start on Monday)."""
        if size == "day":
            return day
        if size == "week":
            return day - timedelta(days=day.weekday())
        if size == "month":
            return day.replace(day=1)
        return self.quarter_of(day).first


def window_totals(metrics: Mapping[MetricKey, int], window: Window | None) -> dict[MetricKey, int]:
    """The metrics as seen through `window`: each metric that has a series is the
    sum of its days in the window, metrics without a series are left out, and
    the series points themselves stay.  `window` None returns `metrics` as is."""
    if window is None:
        return dict(metrics)
    out: dict[MetricKey, int] = {}
    for (scope, metric), value in metrics.items():
        name, day = split_point(metric)
        if day is None:
            continue
        out[(scope, metric)] = value
        if day in window:
            out[(scope, name)] = out.get((scope, name), 0) + value
    return {key: value for key, value in out.items() if value}


def with_totals(metrics: Mapping[MetricKey, int]) -> dict[MetricKey, int]:
    """`metrics` with every series point also added into its running total.

    Contributions and deltas carry a metric that has a series as its points
    only; the totals are derived here (the engine) and in sinks/apply.lua
    (Redis), so the days of a metric always add up to its total.
    """
    out = dict(metrics)
    for (scope, metric), value in metrics.items():
        mark = metric.find(SERIES_MARK)
        if mark >= 0:
            total = (scope, metric[:mark])
            out[total] = out.get(total, 0) + value
    return {key: value for key, value in out.items() if value}


def without_points(metrics: Mapping[MetricKey, int]) -> dict[MetricKey, int]:
    """The running totals alone: `metrics` less its series points."""
    return {key: value for key, value in metrics.items() if SERIES_MARK not in key[1]}


def bucketed(
    points: Iterable[tuple[str, int]], calendar: Calendar, size: Bucket, window: Window | None
) -> dict[str, int]:
    """(day, value) series points summed per bucket (first day of each), within `window`."""
    out: dict[str, int] = {}
    for day_text, value in points:
        day = date.fromisoformat(day_text)
        if window is not None and day not in window:
            continue
        key = calendar.bucket(day, size).isoformat()
        out[key] = out.get(key, 0) + value
    return dict(sorted((k, v) for k, v in out.items() if v))


def _add_months(day: date, months: int) -> date:
    """The same day-of-month (here always the 1st) `months` later (or earlier)."""
    index = day.year * 12 + day.month - 1 + months
    return day.replace(year=index // 12, month=index % 12 + 1)


def _spans_months(window: Window, months: int) -> bool:
    """Whether `window` is exactly `months` whole months from a first of the month."""
    if window.first.day != 1:
        return False
    return _add_months(window.first, months) - timedelta(days=1) == window.last
