"""The simulated market: partners and how strong each is, campaign programmes,
channels, regions and slugs, and the figures typical of each channel."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

DAY: Final = 86_400
HOUR: Final = 3_600


@dataclass(frozen=True, slots=True)
class Partner:
    """A simulated partner and how strong it is on each dimension."""

    id: str
    strength: float  # relative reach of its campaigns in lead journeys
    install_rate: float  # chance that an engaged account installs its integration
    win_boost: float  # added win probability of deals it is involved in
    nps_mean: float  # centre of the feedback scores it gives us
    integrations: tuple[str, ...]


PARTNERS: Final[tuple[Partner, ...]] = (
    Partner("salesforce", 1.3, 0.40, 0.12, 7.2, ("salesforce-connector", "salesforce-cpq")),
    Partner("slack", 1.1, 0.35, 0.10, 8.6, ("slack-app",)),
    Partner("hubspot", 0.9, 0.30, 0.06, 7.8, ("hubspot-crm-sync",)),
    Partner("snowflake", 0.7, 0.15, 0.15, 8.8, ("snowflake-share",)),
    Partner("zoom", 0.6, 0.25, 0.02, 8.0, ("zoom-meetings", "zoom-webinars")),
    Partner("atlassian", 0.5, 0.20, 0.03, 6.9, ("jira-cloud", "confluence-macro")),
    Partner("stripe", 0.4, 0.12, 0.05, 8.2, ("stripe-billing",)),
    Partner("segment", 0.3, 0.10, -0.02, 6.2, ("segment-source",)),
)

RATES_TO_USD: Final[dict[str, float]] = {"USD": 1.0, "EUR": 1.08, "GBP": 1.27}

PROGRAMS: Final = ("ptnr", "dg", "abm", "evt")
PROGRAM_WEIGHTS: Final = (40, 30, 15, 15)
CHANNELS_BY_PROGRAM: Final[dict[str, tuple[str, ...]]] = {
    "ptnr": ("webinar", "webinar", "event", "content", "email", "referral"),
    "dg": ("paid-social", "search", "email", "content", "webinar"),
    "abm": ("email", "paid-social", "event", "content"),
    "evt": ("event", "event", "webinar"),
}
REGIONS: Final = ("na", "emea", "apac", "latam")
REGION_WEIGHTS: Final = (45, 30, 15, 10)
SLUGS: Final[dict[str, tuple[str, ...]]] = {
    "webinar": ("ai-support", "data-cloud", "lunch-learn", "product-tour", "best-practices"),
    "event": ("summit", "roadshow", "user-group", "dinner", "hackathon"),
    "paid-social": ("retargeting", "brand", "lookalike", "launch"),
    "email": ("newsletter", "nurture", "trial-nurture", "winback"),
    "content": ("ebook-roi", "state-of-report", "playbook", "case-study"),
    "search": ("competitor", "brand-terms", "generic"),
    "referral": ("partner-referral", "spiff", "co-sell"),
}
CHANNEL_WEIGHT: Final[dict[str, float]] = {
    "webinar": 1.0,
    "event": 0.8,
    "paid-social": 1.2,
    "email": 1.1,
    "content": 1.0,
    "search": 1.3,
    "referral": 0.4,
}
SPEND: Final[dict[str, tuple[float, float]]] = {
    "webinar": (3_000, 15_000),
    "event": (20_000, 80_000),
    "paid-social": (10_000, 50_000),
    "email": (1_000, 5_000),
    "content": (2_000, 10_000),
    "search": (15_000, 60_000),
    "referral": (0, 5_000),
}
# Names that break the naming convention (name, channel, registry partner).
OFF_CONVENTION: Final[tuple[tuple[str, str, str | None], ...]] = (
    ("Spring Promo", "email", None),
    ("webinar-ai", "webinar", None),
    ("Slack Roadshow 2026", "event", "slack"),
    ("HubSpot co-marketing newsletter", "email", "hubspot"),
)
EXPORTED_ACTIONS: Final = frozenset({"registered", "attended"})
"""The actions a touch may carry: CRM exports record a member status for event
sign-ups and attendance (and lose it for about 40 % of them, a generic
"Responded"); clicks, views, opens, replies, downloads, visits and referrals
arrive as plain touches (no `action`, SPEC §1): about two thirds of touches."""
N_CONVENTIONAL: Final = 36
JOURNEY_LENGTHS: Final = (1, 2, 3, 4, 5, 6, 7, 8)
JOURNEY_WEIGHTS: Final = (20, 22, 18, 14, 10, 7, 5, 4)
