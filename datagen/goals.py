"""Goals a team could plausibly have set: what the world actually achieved."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from datagen.catalogue import RATES_TO_USD

__all__ = ["Outcomes"]

REACHED_S2: Final = frozenset({"S2", "S3", "S4", "S5", "closed_won"})


@dataclass(slots=True)
class Outcomes:
    """What the world produced, to set goals against: every new-business
    conversion's moment (seconds), its leads and ARR, and each lead's first touch
    per campaign.  It approximates the engine's influence rule (a touch of the
    campaign at or before the moment; no lookback, no eligibility subtleties),
    which is close enough for a plausible target."""

    moments: dict[str, dict[str, int]] = field(default_factory=dict)  # kind -> subject -> t
    leads_of: dict[str, list[str]] = field(default_factory=dict)  # opportunity -> leads
    arr_cents: dict[str, float] = field(default_factory=dict)  # opportunity -> current ARR, USD
    first_touch: dict[tuple[str, str], int] = field(default_factory=dict)  # (campaign, lead)

    @classmethod
    def of(cls, events: list[tuple[int, int, str, dict[str, object]]]) -> Outcomes:
        out = cls()
        kinds = {"lead_created": "leads", "mql": "mqls"}
        for t, _, type_, f in sorted(events, key=lambda e: (e[0], e[1])):
            if type_ == "touch":
                out.first_touch.setdefault((str(f["campaign"]).lower(), str(f["lead_id"])), t)
            elif type_ in kinds:
                out.moments.setdefault(kinds[type_], {}).setdefault(str(f["lead_id"]), t)
            elif type_ == "opportunity_created" and f["business"] == "new_business":
                opp = str(f["opportunity_id"])
                leads = f["lead_ids"]
                assert isinstance(leads, list)
                out.leads_of[opp] = [str(lead) for lead in leads]
                rate = RATES_TO_USD.get(str(f.get("currency", "USD")), 1.0)
                out.arr_cents[opp] = float(str(f["arr"])) * rate * 100
            elif type_ == "opportunity_stage" and str(f["opportunity_id"]) in out.leads_of:
                opp = str(f["opportunity_id"])
                if f["stage"] in REACHED_S2:
                    out.moments.setdefault("s2", {}).setdefault(opp, t)
                if f["stage"] == "closed_won":
                    out.moments.setdefault("cw", {}).setdefault(opp, t)
        return out

    def actual(self, campaign: str, metric: str, first: int, last: int) -> float:
        """`metric` (an `nb.<kind>.influenced[_arr]` goal metric) of `campaign` over
        the conversions whose moment falls in `[first, last]`."""
        kind = metric.split(".")[1]
        name = campaign.lower()
        total = 0.0
        for subject, moment in self.moments.get(kind, {}).items():
            if not first <= moment <= last:
                continue
            leads = self.leads_of.get(subject, [subject])
            if any(self.first_touch.get((name, lead), moment + 1) <= moment for lead in leads):
                total += self.arr_cents[subject] if metric.endswith("_arr") else 1
        return total
