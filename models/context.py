"""The settings and shared reference data a subject needs to settle."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from models.config import EngineConfig
from models.partners import NameParser, resolve


@dataclass(slots=True)
class Context:
    """Config plus the campaign registry (campaign → partner).

    The registry is global reference data: in the batch oracle it is a dict,
    in the workers loaded from Redis at start and kept current by the entries'
    broadcasts (models/engine.py's `Registry`).
    """

    config: EngineConfig
    registry: dict[str, str | None] = field(default_factory=dict)
    parser: NameParser = field(init=False)

    def __post_init__(self) -> None:
        self.parser = NameParser(self.config.naming)

    def resolve(
        self, campaign: str, partner: str | None, channel: str | None
    ) -> tuple[str | None, str | None]:
        return resolve(self.parser, self.registry, campaign, partner, channel)

    def to_cents(self, amount: Decimal, currency: str) -> int:
        """Amount in reporting-currency cents, rounded half up."""
        rate = self.config.rates[currency]
        return int((amount * rate * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
