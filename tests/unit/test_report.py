"""The `report` document, its terminal tables, and `partnerpulse report --file`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from rich.console import Console

from models.config import DAY_US
from models.periods import Calendar
from models.report import build_report, format_value, parse_as_of, rich_tables
from streams.cli import main
from tests.unit.test_metrics import event
from tests.unit.test_rules import created, opp, ptnr, stage, touch

TOTALS = {
    ("all", "nb.leads.influenced"): 12,
    ("all", "nb.leads.attributed"): 3_500_000,
    ("all", "ex.cw.attributed_arr"): 99,
    ("all", "perf.other.closed"): 4,
    ("all", "perf.other.won"): 1,
    ("all", "cohort.below.accounts"): 2,
    ("all", "cohort.below.arr"): 50_000,
    ("all", "accounts.depth.0"): 2,
    ("all", "integrations.installs@2026-01-01"): 7,  # a series: not in any table
    ("partner:slack", "nb.leads.influenced"): 5,
    ("partner:slack", "nb.cw.attributed_arr"): 123_456,
    ("partner:slack", "campaigns.spend"): 10_000,
    ("partner:slack", "perf.partner.closed"): 2,
    ("partner:slack", "perf.partner.won"): 1,
    ("partner:slack", "goal.target:nb.leads.influenced"): 10,
    ("partner:slack", "goal.of:nb.leads.influenced:spring"): 10,  # the goal of campaign:spring
    ("campaign:spring", "goal.target:nb.leads.influenced"): 10,
    ("campaign:spring", "nb.leads.influenced"): 5,
    ("partner:zoom", "referrals.sent"): 3,
}


def rows(document: dict[str, Any], table: str) -> dict[str, dict[str, Any]]:
    return {row["label"]: row["values"] for row in document["tables"][table]["rows"]}


def test_report_document() -> None:
    document = build_report(TOTALS, 0)
    assert document["as_of"] == "1970-01-01T00:00:00+00:00"
    nb = rows(document, "new_business")
    assert list(nb) == ["all", "partner:slack", "partner:zoom"]
    assert nb["all"]["nb.leads.influenced"] == 12
    assert nb["all"]["nb.leads.attributed"] == 3.5  # millionths rendered as conversions
    assert nb["partner:slack"]["nb.cw.attributed_arr"] == 123_456
    assert nb["partner:zoom"]["nb.mqls.influenced"] == 0
    assert "nb.leads.influenced" not in rows(document, "expansion")["all"]
    assert rows(document, "expansion")["all"]["ex.cw.attributed_arr"] == 99

    campaigns = rows(document, "campaigns")
    assert list(campaigns) == ["partner:slack", "partner:zoom"]
    assert campaigns["partner:slack"]["campaigns.roi"] == 11.3456  # (123 456 - 10 000) / 10 000
    assert campaigns["partner:slack"]["campaigns.cost_per_influenced_lead"] == 2000  # 10 000 / 5
    assert campaigns["partner:zoom"]["campaigns.roi"] is None  # no spend: undefined
    performance = rows(document, "performance")["partner:slack"]
    assert performance["perf.partner.win_rate"] == 0.5
    assert performance["perf.win_rate_lift"] == 0.25  # 1/2 - 1/4
    assert rows(document, "pipeline")["partner:zoom"]["referrals.sent"] == 3

    goals = document["tables"]["goals"]["rows"]
    assert goals == [
        {
            "label": "partner:slack",
            "values": {
                "metric": "nb.leads.influenced",
                "target": 10,
                "actual": 5,
                "goal.attainment": 0.5,
                "goal.pace": None,  # no period
            },
        }
    ]
    cohorts = rows(document, "cohorts")
    assert cohorts["below threshold"]["accounts"] == 2
    assert cohorts["below threshold"]["acv"] == 25_000
    assert cohorts["at/above threshold"] == {
        "accounts": 0,
        "acv": None,
        "churn_rate": None,
        "retention": None,
        "health_avg": None,
        "ltv": None,
    }
    assert rows(document, "depth")["all"]["accounts.depth.0"] == 2
    json.dumps(document)  # JSON-able as is


def test_terminal_tables() -> None:
    console = Console(width=300, record=True)
    for table in rich_tables(build_report(TOTALS, 0)):
        console.print(table)
    text = console.export_text()
    assert "New Business" in text and "Expansion" in text
    assert "1,234.56" in text  # slack's closed-won attributed ARR, in dollars
    assert "1,134.6%" in text  # slack's ROI
    assert "+25.0 pp" in text  # slack's win rate lift


def test_cell_formats() -> None:
    assert format_value("cents", 123_456, {}) == "1,234.56"
    assert format_value("rate", 0.1234, {}) == "12.3%"
    assert format_value("pp", -0.05, {}) == "-5.0 pp"
    assert format_value("days_delta", 2.25, {}) == "+2.2"
    assert format_value("nps", 16.7, {}) == "+17"
    assert format_value("count", 1234, {}) == "1,234"
    assert format_value("count", 3.5, {}) == "3.50"
    assert format_value("amount", 250_000, {"metric": "nb.s2.influenced_arr"}) == "2,500.00"
    assert format_value("amount", 25, {"metric": "nb.s2.influenced"}) == "25"
    assert format_value("rate", None, {}) == "n/a"


def test_as_of_parsing() -> None:
    assert parse_as_of("1970-01-02") == DAY_US
    assert parse_as_of("1970-01-02T01:00:00+01:00") == DAY_US


def test_report_command_from_a_file(tmp_path: Path) -> None:
    slack = ptnr("slack", "a")
    lines = [
        touch("t1", "L", 1, slack),
        created("c1", "L", 2),
        opp("o1", "O", 3, ["L"], arr=1000),
        stage("s1", "O", 4, "closed_won"),
        event("partner_feedback", "f1", 5, partner="slack", score=10),
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\nnot json\n")
    runner = CliRunner()

    result = runner.invoke(main, ["report", "--file", str(path), "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["as_of"] == "2026-01-06T00:00:00+00:00"  # the latest event (day 5)
    slack_row = rows(document, "new_business")["partner:slack"]
    assert slack_row["nb.leads.influenced"] == 1
    assert slack_row["nb.cw.influenced"] == 1
    assert slack_row["nb.cw.attributed_arr"] == 100_000  # the only touchpoint
    assert rows(document, "performance")["partner:slack"]["nps"] == 100

    later = runner.invoke(main, ["report", "--file", str(path), "--json", "--as-of", "2026-02-01"])
    assert json.loads(later.output)["as_of"] == "2026-02-01T00:00:00+00:00"

    table = runner.invoke(main, ["report", "--file", str(path)])
    assert table.exit_code == 0, table.output
    assert "partner:slack" in table.output and "1,000.00" in table.output


# --- windows --------------------------------------------------------------------

SERIES = {
    ("all", "nb.cw.influenced"): 3,
    ("all", "nb.cw.influenced@2026-06-30"): 1,  # Q2
    ("all", "nb.cw.influenced@2026-07-01"): 2,  # Q3
    ("partner:slack", "nb.cw.influenced"): 3,
    ("partner:slack", "nb.cw.influenced@2026-06-30"): 2,
    ("partner:slack", "nb.cw.influenced@2026-09-30"): 1,
    ("partner:slack", "perf.partner.closed"): 4,
    ("partner:slack", "perf.partner.closed@2026-04-02"): 2,
    ("partner:slack", "perf.partner.closed@2026-07-02"): 2,
    ("partner:slack", "perf.partner.won"): 1,
    ("partner:slack", "perf.partner.won@2026-07-02"): 1,
    ("partner:slack", "campaigns.spend"): 10_000,  # no series: not in a window
    ("all", "cohort.below.accounts"): 2,
}


def test_windowed_report_with_the_previous_quarter() -> None:
    calendar = Calendar()
    q3 = calendar.period("2026Q3")
    document = build_report(SERIES, 0, q3, calendar.previous(q3))
    assert document["window"] == {"from": "2026-07-01", "to": "2026-09-30"}
    assert document["previous"] == {"from": "2026-04-01", "to": "2026-06-30"}
    nb = {row["label"]: row for row in document["tables"]["new_business"]["rows"]}
    assert nb["all"]["values"]["nb.cw.influenced"] == 2
    assert nb["all"]["previous"]["nb.cw.influenced"] == 1
    assert nb["all"]["change"]["nb.cw.influenced"] == 1
    assert nb["partner:slack"]["values"]["nb.cw.influenced"] == 1
    assert nb["partner:slack"]["change"]["nb.cw.influenced"] == -1  # 1 in Q3 against 2 in Q2
    performance = {r["label"]: r for r in document["tables"]["performance"]["rows"]}
    slack = performance["partner:slack"]
    assert slack["values"]["perf.partner.win_rate"] == 0.5  # 1 won of 2 closed in Q3
    assert slack["previous"]["perf.partner.win_rate"] == 0  # 0 of 2 in Q2
    assert slack["change"]["perf.partner.win_rate"] == 0.5
    campaigns = {r["label"]: r["values"] for r in document["tables"]["campaigns"]["rows"]}
    assert campaigns["partner:slack"]["campaigns.spend"] is None  # a registry value
    assert "cohorts" not in document["tables"]  # levels have no window
    console = Console(width=300, record=True)
    for grid in rich_tables(document):
        console.print(grid)
    text = console.export_text()
    assert "-50%" in text  # slack's closed-won, 2 -> 1
    assert "+50.0 pp" in text  # slack's win rate, 0 -> 50 %


def test_recompute_and_report_windows_from_the_command_line(tmp_path: Path) -> None:
    slack = ptnr("slack", "w")
    lines = [
        touch("t1", "A", 80, slack),
        created("c1", "A", 89),  # 2026-03-31: Q1
        touch("t2", "B", 80, slack),
        created("c2", "B", 90),  # 2026-04-01: Q2
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    runner = CliRunner()

    def metrics(*options: str) -> dict[str, Any]:
        result = runner.invoke(main, ["recompute", str(path), "--json", *options])
        assert result.exit_code == 0, result.output
        document: dict[str, Any] = json.loads(result.output)
        assert document["series"]["all"]["nb.leads.influenced"] == {
            "2026-03-31": 1,
            "2026-04-01": 1,
        }  # the whole series, whatever the window
        found: dict[str, Any] = document["metrics"]
        return found

    assert metrics()["all"]["nb.leads.influenced"] == 2
    assert metrics("--period", "2026Q1")["all"]["nb.leads.influenced"] == 1
    assert metrics("--from", "2026-04-01", "--to", "2026-04-01")["partner:slack"] == {
        "nb.leads.attributed": 1.0,
        "nb.leads.influenced": 1,
        "leads.acquired": 1,
    }
    assert metrics("--period", "2026-05") == {}  # nothing happened in May
    bad = runner.invoke(main, ["recompute", str(path), "--json", "--from", "2026-04-01"])
    assert bad.exit_code != 0 and "--to" in bad.output

    report = runner.invoke(
        main, ["report", "--file", str(path), "--json", "--period", "2026Q2", "--compare"]
    )
    assert report.exit_code == 0, report.output
    row = rows(json.loads(report.output), "new_business")["all"]
    assert row["nb.leads.influenced"] == 1

    feb = runner.invoke(
        main,
        ["recompute", str(path), "--json", "--period", "2025Q4"],
        env={"PP_FISCAL_YEAR_START": "2"},
    )  # FY2025Q4 = November 2025 to January 2026: neither lead
    assert json.loads(feb.output)["metrics"] == {}
