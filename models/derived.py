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

from collections.abc import Mapping
from typing import TypeAlias

from models.config import DAY_US
from models.output import unit_of
from models.subject import MetricKey

Derived: TypeAlias = dict[str, float | None]
ScopeMetrics: TypeAlias = Mapping[str, int]


def by_scope(totals: Mapping[MetricKey, int]) -> dict[str, dict[str, int]]:
    """Running totals as scope → metric → value, without the daily series."""
    out: dict[str, dict[str, int]] = {}
    for (scope, metric), value in totals.items():
        if value and "@" not in metric:
            out.setdefault(scope, {})[metric] = value
    return out


def derive(metrics: Mapping[str, ScopeMetrics], as_of: int) -> dict[str, Derived]:
    """Every derived metric of every scope; `as_of` (event-time microseconds) dates goal pace."""
    everyone = metrics.get("all", {})
    out: dict[str, Derived] = {}
    for scope, values in metrics.items():
        derived: Derived = {}
        campaign_rates(values, derived)
        goal_progress(values, as_of / DAY_US, derived)
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


def goal_progress(values: ScopeMetrics, today: float, out: Derived) -> None:
    """Attainment (actual / target) and pace (actual / (target * elapsed share)) per goal.

    The period is the target-weighted mean of the owners' periods (exact for
    one campaign, and for a partner whose goal campaigns share a period).
    """
    for field, target in values.items():
        kind, _, metric = field.partition(":")
        if kind != "goal.target" or not target:
            continue
        actual = get(values, metric)
        out[f"goal.attainment:{metric}"] = actual / target
        if f"goal.start:{metric}" not in values:
            continue
        start = get(values, f"goal.start:{metric}") / target
        end = get(values, f"goal.end:{metric}") / target
        elapsed = min(1.0, max(0.0, (today - start) / (end - start))) if end > start else 1.0
        out[f"goal.pace:{metric}"] = actual / (target * elapsed) if elapsed else None


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
