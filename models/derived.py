"""Rates, averages and ratios, derived from the stored integer metrics.

Only additive integers are stored (sums and counts per scope); every ratio
is computed here, by readers, from one scope's numerators and denominators
(and, for the partner-versus-others comparison, the `all` scope).  One
function for the `report` command and the dashboard, so they cannot disagree.

Units: rates and ratios are fractions (0.25 is 25 %), money is in cents,
durations in days, NPS in points (-100 to 100), health in points (0-100).
A value is present when its denominator is non-zero; it is `None` when the
inputs exist but the ratio is undefined (LTV without churn, pace before the
goal period starts, a lift with nothing to compare to).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TypeAlias
from urllib.parse import unquote

from models.config import DAY_US
from models.output import unit_of
from models.periods import SERIES_MARK, Window, day_number, split_point
from models.subject import MetricKey

Derived: TypeAlias = dict[str, float | None]
ScopeMetrics: TypeAlias = Mapping[str, int]


def by_scope(totals: Mapping[MetricKey, int]) -> dict[str, dict[str, int]]:
    """Totals as scope → metric → value; daily series points stay, as `<metric>@<day>`
    (goal progress reads the campaigns' series)."""
    out: dict[str, dict[str, int]] = {}
    for (scope, metric), value in totals.items():
        if value:
            out.setdefault(scope, {})[metric] = value
    return out


def derive(
    metrics: Mapping[str, ScopeMetrics],
    as_of: int,
    goals: Mapping[str, Mapping[str, GoalProgress]] | None = None,
) -> dict[str, Derived]:
    """Every derived metric of every scope; `as_of` (event-time microseconds) dates goal pace.

    `metrics` is `by_scope` of the totals, series points included: goal
    attainment and pace need the goal campaigns' series (`goal_progress`).
    A reader that shows `metrics` through a window passes the `goals` it
    measured on the full totals instead.
    """
    everyone = metrics.get("all", {})
    goals = goal_progress(metrics, as_of) if goals is None else goals
    out: dict[str, Derived] = {}
    for scope, values in metrics.items():
        derived: Derived = {}
        campaign_rates(values, derived)
        for metric, progress in goals.get(scope, {}).items():
            derived[f"goal.attainment:{metric}"] = progress.attainment
            if progress.paced:
                derived[f"goal.pace:{metric}"] = progress.pace
        performance(values, everyone, derived)
        net = get(values, "nps.promoters") - get(values, "nps.detractors")
        ratio(derived, "nps", 100 * net, get(values, "nps.responses"))
        for side in ("below", "above"):
            cohort(values, side, derived)
        if derived:
            out[scope] = derived
    return out


def get(values: ScopeMetrics, metric: str) -> int:
    return values.get(metric, 0)


def ratio(out: Derived, name: str, numerator: float, denominator: float) -> None:
    """Set `name` to the ratio when the denominator is non-zero, else leave it out."""
    if denominator:
        out[name] = numerator / denominator


def campaign_rates(values: ScopeMetrics, out: Derived) -> None:
    """Attendance, CTR, conversion, cost per influenced lead and ROI.

    Conversion is influenced leads per registration, or per click for
    campaigns without registrations (ads).  ROI counts closed-won attributed
    ARR of both businesses against spend.
    """
    registrations = get(values, "campaigns.registrations")
    leads = get(values, "nb.leads.influenced")
    spend = get(values, "campaigns.spend")
    won = get(values, "nb.cw.attributed_arr") + get(values, "ex.cw.attributed_arr")
    ratio(out, "campaigns.attendance_rate", get(values, "campaigns.attendees"), registrations)
    ratio(
        out, "campaigns.ctr", get(values, "campaigns.clicks"), get(values, "campaigns.impressions")
    )
    ratio(out, "campaigns.conversion_rate", leads, registrations or get(values, "campaigns.clicks"))
    if spend:
        ratio(out, "campaigns.cost_per_influenced_lead", spend, leads)
        ratio(out, "campaigns.roi", won - spend, spend)


GOAL_OF = "goal.of:"
"""`goal.of:<metric>:<campaign>` = the campaign's target, in each scope that owns the goal."""


def is_goal_metric(metric: str) -> bool:
    """Whether a goal's metric can name a stored metric (no `@`, no `:`)."""
    return bool(metric) and SERIES_MARK not in metric and ":" not in metric


def goal_member(metric: str, campaign: str) -> str:
    """The owner scopes' field listing `campaign`'s goal on `metric`.

    `%` and `@` of the campaign name are percent-encoded: `@` would make the
    field a series point for the sink and every reader.
    """
    return f"{GOAL_OF}{metric}:{campaign.replace('%', '%25').replace('@', '%40')}"


@dataclass(frozen=True, slots=True)
class GoalProgress:
    """One scope's goals on one metric, each measured over its own period.

    `target` and `actual` are in the metric's stored unit (render them with
    `models.output.render_value`).  `pace` is actual ÷ the part of the target
    due by `as_of` (the sum of target times share of its period elapsed) over the goals
    that have a period; `paced` is False when none has one (no pace), and
    `pace` is None before any of their periods starts.
    """

    metric: str
    target: int
    actual: int
    attainment: float
    pace: float | None
    paced: bool
    campaigns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CampaignGoal:
    """One campaign's goal: its target, its period [start, end) in days, its actual."""

    target: int
    period: tuple[float, float] | None
    actual: int


def goal_progress(
    metrics: Mapping[str, ScopeMetrics], as_of: int, window: Window | None = None
) -> dict[str, dict[str, GoalProgress]]:
    """Scope → goal metric → progress, for every scope that owns a goal (SPEC §4.1).

    `metrics` is `by_scope` of the running totals *with* their series points.
    A campaign's actual is its scope's series of the metric summed over the
    goal's period (the running total when the goal has no period); a scope
    above campaigns sums its goal campaigns' targets and actuals.  With a
    `window`, only goals whose period overlaps it count (a goal without a
    period counts in every window, over its running total).  One function for `report`, `recompute`
    and the dashboard API, so they cannot disagree.
    """
    today = as_of / DAY_US
    out: dict[str, dict[str, GoalProgress]] = {}
    cache: dict[tuple[str, str], CampaignGoal] = {}
    for scope, values in metrics.items():
        members: dict[str, list[str]] = {}
        for field, target in values.items():
            if field.startswith(GOAL_OF) and target:
                metric, _, campaign = field[len(GOAL_OF) :].partition(":")
                members.setdefault(metric, []).append(unquote(campaign))
        for metric, campaigns in sorted(members.items()):
            goals = []
            for campaign in sorted(campaigns):
                key = (metric, campaign)
                if key not in cache:
                    cache[key] = campaign_goal(metrics.get(f"campaign:{campaign}", {}), metric)
                if overlaps(cache[key].period, window):
                    goals.append((campaign, cache[key]))
            if goals:
                out.setdefault(scope, {})[metric] = summed(metric, goals, today)
    return out


def campaign_goal(values: ScopeMetrics, metric: str) -> CampaignGoal:
    """A campaign's goal on `metric` from its own scope: target, period and actual."""
    target = get(values, f"goal.target:{metric}")
    if not target or f"goal.start:{metric}" not in values:
        return CampaignGoal(target, None, get(values, metric))
    start = get(values, f"goal.start:{metric}") / target
    end = get(values, f"goal.end:{metric}") / target
    actual = 0
    for name, value in values.items():
        base, day = split_point(name)
        if day is not None and base == metric and start <= _day(day) < end:
            actual += value
    return CampaignGoal(target, (start, end), actual)


def _day(text: str) -> int:
    return day_number(date.fromisoformat(text))


def overlaps(period: tuple[float, float] | None, window: Window | None) -> bool:
    """Whether a goal is listed for `window`: its period overlaps it.  A goal
    without a period is measured against the running total and stays in view
    whatever the window (a standing goal is never out of season)."""
    if window is None or period is None:
        return True
    return period[0] <= day_number(window.last) and day_number(window.first) < period[1]


def summed(metric: str, goals: Sequence[tuple[str, CampaignGoal]], today: float) -> GoalProgress:
    """Targets and actuals added up; pace over the goals that have a period."""
    target = sum(g.target for _, g in goals)
    actual = sum(g.actual for _, g in goals)
    due, paced_actual, paced = 0.0, 0, False
    for _, goal in goals:
        if goal.period is not None:
            paced = True
            due += goal.target * elapsed(goal.period, today)
            paced_actual += goal.actual
    return GoalProgress(
        metric,
        target,
        actual,
        actual / target if target else 0.0,
        paced_actual / due if due else None,
        paced,
        tuple(c for c, _ in goals),
    )


def elapsed(period: tuple[float, float], today: float) -> float:
    """Share of [start, end) before `today`, clamped to 0..1 (an empty period has elapsed)."""
    start, end = period
    return min(1.0, max(0.0, (today - start) / (end - start))) if end > start else 1.0


def performance(values: ScopeMetrics, everyone: ScopeMetrics, out: Derived) -> None:
    """Win rate and cycle of partner-involved deals beside all other deals.

    The comparison base is always the `all` scope's non-partner deals; the
    lift and the delta are differences (percentage points, days).
    """
    for side in ("partner", "other"):
        side_rates(values, side, out)
    base: Derived = {}
    side_rates(everyone, "other", base)
    for name, delta in (
        ("win_rate", "perf.win_rate_lift"),
        ("cycle_days_avg", "perf.cycle_days_delta"),
    ):
        mine, other = out.get(f"perf.partner.{name}"), base.get(f"perf.other.{name}")
        if mine is not None:
            out[delta] = mine - other if other is not None else None


def side_rates(values: ScopeMetrics, side: str, out: Derived) -> None:
    """Win rate (won / closed) and average days to close of one side."""
    closed = get(values, f"perf.{side}.closed")
    ratio(out, f"perf.{side}.win_rate", get(values, f"perf.{side}.won"), closed)
    ratio(out, f"perf.{side}.cycle_days_avg", get(values, f"perf.{side}.cycle_days"), closed)


def cohort(values: ScopeMetrics, side: str, out: Derived) -> None:
    """ACV, churn rate, retention, average health and LTV of one depth cohort.

    ACV averages the ARR of the accounts still live; LTV = ACV / churn rate,
    undefined (None) while nobody in the cohort churned.
    """
    prefix = f"cohort.{side}"
    accounts = get(values, f"{prefix}.accounts")
    if not accounts:
        return
    churned = get(values, f"{prefix}.churned")
    churn_rate = churned / accounts
    acv = get(values, f"{prefix}.arr") / (accounts - churned) if accounts > churned else None
    out[f"{prefix}.churn_rate"] = churn_rate
    out[f"{prefix}.retention"] = 1 - churn_rate
    out[f"{prefix}.acv"] = acv
    health = get(values, f"{prefix}.health_sum") / unit_of(f"{prefix}.health_sum")
    ratio(out, f"{prefix}.health_avg", health, get(values, f"{prefix}.health_count"))
    out[f"{prefix}.ltv"] = acv / churn_rate if acv is not None and churn_rate else None
