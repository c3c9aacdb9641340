"""Which partner and channel a touch belongs to (SPEC §2).

Precedence, first match wins: the touch's own field, the campaign registry
entry, the naming convention.  Identifiers are normalised here, once, so the
same partner never shows up under two spellings.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

NO_PARTNER = "none"
"""The one "no partner" marker (any case) of SPEC §2; a blank means the same.
Not `na`, `n-a` or `-`: the spec names only `none`, and `na` is a region code
in the naming convention's own example (docs/attribution.md)."""

PARTNERS = "partners"
"""The any-partner scope (SPEC §4): every touchpoint that has a partner is in it,
so a conversion counts there once however many partners touched it."""


def normalise(name: str | None) -> str | None:
    """Lower-case and trimmed; `None` for absent or blank.

    Interned: campaign, channel, partner and account names repeat across the
    touches a worker keeps in memory, and one object per name is held.
    """
    if name is None:
        return None
    cleaned = " ".join(name.split()).lower()
    return sys.intern(cleaned) if cleaned else None


def partner_id(name: str | None) -> str | None:
    """A normalised partner id; `None` for absent, blank or `none` (any case)."""
    partner = normalise(name)
    return None if partner is None or partner == NO_PARTNER else partner


@dataclass(frozen=True, slots=True)
class ParsedName:
    valid: bool
    partner: str | None
    channel: str | None
    period: str | None = None
    """The naming convention's `period` group (`2026q3`, `2026-09`), if the pattern has one."""


class NameParser:
    """Applies the naming convention, memoising per campaign name."""

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self._pattern = pattern
        self._cache: dict[str, ParsedName] = {}

    def parse(self, campaign: str) -> ParsedName:
        """Partner and channel from a normalised campaign name, if it follows the convention."""
        hit = self._cache.get(campaign)
        if hit is None:
            match = self._pattern.match(campaign)
            if match is None:
                hit = ParsedName(False, None, None)
            else:
                groups = match.groupdict()
                hit = ParsedName(
                    True,
                    partner_id(groups.get("partner")),
                    normalise(groups.get("channel")),
                    normalise(groups.get("period")),
                )
            if len(self._cache) < 100_000:
                self._cache[campaign] = hit
        return hit


def resolve(
    parser: NameParser,
    registry: Mapping[str, str | None],
    campaign: str,
    partner: str | None,
    channel: str | None,
) -> tuple[str | None, str | None]:
    """(partner, channel) of a touch; all arguments already normalised.

    An explicit `none` in the touch's `partner` stops the search; an absent
    one falls back to the registry entry, then the name.  A registry entry
    saying `none` is held as no partner (`None`) and so falls back to the
    name: the spec stops the search only on the touch's own field.  The
    channel is the touch's, else the name's.
    """
    parsed = parser.parse(campaign)
    if partner is None:
        partner = registry.get(campaign) or parsed.partner
    return partner_id(partner), channel or parsed.channel


@lru_cache(maxsize=1 << 16)
def scopes_of(campaign: str, partner: str | None, channel: str | None) -> tuple[str, ...]:
    """`all`, then the campaign, `partners` and partner, and channel scopes where present.

    One definition for a touchpoint and for a campaign's own numbers (spend,
    impressions), so both land in exactly the same scopes.
    """
    scopes = ["all", f"campaign:{campaign}"]
    if partner:
        scopes += (PARTNERS, f"partner:{partner}")
    if channel:
        scopes.append(f"channel:{channel}")
    return tuple(scopes)
