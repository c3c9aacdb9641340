"""The `report` command's content: metrics in, tables out (pure, no I/O).

`build_report` turns running totals into a JSON-able document of tables
(the New Business / Expansion funnel per partner as in SPEC §4, then the
partner scorecard); `rich_tables` draws that document for a terminal.  The
command only fetches the totals (from Redis or by running the engine over a
file) and prints.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from rich.console import JustifyMethod
from rich.table import Table

from models.derived import Derived, GoalProgress, by_scope, derive, goal_progress
from models.events import EPOCH
from models.output import render_value
from models.periods import SERIES_METRICS, Window, window_totals
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


def build_report(
    totals: Mapping[MetricKey, int],
    as_of: int,
    window: Window | None = None,
    previous: Window | None = None,
) -> dict[str, Any]:
    """The report document: `as_of` (event-time microseconds), the window, named tables.

    Each table is `{title, columns: [{key, label, unit}], rows: [{label,
    values}]}`; values are in the units of `recompute --json` (ARR in cents)
    and rates are fractions; `None` where a ratio is undefined.

    With a `window`, the funnel and scorecard count only the window's days
    (metrics without a series, such as spend or active integrations, are
    `None` there; the level tables, cohorts and depth, are left out), and the
    goals table lists the goals whose period overlaps it.  With `previous`
    too, every funnel and scorecard row also carries `previous` (the same
    cells over that window) and `change` (current minus previous).
    Goals are always measured over their own periods (SPEC §4.1).
    """
    everything = by_scope(totals)
    view = View.of(totals, window, as_of)
    before = View.of(totals, previous, as_of) if window is not None and previous else None
    # `partners` (the deduplicated any-partner total) first, then each partner
    partners = [
        *(["partners"] if "partners" in everything else []),
        *sorted(s for s in everything if s.startswith("partner:")),
    ]
    span = f", {window.first} to {window.last}" if window else ""
    if before is not None and previous is not None:
        span += f" (vs {previous.first} to {previous.last})"

    def rows(scopes: Sequence[str], columns: Sequence[Column]) -> list[dict[str, Any]]:
        out = []
        for scope in scopes:
            row: dict[str, Any] = {"label": scope, "values": view.cells(scope, columns)}
            if before is not None:
                row["previous"] = before.cells(scope, columns)
                row["change"] = {k: change(v, row["previous"][k]) for k, v in row["values"].items()}
            out.append(row)
        return out

    tables: dict[str, dict[str, Any]] = {
        name: table(title + span, columns, rows(["all", *partners], columns))
        for name, title, columns in (
            ("new_business", "New Business", funnel("nb", leads=True)),
            ("expansion", "Expansion", funnel("ex", leads=False)),
        )
    }
    for name, (title, columns) in SCORECARD.items():
        tables[name] = table(title + span, columns, rows(partners, columns))
    goals = goal_progress(everything, as_of, window)
    tables["goals"] = table(
        f"Partner goals, each over its own period (pace as of {iso(as_of)})",
        GOALS,
        goal_rows(goals, [s for s in partners if s in goals]),
    )
    if window is None:
        tables["cohorts"] = table(
            "Accounts below vs at/above the integration depth threshold",
            COHORT,
            cohort_rows(everything.get("all", {}), view.derived.get("all", {})),
        )
        depth_columns = tuple(Column(f"accounts.depth.{d}", f"{d} active") for d in DEPTHS)
        tables["depth"] = table(
            "Accounts by depth of active integrations", depth_columns, rows(["all"], depth_columns)
        )
    return {
        "as_of": iso(as_of),
        "window": span_of(window),
        "previous": span_of(previous if before is not None else None),
        "tables": tables,
    }


TABLES: Final = (
    "new_business",
    "expansion",
    *SCORECARD,
    "goals",
    "cohorts",
    "depth",
)
"""The report's tables, in order (cohorts and depth are levels: all-time reports only)."""


@dataclass(frozen=True, slots=True)
class View:
    """The totals as seen through one window (or whole), with their derived metrics."""

    metrics: Mapping[str, Mapping[str, int]]
    derived: Mapping[str, Derived]
    windowed: bool

    @classmethod
    def of(cls, totals: Mapping[MetricKey, int], window: Window | None, as_of: int) -> View:
        metrics = by_scope(window_totals(totals, window))
        return cls(metrics, derive(metrics, as_of), window is not None)

    def cells(self, scope: str, columns: Sequence[Column]) -> dict[str, Value]:
        return {c.key: self.cell(scope, c) for c in columns}

    def cell(self, scope: str, column: Column) -> Value:
        """A stored metric in its rendered unit (0 when absent, None when a window cannot
        show it: it has no series), or a derived one (None when undefined)."""
        if column.derived:
            return self.derived.get(scope, {}).get(column.key)
        if self.windowed and column.key not in SERIES_METRICS:
            return None
        return render_value(column.key, self.metrics.get(scope, {}).get(column.key, 0))


def change(now: Value, before: Value) -> Value:
    """Current minus previous, in the column's unit; None when either is undefined."""
    if isinstance(now, int | float) and isinstance(before, int | float):
        return now - before
    return None


def span_of(window: Window | None) -> dict[str, str] | None:
    return None if window is None else {"from": str(window.first), "to": str(window.last)}


def table(title: str, columns: Sequence[Column], rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "title": title,
        "columns": [{"key": c.key, "label": c.label, "unit": c.unit} for c in columns],
        "rows": rows,
    }


def goal_rows(
    goals: Mapping[str, Mapping[str, GoalProgress]], scopes: Sequence[str]
) -> list[dict[str, Any]]:
    """One row per scope and goal metric: target, actual, attainment, pace."""
    out = []
    for scope in scopes:
        for metric, progress in sorted(goals[scope].items()):
            row: dict[str, Value] = {
                "metric": metric,
                "target": render_value(metric, progress.target),
                "actual": render_value(metric, progress.actual),
                "goal.attainment": progress.attainment,
                "goal.pace": progress.pace,
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


def format_change(unit: str, change: Value, before: Value) -> str:
    """The change beside a cell: in points for rates, else relative to the previous value."""
    if not isinstance(change, int | float) or not isinstance(before, int | float):
        return ""
    if unit in {"rate", "pp"}:
        return f"{change * 100:+.1f} pp"
    if unit in {"days", "days_delta", "nps", "score"}:
        return f"{change:+.1f}"
    if not before:
        return "new" if change else "="
    return f"{change / before:+.0%}"


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
            if "change" in row:
                keys = [(c["unit"], c["key"]) for c in spec["columns"]]
                cells = [
                    f"{text}\n{format_change(unit, row['change'][key], row['previous'][key])}"
                    for text, (unit, key) in zip(cells, keys, strict=True)
                ]
            grid.add_row(row["label"], *cells)
        out.append(grid)
    return out


def to_csv(table: Mapping[str, Any]) -> str:
    """A table (of the report or the dashboard: `{columns, rows}`) as CSV: a
    ``scope`` column, then one per column (its label and, when the unit is
    money, the currency), then the previous period's columns if any.  One
    function for `report --csv` and the dashboard's downloads, so a CSV is the
    same table wherever it comes from."""
    columns = table["columns"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    windowed = any("previous" in row for row in table["rows"])
    heads = [_head(c, table.get("currency", "")) for c in columns]
    writer.writerow(["scope", *heads, *(f"{h} (previous period)" for h in heads if windowed)])
    for row in table["rows"]:
        cells = [row["values"].get(c["key"]) for c in columns]
        if windowed:
            cells += [row.get("previous", {}).get(c["key"]) for c in columns]
        writer.writerow([row["label"], *("" if x is None else x for x in cells)])
    return out.getvalue()


def _head(column: Mapping[str, str], currency: str) -> str:
    group = f"{column['group']} " if column.get("group") else ""
    unit = f" ({currency})" if column["unit"] == "money" and currency else ""
    label = " ".join(column["label"].split())  # a report label may break over lines
    return f"{group}{label}{unit}"
