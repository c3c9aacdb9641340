"""The world's moving parts while it is built: campaigns, leads, accounts, installs."""

from __future__ import annotations

from dataclasses import dataclass, field

from models.periods import Window

__all__ = ["Account", "Campaign", "Install", "Lead"]


@dataclass(slots=True)
class Campaign:
    name: str
    channel: str
    program: str
    name_partner: str | None  # partner in the name (None for `none` / off-convention)
    registry_partner: str | None
    start: int  # active window, seconds from the start of the stream
    end: int
    period: Window | None = None  # the period in the name (None off-convention)
    registered: bool = False
    clicks: int = 0

    @property
    def partner(self) -> str | None:
        """The partner a touch inherits: registry entry first, then the name."""
        if self.registered and self.registry_partner is not None:
            return self.registry_partner
        return self.name_partner


@dataclass(slots=True)
class Lead:
    id: str
    account: int
    touches: list[tuple[int, str | None]] = field(default_factory=list)  # (t, partner)
    created_at: int | None = None
    source_partner: str | None = None


@dataclass(slots=True)
class Account:
    id: str
    customer_at: int | None
    base_arr: float
    leads: list[int] = field(default_factory=list)
    wins: list[tuple[int, float]] = field(default_factory=list)  # (t, ARR in USD)


@dataclass(slots=True)
class Install:
    partner: str
    integration: str
    installed: int
    uninstalled: int | None
    last_use: int  # usage stops here (abandonment, uninstall, churn or end)
    reinstalled: int | None
