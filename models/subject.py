"""Subjects: the bookkeeping every keyed state shares, its contribution and deltas.

The engine's one trick: a subject (a lead, an opportunity …) owns the set of
its input events, and its *contribution* to the metrics and credits is a pure
function of that set.  When the set changes, the new contribution is computed
and the difference to the last one is emitted as deltas: retractions of what
no longer holds and the new credit.  Running totals are sums of deltas, so
they always equal a full recomputation, whatever the arrival order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING

from models.attribution import Position, Shares, Touchpoint
from models.periods import MetricKey as MetricKey  # re-exported: every subject speaks it
from models.periods import series_point, with_totals

if TYPE_CHECKING:
    from models.context import Context


@dataclass(frozen=True, slots=True)
class CreditLine:
    """One touchpoint's share of one subject's conversion.

    `units` is the integer part of the subject's value this touchpoint gets:
    cents of ARR for an opportunity, millionths of a conversion for a lead.
    """

    credit: Fraction
    units: int
    scopes: tuple[str, ...]
    positions: tuple[str, ...]
    ts: int


@dataclass(frozen=True, slots=True)
class Contribution:
    metrics: Mapping[MetricKey, int]
    credits: Mapping[str, CreditLine]


EMPTY = Contribution({}, {})


@dataclass(frozen=True, slots=True)
class CreditDelta:
    """A change of one touchpoint's credit on one subject (`partnerpulse.credits`)."""

    subject: str
    touch_id: str
    scopes: tuple[str, ...]
    credit: Fraction
    units: int
    cause: str


@dataclass(slots=True)
class Deltas:
    """What one settle step changed: metric increments and credit deltas."""

    metrics: dict[MetricKey, int] = field(default_factory=dict)
    credits: list[CreditDelta] = field(default_factory=list)

    def bump(self, key: MetricKey, amount: int = 1) -> None:
        merge(self.metrics, {key: amount})

    def extend(self, other: Deltas) -> None:
        merge(self.metrics, other.metrics)
        self.credits.extend(other.credits)

    def __bool__(self) -> bool:
        return bool(self.metrics or self.credits)

    @property
    def totals(self) -> dict[MetricKey, int]:
        """The changes of the running totals: the metrics, each series point also
        counted in its metric's total (`with_totals`)."""
        return with_totals(self.metrics)


def diff(subject: str, old: Contribution, new: Contribution, cause: str) -> Deltas:
    """Deltas that turn `old` into `new`: a retraction for every line that moved."""
    out = Deltas({key: value for key, value in new.metrics.items() if value})
    merge(out.metrics, old.metrics, -1)
    for touch_id in sorted(old.credits.keys() | new.credits.keys()):
        before, after = old.credits.get(touch_id), new.credits.get(touch_id)
        if before == after:
            continue
        if before is not None and after is not None and before.scopes == after.scopes:
            credit, units = after.credit - before.credit, after.units - before.units
            if credit or units:
                out.credits.append(
                    CreditDelta(subject, touch_id, after.scopes, credit, units, cause)
                )
            continue
        if before is not None:
            out.credits.append(
                CreditDelta(subject, touch_id, before.scopes, -before.credit, -before.units, cause)
            )
        if after is not None:
            out.credits.append(
                CreditDelta(subject, touch_id, after.scopes, after.credit, after.units, cause)
            )
    return out


def merge(totals: dict[MetricKey, int], deltas: Mapping[MetricKey, int], sign: int = 1) -> None:
    """Add `sign` times `deltas` into `totals`, dropping keys that reach zero (the
    hot loop of settling: one call per subject instead of one per metric)."""
    for key, amount in deltas.items():
        value = totals.get(key, 0) + sign * amount
        if value:
            totals[key] = value
        else:
            totals.pop(key, None)


def credit_lines(
    shares: Shares,
    units: Mapping[Touchpoint, int],
    positions: Mapping[Touchpoint, tuple[str, ...]],
) -> dict[str, CreditLine]:
    """Touch id → credit line, for the touchpoints that got any credit."""
    return {
        point.touch_id: CreditLine(
            shares.credit(point),
            units[point],
            point.scopes,
            positions.get(point, (Position.MIDDLE.value,)),
            point.ts,
        )
        for point, share in shares.numerators.items()
        if share
    }


def count_scopes(
    metrics: dict[MetricKey, int], scopes: Iterable[str], name: str, n: int, day: str | None = None
) -> None:
    """Set `name` to `n` in each scope (a conversion counts once per scope): on its
    daily series point when the conversion has a `day` (`YYYY-MM-DD`, its
    moment), else on the running total itself.

    A metric with a series is published as its points only; its running total
    is derived from them wherever totals are kept (`with_totals`: the engine's
    totals, the sink's Lua), so a series sums to its total by construction and
    a contribution carries each value once."""
    if n:
        key = name if day is None else series_point(name, day)
        for scope in scopes:
            metrics[(scope, key)] = n


def add_scopes(
    metrics: dict[MetricKey, int], totals: Mapping[str, int], name: str, day: str | None = None
) -> None:
    """Add per-scope totals under metric `name`: on its series point on `day` if
    given (the running total derives from the points: `count_scopes`)."""
    get = metrics.get
    name = name if day is None else series_point(name, day)
    for scope, value in totals.items():
        if value:
            key = (scope, name)
            metrics[key] = get(key, 0) + value


NO_REPEATS: frozenset[int] = frozenset()
"""`Subject.repeats` of the (nearly all) subjects without a duplicate: one shared
object, where an empty set of each subject's own cost 216 bytes."""


@dataclass(slots=True)
class Subject:
    """What every keyed state keeps besides its own inputs.

    `seen` maps each event id to the delivery position (Kafka partition and
    offset, or line number) it was first admitted at: the same id at another
    position is a duplicate (counted once per position in `repeats`, then
    ignored), at a position already recorded a replay after a restart
    (ignored, not counted).  `newest` is the latest
    event time admitted, for the late-event counter; `cause` names the event
    behind the next deltas.  Both counters are part of the subject's
    contribution, so they are published as absolute values like every metric.
    """

    key: str
    seen: dict[str, int] = field(default_factory=dict)
    newest: int | None = None
    repeats: frozenset[int] = NO_REPEATS
    late: int = 0
    cause: str = ""
    contribution: Contribution = EMPTY
    sent: object = None
    """What a runtime last published of this subject, in its sink's own form (None:
    not known): a worker keeps this as the base of its next deltas, instead of
    the contribution's objects."""

    def admit(self, event_id: str, ts: int, position: int) -> bool:
        """Record an arriving event; False if it was admitted before."""
        first = self.seen.get(event_id)
        if first is not None:
            if first != position:
                self.repeats |= {position}  # rare: a new set rather than one per subject
            return False
        self.seen[event_id] = position
        if self.newest is not None and ts < self.newest:
            self.late += 1
        else:
            self.newest = ts
        self.cause = event_id
        return True

    def quality(self) -> dict[MetricKey, int]:
        """This subject's data-quality counters."""
        metrics: dict[MetricKey, int] = {}
        count_scopes(metrics, ("all",), "dq.duplicates_ignored", len(self.repeats))
        count_scopes(metrics, ("all",), "dq.late_events", self.late)
        return metrics

    def contribute(self, ctx: Context) -> Contribution:
        """The subject's current contribution (not published): here its data-quality
        counters; leads, opportunities and groups add their metrics and credits."""
        return Contribution(self.quality(), {})

    def publish(self, subject: str, new: Contribution) -> Deltas:
        """Replace the contribution and return the deltas to get there."""
        deltas = diff(subject, self.contribution, new, self.cause)
        self.contribution = new
        return deltas
