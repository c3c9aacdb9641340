"""Salesforce CSV exports -> PartnerPulse events (pure: rows in, event dicts out).

Four standard objects, as Data Loader / Bulk API exports them (API field
names as column headers; a leading BOM and blank cells are fine):

- ``Lead`` -> ``lead_created`` (and ``mql`` when an MQL date column is set);
- ``CampaignMember`` -> ``touch`` (responded members only, as Marketo
  Measure creates touchpoints on responses);
- ``Opportunity`` + ``OpportunityContactRole`` -> ``opportunity_created``
  (contact roles, primary first) and one ``opportunity_stage`` with the
  current stage and amount.

People: Salesforce splits them into leads and contacts, but a touchpoint and
a contact role must name the same person.  A converted lead
(``ConvertedContactId``) is therefore identified by its contact id
everywhere; an unconverted lead by its lead id.

Event ids are derived from record ids (``sf-<object>-<Id>[-<what>]``; a
record's own event id is a prefix of its later ones, so at equal event time
creation sorts first), so importing
the same export twice changes nothing (duplicates are ignored), while a later
export with a new stage or amount adds a new stage event.  The full column
mapping, and what is skipped and why, is in docs/crm-import.md.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Final

__all__ = ["DEFAULT_STAGES", "Conversion", "CrmExport", "convert", "iso_time"]

Row = Mapping[str, str]

DEFAULT_STAGES: Final[Mapping[str, str]] = {
    # Salesforce's default sales process; anything else is configurable.
    "prospecting": "S1",
    "qualification": "S1",
    "needs analysis": "S2",
    "value proposition": "S2",
    "id. decision makers": "S3",
    "perception analysis": "S3",
    "proposal/price quote": "S4",
    "negotiation/review": "S5",
    "closed won": "closed_won",
    "closed lost": "closed_lost",
}
EXPANSION_TYPES: Final = ("existing", "upgrade", "upsell", "expansion", "cross-sell", "renewal")
CAMPAIGN_NAME_COLUMNS: Final = ("Campaign.Name", "CampaignName", "Campaign Name")
MQL_COLUMNS: Final = ("MQL_Date__c", "MQLDate__c", "MQL_Date")
SOURCE_PARTNER_COLUMNS: Final = ("Source_Partner__c", "Partner__c")
REFERRAL_PARTNER_COLUMNS: Final = ("Referral_Partner__c",)
PARTNER_COLUMNS: Final = ("Partner__c", "Campaign.Partner__c")
CHANNEL_COLUMNS: Final = ("Campaign.Type", "Channel__c")
GENERIC_STATUSES: Final = ("", "responded")


@dataclass(frozen=True)
class CrmExport:
    """The rows of each export (any may be empty)."""

    leads: Sequence[Row] = ()
    campaign_members: Sequence[Row] = ()
    opportunities: Sequence[Row] = ()
    contact_roles: Sequence[Row] = ()


@dataclass
class Conversion:
    events: list[dict[str, object]]
    skipped: Counter[str]
    """Rows not converted, by reason (``<object>: <reason>``): reported, never silent."""


def convert(export: CrmExport, stages: Mapping[str, str] = DEFAULT_STAGES) -> Conversion:
    """All events of `export`, ordered by event time then id."""
    skipped: Counter[str] = Counter()
    person = {
        row["Id"]: _get(row, "ConvertedContactId") or row["Id"]
        for row in export.leads
        if _get(row, "Id")
    }
    events = [
        *_leads(export.leads, person, skipped),
        *_touches(export.campaign_members, person, skipped),
        *_opportunities(export.opportunities, export.contact_roles, stages, skipped),
    ]
    events.sort(key=lambda e: (_moment(e), str(e["event_id"])))
    return Conversion(events, skipped)


def iso_time(text: str) -> str:
    """A Salesforce datetime (``2026-03-01T10:15:00.000Z``, ``+0000`` offsets) or date
    (``2026-03-01``, taken as midnight UTC) as ISO-8601 with an offset.

    A datetime without an offset is UTC (Data Loader exports UTC)."""
    text = text.strip()
    if len(text) == 10:
        return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC).isoformat()
    if text[-5] in "+-" and text[-3] != ":":  # +0000 -> +00:00
        text = f"{text[:-2]}:{text[-2:]}"
    moment = datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


def _leads(
    rows: Iterable[Row], person: Mapping[str, str], skipped: Counter[str]
) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for row in rows:
        lead, created = _get(row, "Id"), _get(row, "CreatedDate")
        if not lead or not created:
            skipped["Lead: no Id or CreatedDate"] += 1
            continue
        event: dict[str, object] = {
            "event_id": f"sf-lead-{lead}",
            "type": "lead_created",
            "occurred_at": iso_time(created),
            "lead_id": person[lead],
        }
        _put(event, "account_id", _get(row, "ConvertedAccountId"))
        _put(event, "source_partner", _first(row, SOURCE_PARTNER_COLUMNS))
        out.append(event)
        mql = _first(row, MQL_COLUMNS)
        if mql:
            out.append(
                {
                    "event_id": f"sf-lead-{lead}-mql",
                    "type": "mql",
                    "occurred_at": iso_time(mql),
                    "lead_id": person[lead],
                }
            )
    return out


def _touches(
    rows: Iterable[Row], person: Mapping[str, str], skipped: Counter[str]
) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for row in rows:
        if _get(row, "HasResponded").lower() == "false":
            skipped["CampaignMember: not responded"] += 1
            continue
        lead = _get(row, "LeadId")
        who = person.get(lead, lead) or _get(row, "ContactId")
        campaign = _first(row, CAMPAIGN_NAME_COLUMNS) or _get(row, "CampaignId")
        when = _get(row, "FirstRespondedDate") or _get(row, "CreatedDate")
        if not (_get(row, "Id") and who and campaign and when):
            skipped["CampaignMember: no Id, person, campaign or date"] += 1
            continue
        event: dict[str, object] = {
            "event_id": f"sf-cm-{row['Id']}",
            "type": "touch",
            "occurred_at": iso_time(when),
            "lead_id": who,
            "campaign": campaign,
        }
        _put(event, "action", _action(_get(row, "Status")))
        _put(event, "partner", _first(row, PARTNER_COLUMNS))
        _put(event, "channel", _first(row, CHANNEL_COLUMNS).lower())
        out.append(event)
    return out


def _action(status: str) -> str:
    """The member status as the touch's `action`, or "" (a plain touch) for a
    blank status or Salesforce's generic default `Responded`, which says no
    more than that the member responded (SPEC §1: absent = a plain touch)."""
    action = status.lower()
    return "" if action in GENERIC_STATUSES else action


def _opportunities(
    rows: Iterable[Row],
    roles: Iterable[Row],
    stages: Mapping[str, str],
    skipped: Counter[str],
) -> list[dict[str, object]]:
    contacts: dict[str, list[tuple[bool, str, str]]] = {}
    for role in roles:
        opp, contact = _get(role, "OpportunityId"), _get(role, "ContactId")
        if opp and contact:
            primary = _get(role, "IsPrimary").lower() == "true"
            contacts.setdefault(opp, []).append((not primary, _get(role, "CreatedDate"), contact))
    out: list[dict[str, object]] = []
    for row in rows:
        opp, created = _get(row, "Id"), _get(row, "CreatedDate")
        people = list(dict.fromkeys(c for *_, c in sorted(contacts.get(opp, []))))
        stage = stages.get(_get(row, "StageName").lower())
        if not opp or not created or not _get(row, "AccountId"):
            skipped["Opportunity: no Id, CreatedDate or AccountId"] += 1
            continue
        if not people:
            skipped["Opportunity: no contact roles"] += 1
            continue
        amount = _get(row, "Amount") or "0"
        event: dict[str, object] = {
            "event_id": f"sf-opp-{opp}",
            "type": "opportunity_created",
            "occurred_at": iso_time(created),
            "opportunity_id": opp,
            "account_id": row["AccountId"],
            "lead_ids": people,
            "business": _business(_get(row, "Type")),
            "arr": amount,
        }
        _put(event, "currency", _get(row, "CurrencyIsoCode"))
        _put(event, "source_partner", _first(row, SOURCE_PARTNER_COLUMNS))
        _put(event, "referral_partner", _first(row, REFERRAL_PARTNER_COLUMNS))
        out.append(event)
        if stage is None:
            skipped["Opportunity: stage not mapped (created only)"] += 1
            continue
        closed = stage in {"closed_won", "closed_lost"}
        when = _get(row, "CloseDate") if closed else ""
        when = when or _get(row, "LastStageChangeDate") or _get(row, "LastModifiedDate") or created
        # A CloseDate is a day: never before the creation moment of that same day.
        occurred = max(iso_time(when), str(event["occurred_at"]), key=datetime.fromisoformat)
        out.append(
            {
                "event_id": f"sf-opp-{opp}-{stage}-{amount}",
                "type": "opportunity_stage",
                "occurred_at": occurred,
                "opportunity_id": opp,
                "stage": stage,
                "arr": amount,
            }
        )
    return out


def _moment(event: Mapping[str, object]) -> datetime:
    return datetime.fromisoformat(str(event["occurred_at"]))


def _business(kind: str) -> str:
    """Salesforce ``Type``: existing-customer types are expansion, the rest new business."""
    lowered = kind.lower()
    return "expansion" if any(word in lowered for word in EXPANSION_TYPES) else "new_business"


def _get(row: Row, column: str) -> str:
    return (row.get(column) or "").strip()


def _first(row: Row, columns: Iterable[str]) -> str:
    return next((value for value in (_get(row, c) for c in columns) if value), "")


def _put(event: dict[str, object], name: str, value: str) -> None:
    if value:
        event[name] = value
