"""What to generate: size, span, first day, perturbations, calendar and goal style."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Final

__all__ = ["DEFAULT_START", "SyntheticConfig"]

DEFAULT_START: Final = date(2026, 1, 1)
"""A fixed first day, so a seed alone pins the output (`generate --start` moves it)."""


@dataclass(frozen=True, slots=True)
class SyntheticConfig:
    """What to generate.  `accounts` defaults to `leads // 4` (at least 1)."""

    seed: int
    leads: int = 1000
    accounts: int | None = None
    start: date = DEFAULT_START
    days: int = 180
    duplicates: float = 0.0
    shuffle: float = 0.0
    invalid: float = 0.0
    currencies: tuple[str, ...] = ("USD", "EUR", "GBP")
    fiscal_start_month: int = 1
    """Month fiscal years start in: the quarters in campaign names follow it (SPEC §4.1)."""
    goals_from_outcomes: bool = False
    """Quarterly goals whose targets are the world's own outcomes over the quarter
    (x0.75-1.35), so attainment and pace look like a real team's; else
    independent random targets over the campaigns' windows."""

    def __post_init__(self) -> None:
        if self.leads < 0:
            raise ValueError("leads must be >= 0")
        if self.accounts is not None and self.accounts < 1:
            raise ValueError("accounts must be >= 1")
        if self.days < 1:
            raise ValueError("days must be >= 1")
        for name in ("duplicates", "shuffle", "invalid"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within 0..1, got {value}")
        if not self.currencies or any(
            len(c) != 3 or not c.isascii() or not c.isalpha() or not c.isupper()
            for c in self.currencies
        ):
            raise ValueError("currencies must be non-empty three-letter upper-case codes")

    @property
    def account_count(self) -> int:
        return self.accounts if self.accounts is not None else max(1, self.leads // 4)
