"""Typed input events (SPEC §1).

Every event is validated once, at the boundary, into one of these frozen
models; everything downstream (the engine, the workers) trusts them.  Unknown
extra fields are ignored so CRM exports with more columns still load.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from functools import cached_property
from typing import Annotated, Literal, TypeAlias

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

# Identifier and name limits: generous for real CRM ids, small enough that a
# hostile producer cannot blow up per-lead state or Redis keys.
EventId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Ident = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256)]


def _blank_is_absent(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


# Optional fields from CRM exports are often present but empty: that means absent.
OptIdent = Annotated[Ident | None, BeforeValidator(_blank_is_absent)]
OptName = Annotated[Name | None, BeforeValidator(_blank_is_absent)]
Money = Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=6, allow_inf_nan=False)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Count = Annotated[int, Field(ge=0, le=10**15)]


def _in_calendar(moment: datetime) -> datetime:
    """Refuse instants whose UTC date is outside years 1-9999 (e.g. 9999-12-31T23:00-05:00):
    daily series name UTC days, which must exist."""
    try:
        moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("the instant is outside the calendar in UTC") from None
    return moment


Instant = Annotated[AwareDatetime, AfterValidator(_in_calendar)]

MAX_CONTACTS = 200

Stage: TypeAlias = Literal["S1", "S2", "S3", "S4", "S5", "closed_won", "closed_lost"]
Business: TypeAlias = Literal["new_business", "expansion"]


class BaseEvent(BaseModel):
    """Fields every event carries; `occurred_at` must carry a UTC offset."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_max_length=4096)

    event_id: EventId
    occurred_at: Instant

    @cached_property
    def ts(self) -> int:
        """Event time as integer microseconds since the epoch: an exact sort key
        (read several times per event, so computed once)."""
        return to_micros(self.occurred_at)


def to_micros(moment: datetime) -> int:
    """Exact integer microseconds since the epoch (float timestamps would round)."""
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


EPOCH = datetime.fromisoformat("1970-01-01T00:00:00+00:00")


# --- topic `leads` -----------------------------------------------------------


class Touch(BaseEvent):
    """A lead's interaction with a campaign.  Without `action` it is a plain touch
    (most CRM exports carry none): it counts for attribution and influence and
    for no action-specific metric such as registrations or attendees."""

    type: Literal["touch"]
    lead_id: Ident
    campaign: Name
    channel: OptName = None
    action: OptName = None
    partner: OptIdent = None
    account_id: OptIdent = None


class LeadCreated(BaseEvent):
    type: Literal["lead_created"]
    lead_id: Ident
    account_id: OptIdent = None
    source_partner: OptIdent = None


class Mql(BaseEvent):
    type: Literal["mql"]
    lead_id: Ident


# --- topic `opportunities` ---------------------------------------------------


class OpportunityCreated(BaseEvent):
    type: Literal["opportunity_created"]
    opportunity_id: Ident
    account_id: Ident
    lead_ids: Annotated[list[Ident], Field(min_length=1, max_length=MAX_CONTACTS)]
    business: Business
    arr: Money
    currency: Currency = "USD"
    source_partner: OptIdent = None
    referral_partner: OptIdent = None


class OpportunityStage(BaseEvent):
    type: Literal["opportunity_stage"]
    opportunity_id: Ident
    stage: Stage
    arr: Money | None = None


# --- topic `integration-installs` --------------------------------------------


class IntegrationInstalled(BaseEvent):
    type: Literal["integration_installed"]
    account_id: Ident
    integration: Name
    partner: Ident


class IntegrationUninstalled(BaseEvent):
    type: Literal["integration_uninstalled"]
    account_id: Ident
    integration: Name
    partner: Ident


class IntegrationUsed(BaseEvent):
    type: Literal["integration_used"]
    account_id: Ident
    integration: Name
    partner: OptIdent = None


# --- extension topics --------------------------------------------------------


class AccountSnapshot(BaseEvent):
    type: Literal["account_snapshot"]
    account_id: Ident
    arr: Money
    health_score: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] | None = None
    churned: bool | None = None


class Goal(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    metric: Name
    target: Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]
    period_start: Instant | None = None
    period_end: Instant | None = None


class Campaign(BaseEvent):
    """A campaign registry entry; the latest by event time is the one in force."""

    type: Literal["campaign"]
    campaign: Name
    partner: OptIdent = None
    spend: Money = Decimal(0)
    goal: Goal | None = None


class CampaignStats(BaseEvent):
    type: Literal["campaign_stats"]
    campaign: Name
    impressions: Count
    clicks: Count


class PartnerFeedback(BaseEvent):
    type: Literal["partner_feedback"]
    partner: Ident
    score: Annotated[int, Field(ge=0, le=10)]


class ReferralSent(BaseEvent):
    type: Literal["referral_sent"]
    partner: Ident
    referral_id: Ident


class ReferralOutcome(BaseEvent):
    type: Literal["referral_outcome"]
    referral_id: Ident
    status: Literal["accepted", "won", "lost"]
    arr: Money | None = None


LeadEvent: TypeAlias = Touch | LeadCreated | Mql
OpportunityEvent: TypeAlias = OpportunityCreated | OpportunityStage
IntegrationEvent: TypeAlias = IntegrationInstalled | IntegrationUninstalled | IntegrationUsed
OtherEvent: TypeAlias = (
    IntegrationEvent
    | AccountSnapshot
    | Campaign
    | CampaignStats
    | PartnerFeedback
    | ReferralSent
    | ReferralOutcome
)
"""Events of the integration and extension topics (grouped in `models/groups.py`)."""

Event: TypeAlias = Annotated[
    Touch
    | LeadCreated
    | Mql
    | OpportunityCreated
    | OpportunityStage
    | IntegrationInstalled
    | IntegrationUninstalled
    | IntegrationUsed
    | AccountSnapshot
    | Campaign
    | CampaignStats
    | PartnerFeedback
    | ReferralSent
    | ReferralOutcome,
    Field(discriminator="type"),
]

# type -> (topic, key field).  The key decides the partition, so every event of
# one subject is handled by one worker, in order.
ROUTES: dict[str, tuple[str, str]] = {
    "touch": ("leads", "lead_id"),
    "lead_created": ("leads", "lead_id"),
    "mql": ("leads", "lead_id"),
    "opportunity_created": ("opportunities", "opportunity_id"),
    "opportunity_stage": ("opportunities", "opportunity_id"),
    "integration_installed": ("integration-installs", "account_id"),
    "integration_uninstalled": ("integration-installs", "account_id"),
    "integration_used": ("integration-installs", "account_id"),
    "account_snapshot": ("accounts", "account_id"),
    "campaign": ("campaigns", "campaign"),
    "campaign_stats": ("campaigns", "campaign"),
    "partner_feedback": ("partners", "partner"),
    # Both referral events are keyed by referral id (the outcome names no
    # partner), so one worker sees a referral's whole life.
    "referral_sent": ("partners", "referral_id"),
    "referral_outcome": ("partners", "referral_id"),
}

INPUT_TOPICS: tuple[str, ...] = tuple(dict.fromkeys(topic for topic, _ in ROUTES.values()))


def route(event: BaseEvent) -> tuple[str, str]:
    """The (topic, key) an event is published to."""
    topic, field = ROUTES[getattr(event, "type")]  # noqa: B009 - `type` is on every subclass
    return topic, str(getattr(event, field))
