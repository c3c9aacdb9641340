"""The JSON document `recompute --json` and `replay --json` both print (SPEC §6)."""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from models.lead import MICRO
from models.subject import MetricKey

UNITS: dict[str, int] = {
    "nb.leads.attributed": MICRO,
    "cohort.below.health_sum": 100,
    "cohort.above.health_sum": 100,
}
"""Metrics held as integers of a finer unit; rendered in whole units."""


def unit_of(metric: str) -> int:
    """The stored unit of `metric`; a goal field (`goal.target:<m>`) is in the unit of `<m>`."""
    return UNITS.get(metric.rpartition(":")[2], 1)


def render_value(metric: str, value: int) -> int | float:
    unit = unit_of(metric)
    return value if unit == 1 else round(value / unit, 6)


def render(
    metrics: Mapping[MetricKey, int], credits: Mapping[str, Mapping[str, Fraction]]
) -> dict[str, Any]:
    """Sorted, zero-free, fractions rounded to 6 decimals: byte-stable for diffing.

    Daily series (`<metric>@<YYYY-MM-DD>`) go under `series` as
    scope → metric → day → value, apart from the running totals.
    """
    by_scope: dict[str, dict[str, int | float]] = {}
    series: dict[str, dict[str, dict[str, int | float]]] = {}
    for (scope, metric), value in sorted(metrics.items()):
        if not value:
            continue
        name, daily, day = metric.partition("@")
        if daily:
            series.setdefault(scope, {}).setdefault(name, {})[day] = render_value(name, value)
        else:
            by_scope.setdefault(scope, {})[metric] = render_value(metric, value)
    return {
        "metrics": by_scope,
        "series": series,
        "credits": {
            subject: {tid: float(round(share, 6)) for tid, share in sorted(lines.items())}
            for subject, lines in sorted(credits.items())
        },
    }
