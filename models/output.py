"""The JSON document `recompute --json` and `replay --json` both print (SPEC §6)."""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from models.contrib import MetricKey
from models.lead import MICRO

UNITS: dict[str, int] = {"nb.leads.attributed": MICRO}
"""Metrics held as integers of a finer unit; rendered in whole units."""


def render_value(metric: str, value: int) -> int | float:
    unit = UNITS.get(metric)
    return value if unit is None else round(value / unit, 6)


def render(
    metrics: Mapping[MetricKey, int], credits: Mapping[str, Mapping[str, Fraction]]
) -> dict[str, Any]:
    """Sorted, zero-free, fractions rounded to 6 decimals: byte-stable for diffing."""
    by_scope: dict[str, dict[str, int | float]] = {}
    for (scope, metric), value in sorted(metrics.items()):
        if value:
            by_scope.setdefault(scope, {})[metric] = render_value(metric, value)
    return {
        "metrics": by_scope,
        "credits": {
            subject: {tid: float(round(share, 6)) for tid, share in sorted(lines.items())}
            for subject, lines in sorted(credits.items())
        },
    }
