"""Position-based credit: exact fractions and largest-remainder integer splits.

These functions know nothing of leads or opportunities: they take touchpoints
already in event-time order and the positions picked for them, so the
U-shaped, W-shaped and Full Path models are one algorithm with three weight
tables (docs/attribution.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from functools import lru_cache

from models.config import Weights
from models.partners import scopes_of


@dataclass(frozen=True, slots=True, order=True)
class Touchpoint:
    """A lead's first touch of one campaign, with its resolved scopes.

    Ordering is by `(ts, touch_id)`: the spec's event-time order, with the
    event id breaking ties so every replica sorts identically.
    """

    ts: int
    touch_id: str
    lead_id: str
    campaign: str
    partner: str | None
    channel: str | None

    @property
    def scopes(self) -> tuple[str, ...]:
        """`all`, then campaign, partner and channel scopes where present."""
        return scopes_of(self.campaign, self.partner, self.channel)


Moment = tuple[int, str]
"""A conversion moment as `(ts, event_id)` of the event that made it: "at or
before" compares a touchpoint's `(ts, touch_id)` with it, the spec's one order."""


class Position(StrEnum):
    """A touchpoint's role in a position-based model.

    The values are what the credit breakdown stores in Redis and prints, and
    the keys of `Weights.positions` (a `StrEnum` member equals its value).
    """

    FT = "ft"
    LC = "lc"
    OC = "oc"
    CW = "cw"
    PENDING = "pending"
    """Full Path's CW share while the opportunity is open: on its latest touchpoint."""
    MIDDLE = "middle"
    """A touchpoint between the key positions, holding none of them."""


Positions = dict[Position, "Touchpoint | None"]


def eligible(
    points: Sequence[Touchpoint], moment: Moment, lookback_us: int | None
) -> list[Touchpoint]:
    """The touchpoints that count for a conversion at `moment` (points sorted):
    at or before it, and not more than the lookback window before it."""
    return within(points, None if lookback_us is None else moment[0] - lookback_us, moment)


def within(points: Sequence[Touchpoint], start: int | None, end: Moment | None) -> list[Touchpoint]:
    """The touchpoints from `start` (a timestamp, inclusive: a touchpoint exactly
    on a lookback window's edge still counts) to `end` (at or before, by
    `(ts, event_id)`); `None` leaves that side open.  Points sorted."""
    found = []
    for point in points:
        if end is not None and (point.ts, point.touch_id) > end:
            break
        if start is None or point.ts >= start:
            found.append(point)
    return found


def latest_at_or_before(points: Sequence[Touchpoint], moment: Moment) -> Touchpoint | None:
    """The last touchpoint at or before `moment` by `(ts, event_id)` (points sorted)."""
    found = None
    for point in points:
        if (point.ts, point.touch_id) > moment:
            break
        found = point
    return found


def u_shaped_positions(points: Sequence[Touchpoint]) -> Positions:
    """A lead's FT and LC: the first and last of its eligible touchpoints."""
    return {
        Position.FT: points[0] if points else None,
        Position.LC: points[-1] if points else None,
    }


def w_shaped_positions(points: Sequence[Touchpoint], lc: Touchpoint | None) -> Positions:
    """An opportunity's FT, LC, OC among its touchpoints eligible at creation.

    FT and OC are the first and last eligible touchpoints; LC is the earliest
    contact LC, held only if it is eligible itself (at or before creation,
    inside the lookback window).
    """
    return {
        Position.FT: points[0] if points else None,
        Position.LC: lc if lc is not None and lc in points else None,
        Position.OC: points[-1] if points else None,
    }


def full_path_positions(
    points: Sequence[Touchpoint], lc: Touchpoint | None, created: Moment
) -> Positions:
    """W-shaped's FT, LC, OC plus CW, the latest eligible touchpoint.

    `points` runs to the close (or to now while open), so OC is the latest
    at or before creation rather than the last of them.  While the deal is
    open CW is its *Pending* share (`position_roles(..., pending=True)`).
    """
    return {
        Position.FT: points[0] if points else None,
        Position.LC: lc if lc is not None and lc in points else None,
        Position.OC: latest_at_or_before(points, created),
        Position.CW: points[-1] if points else None,
    }


@dataclass(frozen=True, slots=True)
class Shares:
    """Credit per touchpoint as integer numerators over one common denominator.

    Exact like fractions, but the largest-remainder split and the sums are
    integer arithmetic: `Fraction` arithmetic was a fifth of settling a lead.
    """

    numerators: dict[Touchpoint, int]
    denominator: int

    def credit(self, point: Touchpoint) -> Fraction:
        return _fraction(self.numerators[point], self.denominator)


@lru_cache(maxsize=4096)
def _fraction(numerator: int, denominator: int) -> Fraction:
    """A credit as a `Fraction`, one object per value: the same few shares (1/2,
    2/5, ...) recur on every settle, and normalising each anew was a twentieth of
    settling a lead.  Fractions are immutable, so sharing them is safe."""
    return Fraction(numerator, denominator)


def allocate(
    positions: Mapping[Position, Touchpoint | None],
    eligible: Sequence[Touchpoint],
    weights: Weights,
) -> Shares:
    """Credit per touchpoint; sums to exactly 1 whenever any position is held.

    A touchpoint holding several positions adds their weights.  The weight of
    an empty position, and the middle weight when no touchpoint is left for
    it, is shared evenly by the positions that are held.  Middle touchpoints
    are the eligible ones that hold no position.
    """
    held = {name: point for name, point in positions.items() if point is not None}
    if not held:
        return Shares({}, 1)
    holders = set(held.values())
    middle = [point for point in eligible if point not in holders]
    # weights as numerators over `base`; a held position's share is
    # (its weight + unused / h), a middle one's middle / m: all over base*h*m
    base, numerator, middle_numerator = weights.integers
    unused = sum(n for name, n in numerator.items() if name not in held)
    if not middle:
        unused += middle_numerator
    h, m = len(held), max(len(middle), 1)
    shares: dict[Touchpoint, int] = {}
    for name, point in held.items():
        shares[point] = shares.get(point, 0) + (numerator[name] * h + unused) * m
    for point in middle:
        shares[point] = middle_numerator * h
    return Shares(shares, base * h * m)


def split_integer(total: int, shares: Shares) -> dict[Touchpoint, int]:
    """Split `total` units by `shares` (summing to 1) with the largest-remainder method.

    Each part is floored, then the units left go one each to the largest
    remainders; ties go to the earlier touchpoint.  The parts add up to
    `total` exactly and depend only on the inputs, so a replay gives the
    same cents.
    """
    if not shares.numerators:
        return {}
    parts: dict[Touchpoint, int] = {}
    remainders: list[tuple[int, Touchpoint]] = []
    for point, share in shares.numerators.items():
        whole, remainder = divmod(share * total, shares.denominator)
        parts[point] = whole
        remainders.append((-remainder, point))
    left = total - sum(parts.values())
    remainders.sort()
    for _, point in remainders[:left]:
        parts[point] += 1
    return parts


def scope_totals(parts: Iterable[tuple[Sequence[str], int]]) -> dict[str, int]:
    """Sum integer parts per scope: `(scopes, value)` pairs in, scope → total out."""
    totals: dict[str, int] = {}
    for scopes, value in parts:
        for scope in scopes:
            totals[scope] = totals.get(scope, 0) + value
    return totals


def influenced_scopes(
    points: Sequence[Touchpoint], moment: Moment, lookback_us: int | None
) -> set[str]:
    """Scopes with at least one touchpoint eligible for the conversion at `moment`.

    `partners` is among a partner touchpoint's scopes, so a conversion two
    partners touched is in it once.
    """
    return {scope for point in eligible(points, moment, lookback_us) for scope in point.scopes}


def position_roles(
    positions: Mapping[Position, Touchpoint | None], *, pending: bool = False
) -> dict[Touchpoint, tuple[str, ...]]:
    """Touchpoint → the positions it holds (their string values), for the
    "why this credit" breakdown; `pending` shows CW as Pending (an open deal)."""
    roles: dict[Touchpoint, tuple[str, ...]] = {}
    for name, point in positions.items():
        if point is not None:
            shown = Position.PENDING if pending and name is Position.CW else name
            roles[point] = (*roles.get(point, ()), shown.value)
    return roles
