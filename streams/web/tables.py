"""The dashboard's tables as documents: one definition for the page, its JSON and its CSV.

Each table is built here from the stored totals (and daily series) seen
through a window, so the page, ``/api/table?name=…`` and its ``format=csv``
show the same numbers (docs/api.md, "Tables").  Column sets come from
`models.report` (the `report` command's), rates from `models.derived`.

Values are in display units: money in the reporting currency (cents / 100,
two decimals), counts as integers, `nb.leads.attributed` in conversions,
rates as fractions.  A windowed table also carries each row's values for the
previous period (`Calendar.previous`), for the change the page shows.

Windows and metrics without a daily series: levels and registry values
(spend, impressions and clicks, goal targets, integration depth, cohorts)
are shown as they are now in every window; any other metric that has no
series yet is ``None`` in a window (unknown), never a misleading all-time value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

from models.config import EngineConfig
from models.derived import GoalProgress, by_scope, campaign_goal, derive, goal_progress
from models.events import EPOCH
from models.output import render_value
from models.partners import NameParser
from models.periods import Window, split_point, window_totals, without_points
from models.report import COHORT, DEPTHS, GOALS, SCORECARD, Column, funnel, rate
from models.subject import MetricKey

Value = int | float | str | None
Totals = Mapping[MetricKey, int]

LEVELS: Final = (
    "campaigns.spend",
    "campaigns.impressions",
    "campaigns.clicks",
    "goal.",
    "integrations.active",
    "cohort.",
    "accounts.",
)
"""Metric name prefixes that are levels or registry values: no series, shown as of now."""

_DERIVED_INPUTS: Final = {
    "campaigns.attendance_rate": ("campaigns.attendees", "campaigns.registrations"),
    "campaigns.conversion_rate": ("nb.leads.influenced", "campaigns.registrations"),
    "campaigns.cost_per_influenced_lead": ("nb.leads.influenced",),
    "campaigns.roi": ("nb.cw.attributed_arr", "ex.cw.attributed_arr"),
    "perf.partner.win_rate": ("perf.partner.won", "perf.partner.closed"),
    "perf.win_rate_lift": ("perf.partner.won", "perf.partner.closed", "perf.other.closed"),
    "perf.partner.cycle_days_avg": ("perf.partner.cycle_days", "perf.partner.closed"),
    "perf.cycle_days_delta": ("perf.partner.cycle_days", "perf.other.cycle_days"),
    "nps": ("nps.responses",),
}
"""The flow metrics each derived column is computed from: in a window it is unknown
(None) while any of them has no daily series, rather than a rate of zeros."""

_SHORT: Final = {
    "leads.influenced": "Leads",
    "mqls.influenced": "MQLs",
    "s2.influenced": "S2s",
    "cw.influenced": "Won",
    "s2.influenced_arr": "S2 infl. ARR",
    "cw.influenced_arr": "Won infl. ARR",
    "s2.attributed_arr": "S2 attr. ARR",
    "cw.attributed_arr": "Won attr. ARR",
    "leads.attributed": "Attr. leads",
}


@dataclass(frozen=True, slots=True)
class WebColumn:
    """A column as the page shows it: a short one-line label and a group header."""

    column: Column
    label: str
    group: str = ""


def _nbex() -> tuple[WebColumn, ...]:
    out: list[WebColumn] = []
    for prefix, group, leads in (("nb", "New Business", True), ("ex", "Expansion", False)):
        for column in funnel(prefix, leads):
            name = column.key.partition(".")[2]
            out.append(WebColumn(column, _SHORT[name], group))
    return tuple(out)


def _flat(columns: Sequence[Column]) -> tuple[WebColumn, ...]:
    return tuple(WebColumn(c, c.label.replace("-\n", "").replace("\n", " ")) for c in columns)


CAMPAIGN_COLUMNS: Final = _flat(
    (
        Column("partner", "Partner", "text"),
        Column("campaigns.registrations", "Registrations"),
        Column("campaigns.attendees", "Attendees"),
        Column("campaigns.impressions", "Impressions"),
        Column("campaigns.clicks", "Clicks"),
        Column("nb.leads.influenced", "Influenced leads"),
        Column("nb.s2.influenced", "S2s"),
        Column("nb.cw.influenced", "Won"),
        Column("campaigns.spend", "Spend", "cents"),
        rate("campaigns.ctr", "CTR"),
        rate("campaigns.attendance_rate", "Attendance"),
        rate("campaigns.conversion_rate", "Conversion"),
        rate("campaigns.cost_per_influenced_lead", "Cost per lead", "cents"),
        rate("campaigns.roi", "ROI"),
    )
)
GOAL_COLUMNS: Final = _flat((GOALS[0], Column("period", "Goal period", "text"), *GOALS[1:]))
DQ_COLUMNS: Final = _flat((Column("value", "Count"),))
TITLES: Final = {
    "nbex": "New Business / Expansion by partner",
    "pipeline": SCORECARD["pipeline"][0],
    "performance": SCORECARD["performance"][0],
    "campaigns": "Campaigns",
    "goals": "Goals and pace",
    "cohorts": "Accounts below vs at/above the integration depth threshold",
    "depth": "Accounts by depth of active integrations",
    "dq": "Data quality",
}
NAMES: Final = tuple(TITLES)
OWN_PERIODS: Final = frozenset({"goals", "dq"})
"""Tables whose values do not depend on the window (so have no previous period): goals
count over their own periods, data-quality counters have no series."""


@dataclass(frozen=True, slots=True)
class View:
    """The stored totals seen through a window, with what a cell needs to know."""

    metrics: dict[str, dict[str, int]]
    derived: dict[str, dict[str, float | None]]
    series: frozenset[str]
    """Metric names that have a daily series somewhere (a window can sum them)."""
    window: Window | None
    scopes: frozenset[str]
    """Every scope of the totals: a row stays (with zeros) in a window where it had nothing."""
    goals: Mapping[str, Mapping[str, GoalProgress]]
    """Scope → goal metric → progress, of the goals whose period overlaps the window."""
    goal_periods: Mapping[str, Mapping[str, tuple[float, float] | None]]
    """A campaign's goal period per metric, in day numbers [start, end)."""

    @property
    def windowed(self) -> bool:
        return self.window is not None

    def stored(self, scope: str, key: str) -> Value:
        """A stored metric in display units; None when a window cannot know it."""
        if self.windowed and key not in self.series and not key.startswith(LEVELS):
            return None
        raw = self.metrics.get(scope, {}).get(key, 0)
        return display(key, raw)

    def cell(self, scope: str, web: WebColumn) -> Value:
        column = web.column
        if column.derived:
            inputs = _DERIVED_INPUTS.get(column.key, ())
            if self.windowed and any(m not in self.series for m in inputs):
                return None
            return derived_value(self.derived.get(scope, {}).get(column.key), column)
        return self.stored(scope, column.key)


def display(metric: str, raw: int) -> int | float:
    """A stored integer in display units (money: reporting currency, two decimals)."""
    if is_money(metric):
        return round(raw / 100, 2)
    return render_value(metric, raw)


def is_money(metric: str) -> bool:
    """Whether a stored metric is money (integer cents of the reporting currency)."""
    return metric.endswith(("_arr", ".spend", ".arr"))


def derived_value(value: float | None, column: Column) -> float | None:
    """A derived value in display units (a money rate, such as cost per lead, in currency)."""
    return round(value / 100, 2) if value is not None and column.unit == "cents" else value


def view(totals: Totals, window: Window | None, as_of: int, *, windowed: bool = True) -> View:
    """`totals` (running totals and series points) as seen through `window`.

    Goals are measured on the full totals, each over its own period, and
    listed when their period overlaps `window`; `windowed` False keeps the
    other values all-time (a table whose values have no window).
    """
    series = frozenset(split_point(m)[0] for _, m in totals if split_point(m)[1] is not None)
    if window is None or not windowed:
        seen = without_points(totals)
    else:
        seen = without_points(window_totals(totals, window))
        seen.update({k: v for k, v in totals.items() if k[1].startswith(LEVELS)})
    metrics = by_scope(seen)
    full = by_scope(totals)
    goals = goal_progress(full, as_of, window)
    periods = {
        scope: {metric: campaign_goal(full[scope], metric).period for metric in progress}
        for scope, progress in goals.items()
        if scope.startswith("campaign:")
    }
    scopes = frozenset(scope for scope, _ in totals)
    derived = derive(metrics, as_of, goal_progress(full, as_of))
    return View(metrics, derived, series, window if windowed else None, scopes, goals, periods)


def build(name: str, totals: Totals, window: Window | None, as_of: int) -> dict[str, Any]:
    """Table `name` (one of `NAMES`) over `window` (None: all time), with the
    previous period's values when windowed (`previous` is the caller's window)."""
    seen = view(totals, window, as_of, windowed=name not in OWN_PERIODS)
    columns, rows = _table(name, seen)
    return {
        "name": name,
        "title": TITLES[name],
        "columns": [
            {"key": c.column.key, "label": c.label, "group": c.group, "unit": _unit(c.column)}
            for c in columns
        ],
        "rows": rows,
    }


def with_previous(current: dict[str, Any], previous: dict[str, Any]) -> dict[str, Any]:
    """`current` with each row's values of the previous period under ``previous``."""
    before = {row["key"]: row["values"] for row in previous["rows"]}
    for row in current["rows"]:
        row["previous"] = before.get(row["key"], {})
    return current


_NAMES: Final = NameParser(EngineConfig().naming)


def partner_of(scope: str) -> str | None:
    """The partner a campaign scope names by the naming convention (else None).

    The dashboard only has the Redis keys, so a partner given to a campaign by
    its registry entry or by its touches' `partner` field is not known here.
    """
    kind, _, name = scope.partition(":")
    return _NAMES.parse(name).partner if kind == "campaign" else None


def only_partner(table: dict[str, Any], partner: str) -> dict[str, Any]:
    """`table` restricted to one partner: its own row, and the rows of its campaigns
    (a goals row belongs to the scope in its label)."""
    scope = f"partner:{partner}"

    def mine(row: Mapping[str, Any]) -> bool:
        owner = row["label"] if table["name"] == "goals" else row["key"]
        return bool(owner == scope or partner_of(owner) == partner)

    table["rows"] = [row for row in table["rows"] if mine(row)]
    return table


def _unit(column: Column) -> str:
    return "money" if column.unit == "cents" else column.unit


Rows = list[dict[str, Any]]


def _rows(v: View, scopes: Sequence[str], columns: Sequence[WebColumn]) -> Rows:
    return [
        {"key": s, "label": _label(s), "values": {c.column.key: v.cell(s, c) for c in columns}}
        for s in scopes
    ]


def _scopes(v: View, kind: str) -> list[str]:
    return sorted(s for s in v.scopes if s.startswith(kind + ":"))


def _partner_rows(v: View) -> list[str]:
    """`partners` (the deduplicated any-partner total, SPEC §4) first, then each partner."""
    return [*(["partners"] if "partners" in v.scopes else []), *_scopes(v, "partner")]


def _label(scope: str) -> str:
    return scope.partition(":")[2] or scope


def _table(name: str, v: View) -> tuple[Sequence[WebColumn], Rows]:
    builders: dict[str, Callable[[View], tuple[Sequence[WebColumn], Rows]]] = {
        "nbex": lambda v: (NBEX, _rows(v, ["all", *_partner_rows(v)], NBEX)),
        "pipeline": lambda v: (PIPELINE, _rows(v, _partner_rows(v), PIPELINE)),
        "performance": lambda v: (PERFORMANCE, _rows(v, _partner_rows(v), PERFORMANCE)),
        "campaigns": _campaigns,
        "goals": _goals,
        "cohorts": _cohorts,
        "depth": lambda v: (DEPTH, _rows(v, ["all"], DEPTH)),
        "dq": _dq,
    }
    return builders[name](v)


NBEX: Final = _nbex()
PIPELINE: Final = _flat(SCORECARD["pipeline"][1])
PERFORMANCE: Final = _flat(SCORECARD["performance"][1])
DEPTH: Final = _flat(tuple(Column(f"accounts.depth.{d}", f"{d} active") for d in DEPTHS))


def _campaigns(v: View) -> tuple[Sequence[WebColumn], Rows]:
    """Every campaign, most influenced leads first, with the partner its name names."""
    scopes = sorted(
        _scopes(v, "campaign"),
        key=lambda s: (-v.metrics.get(s, {}).get("nb.leads.influenced", 0), s),
    )
    rows = _rows(v, scopes, CAMPAIGN_COLUMNS)
    for row in rows:
        row["values"]["partner"] = partner_of(row["key"]) or ""
    return CAMPAIGN_COLUMNS, rows


def _dq(v: View) -> tuple[Sequence[WebColumn], Rows]:
    """The data-quality counters of scope `all` (running totals: they have no series)."""
    counters = {m: n for m, n in v.metrics.get("all", {}).items() if m.startswith("dq.")}
    base = ["dq.dead_letters", "dq.campaign_name_invalid", "dq.duplicates_ignored"]
    base.append("dq.late_events")
    names = base + sorted(set(counters) - set(base))
    rows = [
        {"key": m, "label": _DQ_LABELS.get(m, m), "values": {"value": counters.get(m, 0)}}
        for m in names
    ]
    return DQ_COLUMNS, rows


_DQ_LABELS: Final = {
    "dq.dead_letters": "Dead letters (bad input, in partnerpulse.dlq)",
    "dq.campaign_name_invalid": "Campaign names off the naming convention",
    "dq.duplicates_ignored": "Duplicate events ignored",
    "dq.late_events": "Late events (older than the newest of their key)",
}


def metric_label(metric: str) -> str:
    """A metric's name as the page's columns call it (the raw name when no column does)."""
    for column in (*NBEX, *CAMPAIGN_COLUMNS, *PIPELINE, *PERFORMANCE):
        if column.column.key == metric:
            return f"{column.group} {column.label}".strip()
    return metric


def _cohorts(v: View) -> tuple[Sequence[WebColumn], Rows]:
    columns = _flat(COHORT)
    values, derived = v.metrics.get("all", {}), v.derived.get("all", {})
    rows = []
    for side, label in (("below", "below threshold"), ("above", "at/above threshold")):
        row: dict[str, Value] = {"accounts": values.get(f"cohort.{side}.accounts", 0)}
        for c in columns[1:]:
            value = derived.get(f"cohort.{side}.{c.column.key}")
            row[c.column.key] = derived_value(value, c.column)
        rows.append({"key": side, "label": label, "values": row})
    return columns, rows


def _goals(v: View) -> tuple[Sequence[WebColumn], Rows]:
    """Every goal whose period overlaps the window (all goals without one), grouped
    by scope: partners first, then campaigns, then the rest.  Actual, attainment
    and pace are the goal's own (`models.derived.goal_progress`: each campaign's
    goal over its own period), whatever the window."""
    rows: Rows = []
    order = ("partner", "campaign", "channel", "partners", "all")
    for scope in sorted(v.goals, key=lambda s: (_rank(s, order), s)):
        for metric, progress in sorted(v.goals[scope].items()):
            row: dict[str, Value] = {
                "metric": metric_label(metric),
                "unit": "money" if is_money(metric) else "count",  # of target and actual
                "period": _period_text(v.goal_periods.get(scope, {}).get(metric), progress),
                "target": display(metric, progress.target),
                "actual": display(metric, progress.actual),
                "goal.attainment": progress.attainment,
                "goal.pace": progress.pace if progress.paced else None,
            }
            rows.append({"key": f"{scope}|{metric}", "label": scope, "values": row})
    return GOAL_COLUMNS, rows


def _period_text(period: tuple[float, float] | None, progress: GoalProgress) -> str:
    """A campaign's goal period; above campaigns, each goal counts over its own period."""
    if period is not None:
        start, end = math.floor(period[0]), math.ceil(period[1])  # [start, end) in days
        first = EPOCH.date() + timedelta(days=start)
        return f"{first} to {EPOCH.date() + timedelta(days=max(start, end - 1))}"
    if len(progress.campaigns) > 1 or progress.paced:
        return "each campaign goal's own period"
    return "no period (running total)"


def _rank(scope: str, order: Sequence[str]) -> int:
    kind = scope.partition(":")[0]
    return order.index(kind) if kind in order else len(order)
