"""Position-based credit: exact fractions and largest-remainder integer splits.

These functions know nothing of leads or opportunities: they take touchpoints
already in event-time order and the positions picked for them, so the
U-shaped, W-shaped and Full Path models are one algorithm with three weight
tables (docs/attribution.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

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


def latest_at_or_before(points: Sequence[Touchpoint], moment: int) -> Touchpoint | None:
    """The last touchpoint with `ts <= moment` (points sorted)."""
    found = None
    for point in points:
        if point.ts > moment:
            break
        found = point
    return found


@dataclass(frozen=True, slots=True)
class Shares:
    """Credit per touchpoint as integer numerators over one common denominator.

    Exact like fractions, but the largest-remainder split and the sums are
    integer arithmetic: `Fraction` arithmetic was a fifth of settling a lead.
    """

    numerators: dict[Touchpoint, int]
    denominator: int

    def credit(self, point: Touchpoint) -> Fraction:
        return Fraction(self.numerators[point], self.denominator)


def allocate(
    positions: Mapping[str, Touchpoint | None],
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


def influenced_scopes(points: Iterable[Touchpoint], moment: int) -> set[str]:
    """Scopes with at least one touchpoint at or before `moment`."""
    return {scope for point in points if point.ts <= moment for scope in point.scopes}


def position_roles(positions: Mapping[str, Touchpoint | None]) -> dict[Touchpoint, tuple[str, ...]]:
    """Touchpoint → the positions it holds, for the "why this credit" breakdown."""
    roles: dict[Touchpoint, tuple[str, ...]] = {}
    for name, point in positions.items():
        if point is not None:
            roles[point] = (*roles.get(point, ()), name)
    return roles
