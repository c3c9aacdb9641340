"""The `report` command's content: metrics in, tables out (pure, no I/O).

`build_report` turns running totals into a JSON-able document of tables
(the New Business / Expansion funnel per partner as in SPEC §4, then the
partner scorecard); `rich_tables` draws that document for a terminal.  The
command only fetches the totals (from Redis or by running the engine over a
file) and prints.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import JustifyMethod
from rich.table import Table

from models.derived import Derived, by_scope, derive
from models.events import EPOCH
from models.output import render_value
from models.subject import MetricKey

Value = int | float | str | None


@dataclass(frozen=True, slots=True)
class Column:
    """One column: the metric (stored or derived) it shows and how to format it."""

    key: str
    label: str
    unit: str = "count"
    """count, cents, rate, pp (signed points), days, days_delta, nps, score, amount (in
    the unit of the row's goal metric), text."""
    derived: bool = False
    """From `models.derived` (None when undefined) rather than a stored total (0 when absent)."""


def rate(key: str, label: str, unit: str = "rate") -> Column:
    """A derived column."""
    return Column(key, label, unit, derived=True)


INFLUENCED, ARR, ATTRIBUTED = "Total Influenced Conv.", "Influenced Oppty ARR", "Attributed ARR"


def funnel(prefix: str, leads: bool) -> tuple[Column, ...]:
    """The SPEC §4 columns of one business; Expansion has no leads and MQLs."""
    counts = [("leads", "Leads"), ("mqls", "MQLs")] if leads else []
    counts += [("s2", "S2s"), ("cw", "Closed-Won")]
    columns = [Column(f"{prefix}.{k}.influenced", f"{INFLUENCED}\n{label}") for k, label in counts]
    for group, kind in ((ARR, "influenced_arr"), (ATTRIBUTED, "attributed_arr")):
        for stage, label in (("s2", "S2"), ("cw", "Closed-Won")):
            columns.append(Column(f"{prefix}.{stage}.{kind}", f"{group}\n{label}", "cents"))
    if leads:
        columns.append(Column("nb.leads.attributed", "Attributed\nLeads"))
    return tuple(columns)


SCORECARD: dict[str, tuple[str, tuple[Column, ...]]] = {
    "pipeline": (
        "Partner pipeline and two-sided value",
        (
            Column("pipeline.sourced_deals", "Sourced\ndeals"),
            Column("pipeline.sourced_arr", "Sourced\nARR", "cents"),
            Column("pipeline.sourced_won_arr", "Sourced\nwon ARR", "cents"),
            Column("pipeline.referrals", "Referrals\nto us"),
            Column("leads.acquired", "Leads\nacquired"),
            Column("leads.reengaged", "Leads\nre-engaged"),
            Column("referrals.sent", "Referrals\nwe sent"),
            Column("referrals.accepted", "...\naccepted"),
            Column("referrals.won", "...\nwon"),
            Column("referrals.won_arr", "...\nwon ARR", "cents"),
        ),
    ),
    "campaigns": (
        "Partner campaigns",
        (
            Column("campaigns.spend", "Spend", "cents"),
            Column("campaigns.registrations", "Regis-\ntrations"),
            rate("campaigns.attendance_rate", "Attend.\nrate"),
            Column("campaigns.impressions", "Impres-\nsions"),
            rate("campaigns.ctr", "CTR"),
            rate("campaigns.conversion_rate", "Conv.\nrate"),
            rate("campaigns.cost_per_influenced_lead", "Cost per\ninfl. lead", "cents"),
            rate("campaigns.roi", "ROI"),
        ),
    ),
    "performance": (
        "Partner performance, integrations and NPS",
        (
            Column("perf.partner.closed", "Closed\ndeals"),
            rate("perf.partner.win_rate", "Win\nrate"),
            rate("perf.win_rate_lift", "Win rate\nlift", "pp"),
            rate("perf.partner.cycle_days_avg", "Days to\nclose", "days"),
            rate("perf.cycle_days_delta", "Days\ndelta", "days_delta"),
            Column("integrations.installs", "Installs"),
            Column("integrations.uninstalls", "Unin-\nstalls"),
            Column("integrations.active", "Active\nintegr."),
            rate("nps", "NPS", "nps"),
            Column("nps.responses", "NPS\nanswers"),
        ),
    ),
}

GOALS = (
    Column("metric", "Goal metric", "text"),
    Column("target", "Target", "amount"),
    Column("actual", "Actual", "amount"),
    rate("goal.attainment", "Attainment"),
    rate("goal.pace", "Pace"),
)

COHORT = (
    Column("accounts", "Accounts"),
    rate("acv", "ACV", "cents"),
    rate("churn_rate", "Churn\nrate"),
    rate("retention", "Retention"),
    rate("health_avg", "Health\n(avg)", "score"),
    rate("ltv", "LTV", "cents"),
)

DEPTHS = ("0", "1", "2", "3", "4+")


def build_report(totals: Mapping[MetricKey, int], as_of: int) -> dict[str, Any]:
    """The report document: `as_of` (event-time microseconds) and named tables.

    Each table is `{title, columns: [{key, label, unit}], rows: [{label,
    values}]}`; values are in the units of `recompute --json` (ARR in cents)
    and rates are fractions; `None` where a ratio is undefined.
    """
    metrics = by_scope(totals)
    derived = derive(metrics, as_of)
    partners = sorted(s for s in metrics if s.startswith("partner:"))

    def rows(scopes: Sequence[str], columns: Sequence[Column]) -> list[dict[str, Any]]:
        return [
            {"label": scope, "values": {c.key: cell(metrics, derived, scope, c) for c in columns}}
            for scope in scopes
        ]

    tables: dict[str, dict[str, Any]] = {
        name: table(title, columns, rows(["all", *partners], columns))
        for name, title, columns in (
            ("new_business", "New Business", funnel("nb", leads=True)),
            ("expansion", "Expansion", funnel("ex", leads=False)),
        )
    }
    for name, (title, columns) in SCORECARD.items():
        tables[name] = table(title, columns, rows(partners, columns))
    tables["goals"] = table(
        f"Partner goals (pace as of {iso(as_of)})", GOALS, goal_rows(metrics, derived, partners)
    )
    tables["cohorts"] = table(
        "Accounts below vs at/above the integration depth threshold",
        COHORT,
        cohort_rows(metrics.get("all", {}), derived.get("all", {})),
    )
    depth_columns = tuple(Column(f"accounts.depth.{d}", f"{d} active") for d in DEPTHS)
    tables["depth"] = table(
        "Accounts by depth of active integrations", depth_columns, rows(["all"], depth_columns)
    )
    return {"as_of": iso(as_of), "tables": tables}


def table(title: str, columns: Sequence[Column], rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "title": title,
        "columns": [{"key": c.key, "label": c.label, "unit": c.unit} for c in columns],
        "rows": rows,
    }


def cell(
    metrics: Mapping[str, Mapping[str, int]],
    derived: Mapping[str, Derived],
    scope: str,
    column: Column,
) -> Value:
    """A stored metric in its rendered unit (0 when absent), or a derived one (None)."""
    if column.derived:
        return derived.get(scope, {}).get(column.key)
    return render_value(column.key, metrics.get(scope, {}).get(column.key, 0))


def goal_rows(
    metrics: Mapping[str, Mapping[str, int]],
    derived: Mapping[str, Derived],
    partners: Sequence[str],
) -> list[dict[str, Any]]:
    """One row per partner and goal metric: target, actual, attainment, pace."""
    out = []
    for scope in partners:
        values, mine = metrics[scope], derived.get(scope, {})
        for field in sorted(values):
            kind, _, metric = field.partition(":")
            if kind != "goal.target":
                continue
            row: dict[str, Value] = {
                "metric": metric,
                "target": render_value(metric, values[field]),
                "actual": render_value(metric, values.get(metric, 0)),
                "goal.attainment": mine.get(f"goal.attainment:{metric}"),
                "goal.pace": mine.get(f"goal.pace:{metric}"),
            }
            out.append({"label": scope, "values": row})
    return out


def cohort_rows(values: Mapping[str, int], derived: Derived) -> list[dict[str, Any]]:
    """The two depth cohorts side by side (scope `all`)."""
    out = []
    for side, label in (("below", "below threshold"), ("above", "at/above threshold")):
        row: dict[str, Value] = {"accounts": values.get(f"cohort.{side}.accounts", 0)}
        for column in COHORT[1:]:
            row[column.key] = derived.get(f"cohort.{side}.{column.key}")
        out.append({"label": label, "values": row})
    return out


def iso(ts: int) -> str:
    """Event-time microseconds as an ISO-8601 UTC timestamp."""
    return (EPOCH + timedelta(microseconds=ts)).isoformat()


def parse_as_of(text: str) -> int:
    """`--as-of`: an ISO date or date-time (UTC when it has no offset), in microseconds."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // timedelta(microseconds=1)


# --- terminal rendering -----------------------------------------------------------


FORMATS: dict[str, Callable[[float], str]] = {
    "cents": lambda v: f"{v / 100:,.2f}",
    "rate": lambda v: f"{v:,.1%}",
    "pp": lambda v: f"{v * 100:+.1f} pp",
    "days": lambda v: f"{v:.1f}",
    "days_delta": lambda v: f"{v:+.1f}",
    "nps": lambda v: f"{v:+.0f}",
    "score": lambda v: f"{v:.1f}",
}


def format_value(unit: str, value: Value, row: Mapping[str, Value]) -> str:
    """One cell for the terminal: ARR in currency units, rates in percent."""
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value
    if unit == "amount" and str(row.get("metric", "")).endswith("_arr"):
        unit = "cents"
    fmt = FORMATS.get(unit)
    if fmt is not None:
        return fmt(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:,.2f}"


def rich_tables(report: Mapping[str, Any]) -> list[Table]:
    """Every table of a report document, ready for `Console.print` (empty ones left out)."""
    out = []
    for spec in report["tables"].values():
        if not spec["rows"]:
            continue
        grid = Table(title=spec["title"])
        grid.add_column("", no_wrap=True)
        for column in spec["columns"]:
            justify: JustifyMethod = "left" if column["unit"] == "text" else "right"
            grid.add_column(column["label"], justify=justify)
        for row in spec["rows"]:
            values = row["values"]
            cells = [format_value(c["unit"], values.get(c["key"]), values) for c in spec["columns"]]
            grid.add_row(row["label"], *cells)
        out.append(grid)
    return out
