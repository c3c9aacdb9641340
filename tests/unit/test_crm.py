"""`partnerpulse convert`: tiny hand-written Salesforce exports, hand-written expected events."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from datagen.crm import iso_time
from streams.cli import main

CSV = Path(__file__).parent / "crm"

EXPECTED = [
    {
        "event_id": "sf-cm-00v1",
        "type": "touch",
        "occurred_at": "2026-01-21T15:00:00+00:00",
        "lead_id": "003A",
        "campaign": "2026Q1_ptnr_slack_webinar_emea_ai-support",
        "action": "attended",
    },
    {
        "event_id": "sf-cm-00v2",
        "type": "touch",
        "occurred_at": "2026-02-01T08:00:00+00:00",
        "lead_id": "00Q2",
        "campaign": "Spring Promo",
        "action": "registered",
    },
    {
        "event_id": "sf-lead-00Q1",
        "type": "lead_created",
        "occurred_at": "2026-02-01T09:00:00+00:00",
        "lead_id": "003A",
        "account_id": "001X",
    },
    {
        "event_id": "sf-lead-00Q2",
        "type": "lead_created",
        "occurred_at": "2026-02-03T10:30:00+01:00",
        "lead_id": "00Q2",
        "source_partner": "slack",
    },
    {
        "event_id": "sf-lead-00Q1-mql",
        "type": "mql",
        "occurred_at": "2026-02-10T12:00:00+00:00",
        "lead_id": "003A",
    },
    {
        "event_id": "sf-cm-00v3",
        "type": "touch",
        "occurred_at": "2026-02-16T08:00:00+00:00",
        "lead_id": "003B",
        "campaign": "2026Q1_dg_none_email_na_nurture",
        # Status "Responded" is Salesforce's generic default: a plain touch, no action
    },
    {
        "event_id": "sf-opp-006A",
        "type": "opportunity_created",
        "occurred_at": "2026-03-01T10:00:00+00:00",
        "opportunity_id": "006A",
        "account_id": "001X",
        "lead_ids": ["003A", "003B"],
        "business": "new_business",
        "arr": "48000",
        "currency": "EUR",
    },
    # CloseDate is a day: clamped to the creation moment of that day
    {
        "event_id": "sf-opp-006A-closed_won-48000",
        "type": "opportunity_stage",
        "occurred_at": "2026-03-01T10:00:00+00:00",
        "opportunity_id": "006A",
        "stage": "closed_won",
        "arr": "48000",
    },
    {
        "event_id": "sf-opp-006B",
        "type": "opportunity_created",
        "occurred_at": "2026-03-05T10:00:00+00:00",
        "opportunity_id": "006B",
        "account_id": "001X",
        "lead_ids": ["003A"],
        "business": "expansion",
        "arr": "12000.50",
        "referral_partner": "hubspot",
    },
    {
        "event_id": "sf-opp-006D",
        "type": "opportunity_created",
        "occurred_at": "2026-03-07T10:00:00+00:00",
        "opportunity_id": "006D",
        "account_id": "001Y",
        "lead_ids": ["003B"],
        "business": "new_business",
        "arr": "1000",
    },
    {
        "event_id": "sf-opp-006B-S5-12000.50",
        "type": "opportunity_stage",
        "occurred_at": "2026-03-20T11:00:00+00:00",
        "opportunity_id": "006B",
        "stage": "S5",
        "arr": "12000.50",
    },
]


def run_convert(out: Path) -> str:
    result = CliRunner().invoke(
        main,
        [
            "convert",
            "--leads", str(CSV / "Lead.csv"),
            "--campaign-members", str(CSV / "CampaignMember.csv"),
            "--opportunities", str(CSV / "Opportunity.csv"),
            "--contact-roles", str(CSV / "OpportunityContactRole.csv"),
            "--out", str(out),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, (result.output, result.stderr)
    return result.stderr


def test_convert_maps_every_object_and_reports_what_it_skipped(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    report = run_convert(out)
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert events == EXPECTED
    assert report.splitlines() == [
        "events: 11",
        "skipped 1: CampaignMember: not responded",
        "skipped 1: Lead: no Id or CreatedDate",
        "skipped 1: Opportunity: no contact roles",
        "skipped 1: Opportunity: stage not mapped (created only)",
    ]


def test_converted_events_attribute_as_expected(tmp_path: Path) -> None:
    """Through the batch oracle: the slack webinar touched the won deal's primary contact."""
    out = tmp_path / "events.jsonl"
    run_convert(out)
    result = CliRunner().invoke(main, ["recompute", str(out), "--json"])
    metrics = json.loads(result.output)["metrics"]
    slack = metrics["partner:slack"]
    assert slack["nb.cw.influenced"] == 1
    assert slack["nb.cw.influenced_arr"] == 48000 * 108  # EUR at 1.08, in cents
    assert "dq.dead_letters" not in metrics.get("all", {})


def test_salesforce_times() -> None:
    assert iso_time("2026-03-01") == "2026-03-01T00:00:00+00:00"
    assert iso_time("2026-03-01T10:15:00.000Z") == "2026-03-01T10:15:00+00:00"
    assert iso_time("2026-03-01T10:15:00.000+0530") == "2026-03-01T10:15:00+05:30"
    assert iso_time("2026-03-01 10:15:00") == "2026-03-01T10:15:00+00:00"
