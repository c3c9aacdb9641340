"""Engine configuration: every rule parameter the spec calls configurable.

One immutable object is handed to the engine by both the batch oracle and the
streaming workers, so the two cannot drift apart on a setting.
"""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction
from functools import cached_property
from math import lcm
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DAY_US = 86_400 * 1_000_000

STAGE_ORDER: dict[str, int] = {
    "S1": 1,
    "S2": 2,
    "S3": 3,
    "S4": 4,
    "S5": 5,
    "closed_won": 6,
}
"""Rank of each stage on the way to a win.  `closed_lost` has no rank: losing
at S1 is not reaching S2 (docs/attribution.md)."""

DEFAULT_NAMING = (
    r"^(?P<period>\d{4}(?:q[1-4]|-\d{2}))_(?P<program>[a-z0-9-]+)_(?P<partner>[a-z0-9-]+)"
    r"_(?P<channel>[a-z0-9-]+)_(?P<region>[a-z0-9-]+)_(?P<slug>[a-z0-9][a-z0-9_.-]*)$"
)


class Weights(BaseModel):
    """Position weights of one model; `middle` is shared by the other touchpoints."""

    model_config = ConfigDict(frozen=True)

    positions: dict[str, Fraction]
    middle: Fraction

    @model_validator(mode="after")
    def _sums_to_one(self) -> Weights:
        if sum(self.positions.values(), self.middle) != 1:
            raise ValueError("position and middle weights must sum to exactly 1")
        if any(w < 0 for w in self.positions.values()) or self.middle < 0:
            raise ValueError("weights must not be negative")
        return self

    @cached_property
    def integers(self) -> tuple[int, dict[str, int], int]:
        """(denominator, position numerators, middle numerator): the weights over
        their least common denominator, for exact integer arithmetic."""
        denominator = lcm(*(w.denominator for w in (*self.positions.values(), self.middle)))
        numerators = {name: int(w * denominator) for name, w in self.positions.items()}
        return denominator, numerators, int(self.middle * denominator)


def _w(**shares: str) -> Weights:
    middle = Fraction(shares.pop("middle"))
    return Weights(positions={k: Fraction(v) for k, v in shares.items()}, middle=middle)


class EngineConfig(BaseModel):
    """All attribution and metric settings; defaults are the spec's."""

    model_config = ConfigDict(frozen=True)

    model: Literal["w-shaped", "full-path"] = "w-shaped"
    mapping: Literal["contact-role", "account"] = "contact-role"
    w_shaped: Weights = Field(
        default_factory=lambda: _w(ft="3/10", lc="3/10", oc="3/10", middle="1/10")
    )
    full_path: Weights = Field(
        default_factory=lambda: _w(ft="9/40", lc="9/40", oc="9/40", cw="9/40", middle="1/10")
    )
    u_shaped: Weights = Field(default_factory=lambda: _w(ft="2/5", lc="2/5", middle="1/5"))
    qualifying_stage: Literal["S1", "S2", "S3", "S4", "S5", "closed_won"] = "S2"
    naming_pattern: str = DEFAULT_NAMING
    reporting_currency: str = "USD"
    rates: dict[str, Decimal] = Field(
        default_factory=lambda: {"USD": Decimal(1), "EUR": Decimal("1.08"), "GBP": Decimal("1.27")}
    )
    dormancy_days: int = Field(default=90, ge=1)
    activity_days: int = Field(default=30, ge=1)
    depth_threshold: int = Field(default=2, ge=1)
    lookback_days: int | None = Field(default=None, ge=1)
    """Lookback window (`PP_LOOKBACK_DAYS`): a touchpoint more than this many days
    before a conversion's moment is not eligible for it; `None` (default) = off.
    docs/attribution.md says which moment each model measures from."""
    fiscal_year_start: int = Field(default=1, ge=1, le=12)
    """Month fiscal years start in (1 = January): the calendar of periods (SPEC §4.1)."""

    @field_validator("naming_pattern")
    @classmethod
    def _pattern_has_partner(cls, value: str) -> str:
        if "partner" not in re.compile(value).groupindex:
            raise ValueError("naming_pattern needs a named group 'partner'")
        return value

    @model_validator(mode="after")
    def _reporting_rate_is_one(self) -> EngineConfig:
        if self.rates.get(self.reporting_currency) != 1:
            raise ValueError("the reporting currency must have rate 1")
        return self

    @property
    def naming(self) -> re.Pattern[str]:
        return re.compile(self.naming_pattern)

    @property
    def opportunity_weights(self) -> Weights:
        return self.full_path if self.model == "full-path" else self.w_shaped

    @property
    def qualifying_rank(self) -> int:
        return STAGE_ORDER[self.qualifying_stage]

    @property
    def lookback_us(self) -> int | None:
        """The lookback window in microseconds (event time's unit), or None."""
        return None if self.lookback_days is None else self.lookback_days * DAY_US

    @property
    def currencies(self) -> frozenset[str]:
        return frozenset(self.rates)
