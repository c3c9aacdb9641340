"""`partnerpulse convert`: Salesforce CSV exports to events."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import IO

import click
import orjson

from datagen.crm import CrmExport
from datagen.crm import convert as convert_export
from models.parse import Rejection, parse_event
from streams.cli.common import input_file


def read_csv(path: Path | None) -> list[dict[str, str]]:
    """Rows of a CRM export (UTF-8, with or without a BOM); none when not given."""
    if path is None:
        return []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


@click.command()
@click.option("--leads", type=input_file, help="Lead export (CSV).")
@click.option("--campaign-members", type=input_file, help="CampaignMember export (CSV).")
@click.option("--opportunities", type=input_file, help="Opportunity export (CSV).")
@click.option("--contact-roles", type=input_file, help="OpportunityContactRole export (CSV).")
@click.option(
    "--out", "out", type=click.File("w"), default="-", help="Output .jsonl (default stdout)."
)
def convert(
    leads: Path | None,
    campaign_members: Path | None,
    opportunities: Path | None,
    contact_roles: Path | None,
    out: IO[str],
) -> None:
    """Convert Salesforce CSV exports to PartnerPulse events (.jsonl) for `send`.

    Column mapping: docs/crm-import.md. Rows that cannot become events are
    counted by reason on stderr; every event written is validated.
    """
    result = convert_export(
        CrmExport(
            read_csv(leads),
            read_csv(campaign_members),
            read_csv(opportunities),
            read_csv(contact_roles),
        )
    )
    invalid: Counter[str] = Counter()
    for event in result.events:
        raw = orjson.dumps(event)
        parsed = parse_event(raw)
        if isinstance(parsed, Rejection):
            invalid[f"{event['type']}: {parsed.reason}"] += 1
        else:
            out.write(raw.decode() + "\n")
    click.echo(f"events: {len(result.events) - invalid.total()}", err=True)
    for reason, count in sorted(result.skipped.items()):
        click.echo(f"skipped {count}: {reason}", err=True)
    if invalid:
        details = ", ".join(f"{count} {reason}" for reason, count in sorted(invalid.items()))
        raise click.ClickException(f"rows that are not valid events (not written): {details}")
