"""Subjects of the extension topics: accounts, campaigns, partner feedback, referrals.

Each *group* is the set of events that share a Kafka key within one family
(docs/metrics.md): an account's integration events and account snapshots
(both keyed by `account_id`), a campaign's registry entries and stats, a
partner's feedback, a referral's `referral_sent` and outcomes (both keyed by
`referral_id`).  One worker sees a whole group, so its metrics are a pure
function of the group's events, exactly like a lead's or an opportunity's:
no joins across keys, no wall clock, no arrival order.

Data quality of these topics stays with the plain per-topic `Subject`s (late
events are per topic and key); a group only publishes metrics.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import TypeAlias, TypeVar

from models.config import DAY_US
from models.context import Context
from models.derived import goal_member, is_goal_metric
from models.events import (
    EPOCH,
    AccountSnapshot,
    Campaign,
    CampaignStats,
    Goal,
    IntegrationInstalled,
    IntegrationUninstalled,
    IntegrationUsed,
    OtherEvent,
    PartnerFeedback,
    ReferralOutcome,
    ReferralSent,
    route,
    to_micros,
)
from models.output import unit_of
from models.partners import PARTNERS, normalise, partner_id, resolve, scopes_of
from models.periods import Calendar, day_name, day_number, series_point
from models.subject import Contribution, Deltas, MetricKey, Subject, add_scopes

Metrics: TypeAlias = dict[MetricKey, int]
T = TypeVar("T")
E = TypeVar("E", bound=OtherEvent)

FAMILIES: dict[str, str] = {
    "integration_installed": "account",
    "integration_uninstalled": "account",
    "integration_used": "account",
    "account_snapshot": "account",
    "campaign": "campaign",
    "campaign_stats": "campaign",
    "partner_feedback": "feedback",
    "referral_sent": "referral",
    "referral_outcome": "referral",
}
"""Event type → group family.  The subject is `<family>:<Kafka key>`."""


def group_key(event: OtherEvent) -> tuple[str, str]:
    """(family, Kafka key): the events sharing it form one subject."""
    return FAMILIES[event.type], route(event)[1]


@dataclass(slots=True)
class GroupState(Subject):
    """One group's events; its contribution is recomputed from all of them.

    Events reach a group only once admitted by their topic's subject, which
    deduplicates and counts them; so a group keeps no delivery positions.
    """

    family: str = ""
    events: dict[str, OtherEvent] = field(default_factory=dict)
    """By id, in arrival order until `in_order` sorts them."""
    unsorted: bool = False
    """An event arrived before one already held: `events` is out of order."""

    def ingest(self, event: OtherEvent) -> bool:
        """Add one event; False when it is held already (the same id on another topic)."""
        events = self.events
        if event.event_id in events:
            return False
        if events and not self.unsorted:
            self.unsorted = _event_order(event) < _event_order(next(reversed(events.values())))
        events[event.event_id] = held(event)
        return True

    def in_order(self) -> list[OtherEvent]:
        """The events in event-time order.  Sorted only after a late arrival, and
        kept sorted: a group settles on every batch that touches it, nearly always
        with events newer than all it holds."""
        if self.unsorted:
            ordered = sorted(self.events.values(), key=_event_order)
            self.events = {event.event_id: event for event in ordered}
            self.unsorted = False
        return list(self.events.values())

    def settle(self, ctx: Context) -> Deltas:
        return self.publish(f"{self.family}:{self.key}", self.contribute(ctx))

    def contribute(self, ctx: Context) -> Contribution:
        """The group's current contribution (not published)."""
        return Contribution(FAMILY_METRICS[self.family](self.in_order(), ctx), {})


def held(event: OtherEvent) -> OtherEvent:
    """`event`, made cheaper to keep: its names interned and its set of field names
    one object per combination.  Changed in place (6x faster than a copy): the
    engine is the parsed event's last user, and neither change alters its value.

    A worker caches groups (`PP_STATE_CACHE`), each with all its events.  A
    parsed event carries a set of the fields it was given (pydantic's
    `model_fields_set`, about 700 bytes, more than its values) and its own copy
    of every name; kept as parsed, an integration event cost 1.2 KiB, held like
    this about 0.5 KiB.  Events are frozen, so the shared set is never changed.
    """
    values = event.__dict__
    for name, value in values.items():
        if value.__class__ is str and name != "event_id":
            values[name] = sys.intern(value)
    object.__setattr__(event, "__pydantic_fields_set__", _given(frozenset(event.model_fields_set)))
    return event


@lru_cache(maxsize=256)
def _given(names: frozenset[str]) -> set[str]:
    """One `model_fields_set` object per combination of field names (`held`)."""
    return set(names)


# --- shared helpers ------------------------------------------------------------


def _event_order(event: OtherEvent) -> tuple[int, str]:
    return event.ts, event.event_id


def day_of(ts: int) -> int:
    """UTC day number (days since 1970-01-01) of an event time in microseconds."""
    return ts // DAY_US


def bump(
    metrics: Metrics, scopes: Iterable[str], name: str, n: int = 1, day: int | None = None
) -> None:
    """Add `n` to metric `name` in every scope, and to its series point on `day` if given."""
    add_scopes(metrics, dict.fromkeys(scopes, n), name, None if day is None else day_name(day))


def latest_value(values: Iterable[T | None]) -> T | None:
    """The last value that is present: events are in event-time order, so the latest."""
    found = None
    for value in values:
        if value is not None:
            found = value
    return found


def of_type(events: Iterable[OtherEvent], kind: type[E]) -> list[E]:
    """The events of one type, in event-time order."""
    return [event for event in events if isinstance(event, kind)]


def depth_bucket(active: int) -> str:
    """`0`, `1`, `2`, `3` or `4+` active integrations (SPEC §4)."""
    return "4+" if active >= 4 else str(active)


# --- accounts: integrations and account health ----------------------------------


@dataclass(slots=True)
class Integration:
    """One integration of one account: its lifecycle and the days it was used."""

    name: str
    lifecycle: list[tuple[int, bool]] = field(default_factory=list)
    """(day, installed?) of each install / uninstall, in event-time order."""
    use_days: list[int] = field(default_factory=list)
    partner: str | None = None
    """The partner of its latest install or uninstall, else of its latest use that names one."""

    @property
    def scopes(self) -> tuple[str, ...]:
        if self.partner is None:
            return ("all", f"integration:{self.name}")
        partner = f"partner:{self.partner}"
        return ("all", PARTNERS, partner, f"integration:{self.partner}/{self.name}")

    def active_runs(self, window: int) -> list[tuple[int, int]]:
        """The [first, end) day ranges in which the integration was active.

        Active on day D: installed at the end of D (its latest install or
        uninstall by then is an install; usage before any such event implies
        an install before the stream began) and used on one of the `window`
        days ending with D since it was last installed: an uninstall ends
        the activity, and a reinstall is active only once used again.
        """
        gaps = self.uninstalled_spans()
        runs: list[tuple[int, int]] = []
        for day in self.use_days:
            gap = next((g for g in gaps if g[1] > day), None)  # the gap at or after `day`
            if gap is not None and gap[0] <= day:
                continue  # used while uninstalled
            end = day + window if gap is None else min(day + window, gap[0])
            if runs and day <= runs[-1][1]:
                runs[-1] = (runs[-1][0], max(runs[-1][1], end))
            else:
                runs.append((day, end))
        return runs

    def uninstalled_spans(self) -> list[tuple[int, int]]:
        """[first, end) day ranges ending uninstalled; the last may be open-ended."""
        end_of_day: dict[int, bool] = {}
        for day, installed in self.lifecycle:
            end_of_day[day] = installed  # event-time order: the day's last event wins
        spans: list[tuple[int, int]] = []
        since: int | None = None
        for day, installed in end_of_day.items():
            if not installed and since is None:
                since = day
            elif installed and since is not None:
                spans.append((since, day))
                since = None
        if since is not None:
            spans.append((since, FOREVER))
        return spans


LAST_DAY = (date.max - EPOCH.date()).days
"""Day number of 9999-12-31, the last day a series point can name."""
FOREVER = 1 << 40
"""A day number beyond any event time: the end of a span that has not ended."""


def integrations_of(events: Sequence[OtherEvent]) -> dict[str, Integration]:
    """Each integration's history, by normalised integration name."""
    found: dict[str, Integration] = {}
    used_by: dict[str, str] = {}
    for event in events:
        if not isinstance(event, IntegrationInstalled | IntegrationUninstalled | IntegrationUsed):
            continue
        name = normalise(event.integration) or ""
        item = found.setdefault(name, Integration(name))
        partner = partner_id(event.partner)
        if isinstance(event, IntegrationUsed):
            item.use_days.append(day_of(event.ts))
            if partner is not None:
                used_by[name] = partner
        else:
            item.lifecycle.append((day_of(event.ts), isinstance(event, IntegrationInstalled)))
            item.partner = partner
    for name, item in found.items():
        if item.partner is None:
            item.partner = used_by.get(name)
    return found


def account_metrics(events: Sequence[OtherEvent], ctx: Context) -> Metrics:
    """Installs, uninstalls, activity (headline and daily), depth, cohort.

    The headline `integrations.active` and the depth bucket are as of the UTC
    day of the account's latest event.  The daily series are flows, additive
    like installs: `integrations.activations@D` / `deactivations@D` count the
    integrations that became active / inactive on day D, so the number active
    on D is their running sum (`models.derived.running_total`); a series of
    levels would re-publish every day of every account on each new event.
    """
    metrics: Metrics = {}
    window = ctx.config.activity_days
    integrations = integrations_of(events)
    for event in events:
        if isinstance(event, IntegrationInstalled | IntegrationUninstalled):
            name = "installs" if isinstance(event, IntegrationInstalled) else "uninstalls"
            scopes = integrations[normalise(event.integration) or ""].scopes
            bump(metrics, scopes, f"integrations.{name}", day=day_of(event.ts))
    runs = {name: item.active_runs(window) for name, item in integrations.items()}
    for name, item_runs in runs.items():
        for first, end in item_runs:
            scopes = integrations[name].scopes
            bump(metrics, scopes, series_point("integrations.activations", day_name(first)))
            if end <= LAST_DAY:  # else it ends after the calendar does: never, in effect
                bump(metrics, scopes, series_point("integrations.deactivations", day_name(end)))

    def active_on(day: int) -> list[str]:
        return [name for name, spans in runs.items() if any(a <= day < b for a, b in spans)]

    def depth(day: int) -> int:
        return len(active_on(day))

    today = day_of(events[-1].ts)
    for name in active_on(today):
        bump(metrics, integrations[name].scopes, "integrations.active")
    bump(metrics, ("all",), f"accounts.depth.{depth_bucket(depth(today))}")

    cohort_metrics(metrics, of_type(events, AccountSnapshot), depth, ctx)
    return metrics


def cohort_metrics(
    metrics: Metrics, snapshots: list[AccountSnapshot], depth: Callable[[int], int], ctx: Context
) -> None:
    """One account in the cohort below or at/above the depth threshold.

    The side is decided by the depth on the day of the latest snapshot that
    does not report churn (the last look at the live account: a churning
    account stops using its integrations, so measuring after churn would
    credit the churn to shallow depth); ARR, health and churn are the latest
    reported.  A churned account's ARR is lost, so `arr` sums live accounts
    only and ACV divides by them.
    """
    if not snapshots:
        return
    live = [s for s in snapshots if not s.churned]
    observed = live[-1] if live else snapshots[0]
    side = "above" if depth(day_of(observed.ts)) >= ctx.config.depth_threshold else "below"
    cohort = ("all",)
    bump(metrics, cohort, f"cohort.{side}.accounts")
    if latest_value(s.churned for s in snapshots):
        bump(metrics, cohort, f"cohort.{side}.churned")
    else:
        cents = ctx.to_cents(snapshots[-1].arr, ctx.config.reporting_currency)
        bump(metrics, cohort, f"cohort.{side}.arr", cents)
    health = latest_value(s.health_score for s in snapshots)
    if health is not None:
        bump(metrics, cohort, f"cohort.{side}.health_sum", hundredths(health))
        bump(metrics, cohort, f"cohort.{side}.health_count")


def hundredths(score: float) -> int:
    """A health score in integer hundredths of a point, rounded half up (exact sums)."""
    return int((Decimal(repr(score)) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


# --- campaigns: spend, reach, goals ---------------------------------------------


def campaign_metrics(events: Sequence[OtherEvent], ctx: Context) -> Metrics:
    """Spend and goal of the registry entry in force, and the latest cumulative stats.

    The campaign's own numbers land in the same scopes as its touchpoints:
    its partner is the registry entry's, else the name's (the precedence of
    SPEC §2 without a touch), its channel the name's.
    """
    metrics: Metrics = {}
    entries, all_stats = of_type(events, Campaign), of_type(events, CampaignStats)
    entry = entries[-1] if entries else None
    stats = all_stats[-1] if all_stats else None
    campaign = normalise(route(events[0])[1]) or ""
    registry = {campaign: partner_id(entry.partner)} if entry is not None else {}
    partner, channel = resolve(ctx.parser, registry, campaign, None, None)
    scopes = scopes_of(campaign, partner, channel)
    if stats is not None:
        bump(metrics, scopes, "campaigns.impressions", stats.impressions)
        bump(metrics, scopes, "campaigns.clicks", stats.clicks)
    if entry is None:
        return metrics
    bump(
        metrics, scopes, "campaigns.spend", ctx.to_cents(entry.spend, ctx.config.reporting_currency)
    )
    if entry.goal is not None:
        calendar = Calendar(ctx.config.fiscal_year_start)
        period = goal_period(entry.goal, ctx.parser.parse(campaign).period, calendar)
        goal_metrics(metrics, campaign, scopes, entry.goal, period)
    return metrics


def goal_metrics(
    metrics: Metrics,
    campaign: str,
    owners: Sequence[str],
    goal: Goal,
    period: tuple[int, int] | None,
) -> None:
    """The goal's target in every owner scope, and which campaign's goal it is.

    Owners are the campaign and every scope above it (`all`, its partner,
    `partners`, its channel): each sums its campaigns' targets, and lists
    them (`goal.of:<metric>:<campaign>` = target) so a reader can sum their
    actuals, each over its own period (`models.derived.goal_progress`).  The
    period is stored in the campaign's scope only, weighted by the target so
    that it stays additive.  The target is written in the unit `recompute
    --json` shows the metric in (cents for ARR) and stored in the metric's
    stored unit.  A goal naming something that cannot be a metric (with `@`
    or `:`) measures nothing and is left out.
    """
    metric = normalise(goal.metric) or ""
    if not is_goal_metric(metric):
        return
    target = int((goal.target * unit_of(metric)).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    bump(metrics, owners, f"goal.target:{metric}", target)
    bump(metrics, owners, goal_member(metric, campaign), target)
    if period is not None:
        own = (f"campaign:{campaign}",)
        bump(metrics, own, f"goal.start:{metric}", target * period[0])
        bump(metrics, own, f"goal.end:{metric}", target * period[1])


def goal_period(goal: Goal, name_period: str | None, calendar: Calendar) -> tuple[int, int] | None:
    """[start, end) as UTC day numbers: the goal's own period, else the campaign name's.

    Whole days: the start is rounded down and the end up to a day boundary.
    The name's period (`2026q3`, `2026-09`) is read with the fiscal calendar.
    """
    if goal.period_start is not None and goal.period_end is not None:
        start, end = to_micros(goal.period_start), to_micros(goal.period_end)
        return day_of(start), -(-end // DAY_US)
    if name_period is None:
        return None
    try:
        window = calendar.period(name_period)
    except ValueError:
        return None
    return day_number(window.first), day_number(window.last) + 1


# --- partner feedback and referrals ---------------------------------------------


def feedback_metrics(events: Sequence[OtherEvent], ctx: Context) -> Metrics:
    """NPS counts: every response; promoters score 9 to 10, detractors 0 to 6; each
    on the response's day (a quarter's NPS is that quarter's answers)."""
    metrics: Metrics = {}
    for event in events:
        if not isinstance(event, PartnerFeedback):
            continue
        partner = partner_id(event.partner)
        if partner is None:
            continue
        scopes, day = ("all", PARTNERS, f"partner:{partner}"), day_of(event.ts)
        bump(metrics, scopes, "nps.responses", day=day)
        if event.score >= 9:
            bump(metrics, scopes, "nps.promoters", day=day)
        elif event.score <= 6:
            bump(metrics, scopes, "nps.detractors", day=day)
    return metrics


def referral_metrics(events: Sequence[OtherEvent], ctx: Context) -> Metrics:
    """A deal we referred to a partner: sent, accepted, won and its won ARR.

    The partner comes from the earliest `referral_sent`; without one the
    referral is not counted (an outcome alone names no partner).  Won implies
    accepted, and a later `lost` undoes neither (as for our own conversions).
    The ARR is the latest outcome's that carries one.  Days, as for our own
    pipeline: sent on the earliest `referral_sent`, accepted on the earliest
    outcome that accepted or won it, won and its ARR on the earliest win.
    """
    metrics: Metrics = {}
    sent = of_type(events, ReferralSent)
    partner = partner_id(sent[0].partner) if sent else None
    if partner is None:
        return metrics
    scopes = ("all", PARTNERS, f"partner:{partner}")
    outcomes = of_type(events, ReferralOutcome)
    bump(metrics, scopes, "referrals.sent", day=day_of(sent[0].ts))
    accepted = next((o for o in outcomes if o.status in ("accepted", "won")), None)
    if accepted is not None:
        bump(metrics, scopes, "referrals.accepted", day=day_of(accepted.ts))
    won = next((o for o in outcomes if o.status == "won"), None)
    if won is not None:
        bump(metrics, scopes, "referrals.won", day=day_of(won.ts))
        arr = latest_value(o.arr for o in outcomes)
        if arr is not None:
            cents = ctx.to_cents(arr, ctx.config.reporting_currency)
            bump(metrics, scopes, "referrals.won_arr", cents, day=day_of(won.ts))
    return metrics


FAMILY_METRICS: dict[str, Callable[[Sequence[OtherEvent], Context], Metrics]] = {
    "account": account_metrics,
    "campaign": campaign_metrics,
    "feedback": feedback_metrics,
    "referral": referral_metrics,
}
