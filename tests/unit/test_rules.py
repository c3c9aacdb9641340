"""One test per attribution rule of SPEC §3-§4 and docs/attribution.md.

Every expectation is computed by hand (the arithmetic is in the comments or
written as literal fractions); the engine is only driven through its public
path: event dicts -> `parse_event` -> `Engine` -> `credits()` / `totals`.

Conventions: days are offsets from 2026-01-01T00:00Z; every touch gets its
own non-partner campaign `2026-09_dg_none_paid-social_na_<id>` unless the
test names one, so touch ids double as campaign slugs.  Money is in cents,
`nb.leads.attributed` in millionths.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from fractions import Fraction as F
from typing import Any

from models.config import EngineConfig
from models.engine import Engine
from models.events import Event
from models.output import render
from models.parse import Rejection, parse_event
from models.subject import Deltas

Raw = dict[str, Any]

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DEFAULT = EngineConfig()
FULL_PATH = EngineConfig(model="full-path")
ACCOUNT = EngineConfig(mapping="account")


# --- event builders ------------------------------------------------------------


def at(day: float) -> str:
    return (T0 + timedelta(days=day)).isoformat()


def dg(slug: str) -> str:
    """A non-partner campaign following the naming convention (channel paid-social)."""
    return f"2026-09_dg_none_paid-social_na_{slug}"


def ptnr(partner: str, slug: str, channel: str = "webinar") -> str:
    """A partner campaign following the naming convention."""
    return f"2026Q3_ptnr_{partner}_{channel}_emea_{slug}"


def camp(name: str) -> str:
    """The scope of a campaign (names are normalised to lower case)."""
    return f"campaign:{name.lower()}"


def touch(eid: str, lead: str, day: float, campaign: str | None = None, **extra: Any) -> Raw:
    return {
        "type": "touch",
        "event_id": eid,
        "lead_id": lead,
        "occurred_at": at(day),
        "campaign": campaign if campaign is not None else dg(eid),
        **extra,  # no `action`: a plain touch, as most CRM exports send them
    }


def created(eid: str, lead: str, day: float, **extra: Any) -> Raw:
    return {
        "type": "lead_created",
        "event_id": eid,
        "lead_id": lead,
        "occurred_at": at(day),
        **extra,
    }


def mql(eid: str, lead: str, day: float) -> Raw:
    return {"type": "mql", "event_id": eid, "lead_id": lead, "occurred_at": at(day)}


def opp(
    eid: str,
    opp_id: str,
    day: float,
    leads: list[str],
    arr: float = 1000,
    business: str = "new_business",
    account: str = "acme",
    **extra: Any,
) -> Raw:
    return {
        "type": "opportunity_created",
        "event_id": eid,
        "opportunity_id": opp_id,
        "occurred_at": at(day),
        "account_id": account,
        "lead_ids": leads,
        "business": business,
        "arr": arr,
        **extra,
    }


def stage(eid: str, opp_id: str, day: float, name: str, **extra: Any) -> Raw:
    return {
        "type": "opportunity_stage",
        "event_id": eid,
        "opportunity_id": opp_id,
        "occurred_at": at(day),
        "stage": name,
        **extra,
    }


def registry(eid: str, campaign: str, day: float, partner: str | None = None) -> Raw:
    entry: Raw = {"type": "campaign", "event_id": eid, "campaign": campaign, "occurred_at": at(day)}
    if partner is not None:
        entry["partner"] = partner
    return entry


# --- driving the engine --------------------------------------------------------


def parse(raw: Raw, config: EngineConfig = DEFAULT) -> Event:
    item = parse_event(json.dumps(raw).encode(), currencies=config.currencies)
    assert not isinstance(item, Rejection), item
    return item


def run(raws: list[Raw], config: EngineConfig = DEFAULT) -> Engine:
    engine = Engine(config)
    engine.run([parse(raw, config) for raw in raws])
    return engine


def feed(engine: Engine, raw: Raw) -> Deltas:
    return engine.apply(parse(raw))


def credit(engine: Engine, subject: str) -> dict[str, F]:
    return engine.credits().get(subject, {})


def value(engine: Engine, scope: str, metric: str) -> int:
    return engine.totals.get((scope, metric), 0)


def moves(deltas: Deltas, subject: str) -> dict[str, tuple[F, int]]:
    """touch id -> (credit delta, units delta) of one subject, netted."""
    out: dict[str, tuple[F, int]] = {}
    for d in deltas.credits:
        if d.subject == subject:
            c, u = out.get(d.touch_id, (F(0), 0))
            out[d.touch_id] = (c + d.credit, u + d.units)
    return {k: v for k, v in out.items() if v != (F(0), 0)}


def without_dq(engine: Engine) -> dict[tuple[str, str], int]:
    return {k: v for k, v in engine.totals.items() if not k[1].startswith("dq.")}


# --- touchpoints ---------------------------------------------------------------


def test_touchpoint_is_earliest_touch_per_campaign() -> None:
    x, y = dg("x"), dg("y")
    events = [
        touch("t2", "L", 2, x),
        touch("t1", "L", 1, x),  # earliest touch of X: the touchpoint
        touch("t3", "L", 3, y),
        touch("t4", "L", 3.5, x),  # a later interaction with X: no credit
        created("lc", "L", 4),
        opp("o", "O", 5, ["L"], arr=100),
        stage("s2", "O", 6, "S2"),
        # same campaign, same instant: the event id breaks the tie
        touch("tb", "M", 1, x),
        touch("ta", "M", 1, x),
        created("mc", "M", 2),
    ]
    engine = run(events)
    # U: FT t1, LC t3, no middle -> 50/50
    assert credit(engine, "lead:L") == {"t1": F(1, 2), "t3": F(1, 2)}
    # W: FT t1; LC = OC = t3; middle 10 % shared by the 3 held positions
    assert credit(engine, "opportunity:O") == {
        "t1": F(3, 10) + F(1, 30),
        "t3": F(3, 10) + F(3, 10) + 2 * F(1, 30),
    }
    assert credit(engine, "lead:M") == {"ta": F(1)}
    # X counts once per scope though touched three times
    assert value(engine, camp(x), "nb.leads.influenced") == 2  # leads L and M
    # 10000 cents: t1 1/3 -> 3333.33, t3 2/3 -> 6666.67; the spare cent to .67
    assert value(engine, camp(x), "nb.s2.attributed_arr") == 3333
    assert value(engine, camp(y), "nb.s2.attributed_arr") == 6667

    # Incrementally: the earlier touch of X arriving last takes over the touchpoint.
    late = Engine()
    for raw in events[:1] + events[2:7]:
        feed(late, raw)
    assert credit(late, "lead:L") == {"t2": F(1, 2), "t3": F(1, 2)}
    deltas = feed(late, events[1])
    assert moves(deltas, "lead:L") == {"t2": (-F(1, 2), -500_000), "t1": (F(1, 2), 500_000)}
    assert moves(deltas, "opportunity:O") == {"t2": (-F(1, 3), -3333), "t1": (F(1, 3), 3333)}
    assert credit(late, "opportunity:O") == credit(engine, "opportunity:O")


def test_key_touchpoints_ft_lc_oc() -> None:
    k, j = dg("k"), dg("j")
    engine = run(
        [
            touch("k1", "L", 1, k),
            touch("j", "L", 2, j),
            touch("k2", "L", 3, k),  # repeat of K: not a touchpoint, so not LC
            created("lc", "L", 3.5),  # LC = latest touchpoint at or before: j
            touch("m", "L", 4),
            touch("n", "L", 5),  # at the creation instant: inclusive, so OC
            opp("o", "O", 5, ["L"]),
            touch("p", "L", 6),  # after creation
        ]
    )
    assert credit(engine, "lead:L") == {"k1": F(1, 2), "j": F(1, 2)}
    # FT k1 30, LC j 30, middle m 10, OC n 30
    assert credit(engine, "opportunity:O") == {
        "k1": F(3, 10),
        "j": F(3, 10),
        "m": F(1, 10),
        "n": F(3, 10),
    }


def test_touchpoints_after_opportunity_creation_get_no_w_credit() -> None:
    engine = Engine()
    for raw in [
        touch("a", "L", 1),
        created("lc", "L", 1),
        touch("b", "L", 2),
        opp("o", "O", 3, ["L"]),
        stage("s2", "O", 3.5, "S2"),
    ]:
        feed(engine, raw)
    before = credit(engine, "opportunity:O")
    # FT = LC = a (60 %), OC = b (30 %), no middle: 10 % / 3 positions each
    assert before == {"a": F(3, 5) + 2 * F(1, 30), "b": F(3, 10) + F(1, 30)}
    deltas = feed(engine, touch("c", "L", 4))
    assert deltas.credits == []
    assert credit(engine, "opportunity:O") == before
    # ... though it still influences a later conversion
    feed(engine, stage("won", "O", 5, "closed_won"))
    assert value(engine, camp(dg("c")), "nb.cw.influenced") == 1
    assert value(engine, camp(dg("c")), "nb.cw.attributed_arr") == 0
    assert value(engine, camp(dg("c")), "nb.s2.influenced") == 0


# --- W-shaped ------------------------------------------------------------------


def test_w_shaped_30_30_30_10_middles_split_evenly() -> None:
    engine = run(
        [
            touch("a", "L", 1),
            touch("b", "L", 2),
            created("lc", "L", 2),
            touch("c", "L", 3),
            touch("d", "L", 4),
            touch("e", "L", 4.5),
            touch("f", "L", 5),
            opp("o", "O", 5, ["L"]),
        ]
    )
    shares = credit(engine, "opportunity:O")
    # FT a, LC b, OC f 30 % each; c, d, e share 10 %: 1/30 each
    assert shares == {
        "a": F(3, 10),
        "b": F(3, 10),
        "c": F(1, 30),
        "d": F(1, 30),
        "e": F(1, 30),
        "f": F(3, 10),
    }
    assert sum(shares.values()) == 1


def test_w_stacking_ft_equals_lc() -> None:
    # Reference case 2: A FT+LC, B form, C OC -> 60 / 10 / 30
    engine = run(
        [
            touch("a", "L", 1),
            created("lc", "L", 1),
            touch("b", "L", 2),
            touch("c", "L", 3),
            opp("o", "O", 3, ["L"]),
        ]
    )
    assert credit(engine, "opportunity:O") == {"a": F(3, 5), "b": F(1, 10), "c": F(3, 10)}


def test_w_stacking_ft_lc_oc_one_touchpoint() -> None:
    # Reference case 4: A FT+LC+OC -> 100 %, even with touches after creation
    engine = run(
        [
            touch("a", "L", 1),
            created("lc", "L", 1),
            opp("o", "O", 2, ["L"]),
            touch("z", "L", 3),
        ]
    )
    assert credit(engine, "opportunity:O") == {"a": F(1)}


def test_w_no_middle_shares_evenly() -> None:
    # Reference case 3: A FT, B LC, C OC -> 30 + 10/3 = 33.33 % each
    engine = run(
        [
            touch("a", "L", 1),
            touch("b", "L", 2),
            created("lc", "L", 2),
            touch("c", "L", 3),
            opp("o", "O", 3, ["L"]),
            # FT = LC (M's only eligible touch), OC, no middle:
            touch("m1", "M", 1),
            created("mc", "M", 1),
            touch("m2", "M", 2),
            opp("p", "P", 2, ["M"]),
        ]
    )
    third = F(3, 10) + F(1, 30)
    assert third == F(1, 3)
    assert credit(engine, "opportunity:O") == {"a": third, "b": third, "c": third}
    # m1: 30 + 30 + 2 x 10/3 = 66.67 %; m2: 30 + 10/3 = 33.33 %
    assert credit(engine, "opportunity:P") == {"m1": F(2, 3), "m2": F(1, 3)}


def test_w_missing_lc_redistributes() -> None:
    engine = run(
        [
            # no lead_created at all: FT 30 + 15, OC 30 + 15, middle 10
            touch("a", "L", 1),
            touch("b", "L", 2),
            touch("c", "L", 3),
            opp("o", "O", 3, ["L"]),
            # lead created before any touch: no eligible touchpoint, no LC
            created("mc", "M", 0),
            touch("m1", "M", 1),
            touch("m2", "M", 2),
            opp("p", "P", 2, ["M"]),
            # the contact's LC is after opportunity creation: not eligible
            touch("n1", "N", 1),
            touch("n2", "N", 2),
            touch("n3", "N", 3),
            opp("q", "Q", 3, ["N"]),
            touch("n4", "N", 4),
            created("nc", "N", 5),  # N's LC = n4, after Q's creation
        ]
    )
    assert credit(engine, "opportunity:O") == {"a": F(9, 20), "b": F(1, 10), "c": F(9, 20)}
    # FT and OC only, no middle: (30 + 10 unused) / 2 = 20 extra each
    assert credit(engine, "opportunity:P") == {"m1": F(1, 2), "m2": F(1, 2)}
    assert credit(engine, "opportunity:Q") == {"n1": F(9, 20), "n2": F(1, 10), "n3": F(9, 20)}
    assert credit(engine, "lead:M") == {}
    # U on N: FT n1 40, LC n4 40, two middles share 20 %
    assert credit(engine, "lead:N") == {
        "n1": F(2, 5),
        "n2": F(1, 10),
        "n3": F(1, 10),
        "n4": F(2, 5),
    }


# --- U-shaped (lead level) -----------------------------------------------------


def test_u_shaped_lead_credit() -> None:
    engine = run(
        [
            # (a) FT, middle, LC -> 40 / 20 / 40; touch after creation: nothing
            touch("a1", "A", 1),
            touch("a2", "A", 2),
            touch("a3", "A", 3),
            created("ac", "A", 3),
            touch("a4", "A", 4),
            # (b) FT, LC -> 50 / 50
            touch("b1", "B", 1),
            touch("b2", "B", 2),
            created("bc", "B", 2),
            # (c) FT = LC -> 100
            touch("c1", "C", 1),
            created("cc", "C", 1),
            # three middles share 20 %: 1/15 each
            *(touch(f"d{i}", "D", i) for i in range(1, 6)),
            created("dc", "D", 5),
            # no lead_created: no lead-level credit
            touch("e1", "E", 1),
        ]
    )
    assert credit(engine, "lead:A") == {"a1": F(2, 5), "a2": F(1, 5), "a3": F(2, 5)}
    assert credit(engine, "lead:B") == {"b1": F(1, 2), "b2": F(1, 2)}
    assert credit(engine, "lead:C") == {"c1": F(1)}
    assert credit(engine, "lead:D") == {
        "d1": F(2, 5),
        "d2": F(1, 15),
        "d3": F(1, 15),
        "d4": F(1, 15),
        "d5": F(2, 5),
    }
    assert "lead:E" not in engine.credits()
    # millionths: 4 leads -> 4 000 000 in `all`
    assert value(engine, "all", "nb.leads.attributed") == 4_000_000
    assert value(engine, camp(dg("a2")), "nb.leads.attributed") == 200_000
    # D: 200 000 / 3 = 66 666.67 x 3 -> floors leave 2 units, ties to the earlier
    assert value(engine, camp(dg("d2")), "nb.leads.attributed") == 66_667
    assert value(engine, camp(dg("d3")), "nb.leads.attributed") == 66_667
    assert value(engine, camp(dg("d4")), "nb.leads.attributed") == 66_666
    out = render(engine.totals, engine.credits())
    assert out["metrics"]["all"]["nb.leads.attributed"] == 4.0
    assert out["metrics"][camp(dg("d4"))]["nb.leads.attributed"] == 0.066666
    assert out["credits"]["lead:D"]["d2"] == 0.066667


# --- Full Path -----------------------------------------------------------------


def _case5(closing: str = "closed_won") -> list[Raw]:
    """Reference case 5: A FT, B LC, C form, D OC, E form, F closing touch, G after."""
    return [
        touch("a", "L", 1),
        touch("b", "L", 2),
        created("lc", "L", 2),
        touch("c", "L", 3),
        touch("d", "L", 4),
        opp("o", "O", 4.5, ["L"]),
        touch("e", "L", 5),
        touch("f", "L", 6),
        # f at the closing instant: at or before it, as ("f") < ("z-close") by event id
        stage("z-close", "O", 6, closing),
        touch("g", "L", 7),
    ]


def test_full_path_closed_won() -> None:
    assert credit(run(_case5()), "opportunity:O") == {
        "a": F(3, 10),
        "b": F(3, 10),
        "c": F(1, 10),
        "d": F(3, 10),
    }
    shares = credit(run(_case5(), FULL_PATH), "opportunity:O")
    # 22.5 % x 4 (FT a, LC b, OC d, CW f) + 10 % shared by c and e; g after close
    assert shares == {
        "a": F(9, 40),
        "b": F(9, 40),
        "c": F(1, 20),
        "d": F(9, 40),
        "e": F(1, 20),
        "f": F(9, 40),
    }
    assert sum(shares.values()) == 1


def test_full_path_closed_lost_uses_the_closing_touch() -> None:
    # docs decision: "Closed" is won or lost, so a lost deal is shaped the same
    assert credit(run(_case5("closed_lost"), FULL_PATH), "opportunity:O") == {
        "a": F(9, 40),
        "b": F(9, 40),
        "c": F(1, 20),
        "d": F(9, 40),
        "e": F(1, 20),
        "f": F(9, 40),
    }


def test_full_path_open_pending_on_latest_touchpoint() -> None:
    # Reference case 6: as case 5 but open, so no F: Pending sits on E
    events = [raw for raw in _case5() if raw["event_id"] not in {"f", "close", "g"}]
    assert credit(run(events, FULL_PATH), "opportunity:O") == {
        "a": F(9, 40),
        "b": F(9, 40),
        "c": F(1, 10),
        "d": F(9, 40),
        "e": F(9, 40),
    }
    # Pending on the OC touchpoint: d holds OC + Pending (45 %), no middle,
    # so 10 % is shared by the 4 held positions: a, b 22.5 + 2.5; d 45 + 5
    events = [raw for raw in events if raw["event_id"] not in {"c", "e"}]
    assert credit(run(events, FULL_PATH), "opportunity:O") == {
        "a": F(1, 4),
        "b": F(1, 4),
        "d": F(1, 2),
    }


def test_full_path_pending_moves_when_a_later_touch_arrives() -> None:
    engine = Engine(FULL_PATH)
    for raw in _case5()[:7]:  # a .. e, open; ARR 1000 -> 100 000 cents
        feed(engine, raw)
    assert credit(engine, "opportunity:O")["e"] == F(9, 40)
    deltas = feed(engine, touch("f", "L", 6))
    # before: c 10 % (10 000), e 22.5 % Pending (22 500)
    # after:  c 5 % (5 000), e 5 % (5 000), f 22.5 % Pending (22 500)
    assert moves(deltas, "opportunity:O") == {
        "c": (-F(1, 20), -5_000),
        "e": (F(1, 20) - F(9, 40), 5_000 - 22_500),
        "f": (F(9, 40), 22_500),
    }
    assert sum(d.credit for d in deltas.credits) == 0
    assert sum(d.units for d in deltas.credits) == 0
    f_delta = next(d for d in deltas.credits if d.touch_id == "f")
    assert f_delta.subject == "opportunity:O"
    assert f_delta.scopes == ("all", camp(dg("f")), "channel:paid-social")
    assert sum(credit(engine, "opportunity:O").values()) == 1


# --- pooled contacts and mapping -----------------------------------------------


def test_pooled_touchpoints_and_lc_is_earliest_contact_lc() -> None:
    k = dg("shared")
    engine = run(
        [
            touch("a1", "L1", 1, k),
            touch("b1", "L2", 2, k),  # same campaign, other contact: its own touchpoint
            created("l2c", "L2", 3),  # L2's LC: b1 (day 2)
            touch("a2", "L1", 4),
            created("l1c", "L1", 5),  # L1's (primary contact's) LC: a2 (day 4)
            touch("b2", "L2", 6),
            opp("o", "O", 7, ["L1", "L2"]),
        ]
    )
    # FT a1, LC = earliest of the contacts' LCs = b1 (not the primary's a2),
    # OC b2, middle a2
    assert credit(engine, "opportunity:O") == {
        "a1": F(3, 10),
        "b1": F(3, 10),
        "a2": F(1, 10),
        "b2": F(3, 10),
    }


def test_second_contact_joins_retracts_and_reapplies() -> None:
    engine = Engine()
    for raw in [
        touch("a1", "L1", 1),
        touch("b1", "L2", 2),
        created("l2c", "L2", 3),
        touch("a2", "L1", 4),
        created("l1c", "L1", 5),
        touch("b2", "L2", 6),
        opp("o", "O", 7, ["L1"]),
    ]:
        feed(engine, raw)
    # L1 alone: FT a1 30 + 10/3, LC = OC a2 60 + 2 x 10/3
    assert credit(engine, "opportunity:O") == {"a1": F(1, 3), "a2": F(2, 3)}
    deltas = feed(engine, opp("o2", "O", 7.5, ["L2"]))  # L2 joins; creation stays day 7
    # 1000 USD = 100 000 cents: a1 33 333 (+1 as the earlier tie), a2 66 667 -> 30 000 / 10 000
    assert moves(deltas, "opportunity:O") == {
        "a1": (F(3, 10) - F(1, 3), 30_000 - 33_333),
        "a2": (F(1, 10) - F(2, 3), 10_000 - 66_667),
        "b1": (F(3, 10), 30_000),
        "b2": (F(3, 10), 30_000),
    }


def test_account_mapping() -> None:
    # Reference case 9: Z is on the account but holds no contact role
    events = [
        touch("a", "L1", 1),
        touch("b", "L1", 2),
        created("l1c", "L1", 2, account_id="acme"),
        touch("z", "L2", 3),
        created("l2c", "L2", 3, account_id="ACME"),
        touch("c", "L1", 4),
        opp("o", "O", 5, ["L1"], account="acme"),
        touch("other", "L3", 1),
        created("l3c", "L3", 1, account_id="globex"),
    ]
    assert credit(run(events, ACCOUNT), "opportunity:O") == {
        "a": F(3, 10),
        "b": F(3, 10),
        "z": F(1, 10),
        "c": F(3, 10),
    }
    third = F(3, 10) + F(1, 30)
    assert credit(run(events), "opportunity:O") == {"a": third, "b": third, "c": third}


def test_account_mapping_reference_case_8() -> None:
    # Reference case 8 (account). The research table gives X's web FT 0 %
    # because Marketo Measure drops anonymous web visits; SPEC makes every
    # touch a touchpoint, so here it is a middle touchpoint (5 %).
    base = datetime(2026, 3, 12, tzinfo=UTC)  # opportunity creation

    def day(month: int, dom: int, year: int = 2026) -> float:
        return (datetime(year, month, dom, tzinfo=UTC) - T0).days

    events = [
        touch("y-web", "Y", day(12, 15, 2025), account_id="acme"),
        touch("x-web", "X", day(1, 10)),
        touch("x-form", "X", day(2, 1)),
        created("xc", "X", day(2, 1), account_id="acme"),  # X's LC: x-form
        touch("y-form1", "Y", day(3, 1)),
        created("yc", "Y", day(3, 1)),  # Y's LC: y-form1; account from its touch
        touch("y-form2", "Y", day(3, 10)),
        opp("o", "O", (base - T0).days, ["X"], account="acme"),
    ]
    assert credit(run(events, ACCOUNT), "opportunity:O") == {
        "y-web": F(3, 10),  # FT
        "x-web": F(1, 20),
        "x-form": F(3, 10),  # LC: the earliest of X's and Y's LCs
        "y-form1": F(1, 20),
        "y-form2": F(3, 10),  # OC
    }


def test_reference_case_10_expansion_shares_ft_and_lc() -> None:
    engine = run(
        [
            touch("a", "L", 1),
            touch("b", "L", 2),
            created("lc", "L", 2),
            touch("c", "L", 3),
            opp("o1", "O1", 3, ["L"]),
            stage("won1", "O1", 30, "closed_won"),
            touch("d", "L", 40),
            touch("e", "L", 59),
            opp("o2", "O2", 63, ["L"], business="expansion"),
        ]
    )
    third = F(1, 3)
    assert credit(engine, "opportunity:O1") == {"a": third, "b": third, "c": third}
    assert credit(engine, "opportunity:O2") == {
        "a": F(3, 10),
        "b": F(3, 10),
        "c": F(1, 20),
        "d": F(1, 20),
        "e": F(3, 10),
    }


def test_reference_case_1_replay_with_duplicate_and_shuffle() -> None:
    events = [
        touch("A", "L", 1),
        touch("B", "L", 2),
        created("lc", "L", 2),
        touch("C", "L", 3),
        touch("D", "L", 4),
        touch("E", "L", 5),
        opp("o", "O", 5, ["L"], arr=1234.56),
        stage("won", "O", 9, "closed_won"),
    ]
    batch = run(events)
    assert credit(batch, "opportunity:O") == {
        "A": F(3, 10),
        "B": F(3, 10),
        "C": F(1, 20),
        "D": F(1, 20),
        "E": F(3, 10),
    }
    for seed in range(5):
        shuffled = [*events, events[3]]
        random.Random(seed).shuffle(shuffled)
        streamed = Engine()
        for raw in shuffled:
            feed(streamed, raw)
        assert streamed.credits() == batch.credits()
        assert without_dq(streamed) == without_dq(batch)
        assert value(streamed, "all", "dq.duplicates_ignored") == 1


# --- money ---------------------------------------------------------------------


def test_largest_remainder_cents_tie_to_earlier_touchpoint() -> None:
    # ids sort opposite to time, so an id tie-break would pick the wrong one
    engine = run(
        [
            touch("t4", "L", 1),
            touch("t3", "L", 2),
            created("z-lc", "L", 2),  # same instant as t3, after it by event id
            touch("t2", "L", 3),
            touch("t1", "L", 4),
            opp("z-o", "O", 4, ["L"], arr=1000.01),  # likewise after t1
            stage("s2", "O", 5, "S2"),
            # 1/3 each of 2 cents: 0.67 x 3 -> floors 0, two spare cents to the earliest two
            touch("m1", "M", 1),
            touch("m2", "M", 2),
            created("mc", "M", 2),
            touch("m3", "M", 3),
            opp("p", "P", 3, ["M"], arr=0.02),
            stage("ps2", "P", 4, "S2"),
        ]
    )

    # 100 001 cents: 30 % -> 30 000.3 (x3), 10 % -> 10 000.1; 1 cent left,
    # tie at .3 between t4, t3, t1 -> the earliest, t4
    def cents(*tids: str) -> dict[str, int]:
        return {tid: value(engine, camp(dg(tid)), "nb.s2.attributed_arr") for tid in tids}

    assert cents("t4", "t3", "t2", "t1") == {"t4": 30_001, "t3": 30_000, "t2": 10_000, "t1": 30_000}
    assert cents("m1", "m2", "m3") == {"m1": 1, "m2": 1, "m3": 0}
    assert value(engine, "all", "nb.s2.attributed_arr") == 100_001 + 2
    assert value(engine, "all", "nb.s2.influenced_arr") == 100_001 + 2


def test_currency_conversion() -> None:
    engine = run(
        [
            touch("a", "L", 1),
            created("lc", "L", 1),
            opp("o", "O", 2, ["L"], arr=1000, currency="EUR"),
            stage("s2", "O", 3, "S2"),
            touch("m", "M", 1),
            created("mc", "M", 1),
            opp("p", "P", 2, ["M"], arr=0.125, currency="EUR"),
            stage("ps2", "P", 3, "S2"),
        ]
    )
    # 1000 EUR x 1.08 = 1080.00 USD
    assert value(engine, camp(dg("a")), "nb.s2.influenced_arr") == 108_000
    assert value(engine, camp(dg("a")), "nb.s2.attributed_arr") == 108_000
    # 0.125 EUR x 1.08 = 0.135 USD = 13.5 cents -> half up -> 14
    assert value(engine, camp(dg("m")), "nb.s2.influenced_arr") == 14


def test_unknown_currency_is_dead_lettered() -> None:
    raw = json.dumps(opp("o", "O", 1, ["L"], currency="JPY")).encode()
    item = parse_event(raw, currencies=DEFAULT.currencies)
    assert isinstance(item, Rejection)
    assert item.reason == "unknown_currency"
    assert item.raw == raw
    engine = Engine()
    engine.run([item])
    assert value(engine, "all", "dq.dead_letters") == 1
    assert value(engine, "all", "dq.dead_letters.unknown_currency") == 1
    assert engine.credits() == {}


def test_arr_change_uses_latest_by_event_time() -> None:
    scope = camp(dg("a"))
    engine = Engine()
    for raw in [
        touch("a", "L", 1),
        created("lc", "L", 1),
        opp("o", "O", 5, ["L"], arr=100),
        stage("s2", "O", 6, "S2"),
    ]:
        feed(engine, raw)
    assert value(engine, scope, "nb.s2.influenced_arr") == 10_000
    deltas = feed(engine, stage("s3", "O", 7, "S3", arr=300))
    # retract 10 000, apply 30 000
    assert deltas.totals[(scope, "nb.s2.influenced_arr")] == 20_000
    assert deltas.totals[("all", "nb.s2.attributed_arr")] == 20_000
    assert moves(deltas, "opportunity:O") == {"a": (F(0), 20_000)}
    # an older ARR arriving later changes nothing
    deltas = feed(engine, stage("s4", "O", 6.5, "S4", arr=200))
    assert not any("arr" in metric for _, metric in deltas.metrics)
    assert value(engine, scope, "nb.s2.influenced_arr") == 30_000
    # the latest ARR arriving first (before the creation) still wins
    batch = run(
        [
            stage("s3", "O", 7, "S3", arr=300),
            touch("a", "L", 1),
            created("lc", "L", 1),
            opp("o", "O", 5, ["L"], arr=100),
        ]
    )
    assert value(batch, scope, "nb.s2.influenced_arr") == 30_000


# --- repeated milestones -------------------------------------------------------


def test_repeated_lead_created_earliest_counts() -> None:
    engine = Engine()
    for raw in [
        touch("a", "L", 1),
        touch("b", "L", 3),
        touch("c", "L", 5),
        created("late", "L", 4),
    ]:
        feed(engine, raw)
    assert credit(engine, "lead:L") == {"a": F(1, 2), "b": F(1, 2)}
    deltas = feed(engine, created("early", "L", 2))  # earlier: LC moves back to a
    assert moves(deltas, "lead:L") == {"a": (F(1, 2), 500_000), "b": (-F(1, 2), -500_000)}
    feed(engine, created("later", "L", 6))  # a later repeat moves nothing
    assert credit(engine, "lead:L") == {"a": F(1)}
    assert value(engine, "all", "nb.leads.influenced") == 1
    assert value(engine, camp(dg("b")), "nb.leads.influenced") == 0


def test_repeated_mql_earliest_counts() -> None:
    engine = run(
        [
            touch("a", "L", 1),
            created("lc", "L", 1),
            touch("b", "L", 5),
            mql("m-late", "L", 6),
            mql("m-early", "L", 4),
        ]
    )
    assert value(engine, "all", "nb.mqls.influenced") == 1
    assert value(engine, camp(dg("a")), "nb.mqls.influenced") == 1
    assert value(engine, camp(dg("b")), "nb.mqls.influenced") == 0


def test_repeated_closed_won_earliest_counts() -> None:
    events = [
        touch("a", "L", 1),
        created("lc", "L", 1),
        opp("o", "O", 2, ["L"]),
        touch("b", "L", 3),
        touch("c", "L", 5),
        stage("won-late", "O", 6, "closed_won"),
        stage("won-early", "O", 4, "closed_won"),
    ]
    engine = run(events)
    assert value(engine, "all", "nb.cw.influenced") == 1
    assert value(engine, camp(dg("b")), "nb.cw.influenced") == 1
    assert value(engine, camp(dg("c")), "nb.cw.influenced") == 0
    # Full Path: CW = b (latest at or before day 4); c after close gets nothing.
    # FT = LC = OC = a, CW b, no middle: a 3 x 22.5 + 3 x 2.5, b 22.5 + 2.5
    assert credit(run(events, FULL_PATH), "opportunity:O") == {"a": F(3, 4), "b": F(1, 4)}


def test_repeated_opportunity_created_earliest_counts() -> None:
    engine = run(
        [
            touch("a", "L", 1),
            created("lc", "L", 1),
            touch("b", "L", 3),
            touch("c", "L", 5),
            opp("o-late", "O", 6, ["L"], arr=500),
            opp("o-early", "O", 4, ["L"], arr=100),
        ]
    )
    # created day 4: FT = LC a 60 + 10/3, OC b 30 + 10/3; c after creation
    assert credit(engine, "opportunity:O") == {"a": F(2, 3), "b": F(1, 3)}


# --- stages --------------------------------------------------------------------


def test_qualifying_stage_skipped_regression_and_closed_lost() -> None:
    events = [
        touch("a", "L", 1),
        created("lc", "L", 1),
        # O: S1, then S3 (S2 skipped), then back to S1
        opp("o", "O", 2, ["L"], arr=10),
        stage("o1", "O", 3, "S1"),
        touch("b", "L", 4),
        stage("o3", "O", 5, "S3"),
        touch("c", "L", 6),
        stage("o1b", "O", 7, "S1"),
        # P: lost at S1 never reached S2
        opp("p", "P", 2, ["L"], arr=20),
        stage("p1", "P", 3, "S1"),
        stage("plost", "P", 4, "closed_lost"),
        # Q: straight to closed_won counts as S2 too
        opp("q", "Q", 2, ["L"], arr=40),
        stage("qwon", "Q", 3, "closed_won"),
    ]
    engine = run(events)
    assert value(engine, "all", "nb.s2.influenced") == 2  # O and Q
    assert value(engine, "all", "nb.s2.influenced_arr") == 1_000 + 4_000
    assert value(engine, "all", "nb.cw.influenced") == 1
    assert value(engine, "all", "nb.cw.influenced_arr") == 4_000
    assert value(engine, camp(dg("b")), "nb.s2.influenced") == 1  # day 4 <= S3 on day 5
    assert value(engine, camp(dg("c")), "nb.s2.influenced") == 0  # day 6 is after
    # S2 reached first on day 5 even when the day-8 S4 arrives first
    late = run([stage("o4", "O", 8, "S4"), *events])
    assert value(late, camp(dg("c")), "nb.s2.influenced") == 0
    # a configurable qualifying stage: with S3, P never qualifies, O still does
    s3 = run(events, EngineConfig(qualifying_stage="S3"))
    assert value(s3, "all", "nb.s2.influenced") == 2
    s4 = run(events, EngineConfig(qualifying_stage="S4"))
    assert value(s4, "all", "nb.s2.influenced") == 1  # Q only (closed_won ranks above S4)


# --- conversions and metrics ---------------------------------------------------


def test_influenced_conversions_per_scope() -> None:
    slack1, slack2 = ptnr("slack", "one"), ptnr("slack", "two")
    zoom, aws, hub, late = ptnr("zoom", "z"), ptnr("aws", "a"), ptnr("hubspot", "h"), dg("late")
    engine = run(
        [
            touch("s1", "L", 1, slack1),
            touch("s2", "L", 1.5, slack2),
            created("lc", "L", 2),
            touch("z", "L", 3, zoom),
            mql("mql", "L", 4),
            touch("a", "L", 5, aws),
            opp("o", "O", 6, ["L"], arr=500),
            stage("st2", "O", 7, "S2"),
            touch("h", "L", 9, hub),  # at the closed-won instant: inclusive
            stage("won", "O", 9, "closed_won"),
            touch("x", "L", 10, late),
        ]
    )

    def scopes(metric: str) -> set[str]:
        return {
            s for (s, m), v in engine.totals.items() if m == metric and s.startswith("partner:")
        }

    assert scopes("nb.leads.influenced") == {"partner:slack"}
    assert scopes("nb.mqls.influenced") == {"partner:slack", "partner:zoom"}
    assert scopes("nb.s2.influenced") == {"partner:slack", "partner:zoom", "partner:aws"}
    assert scopes("nb.cw.influenced") == {
        "partner:slack",
        "partner:zoom",
        "partner:aws",
        "partner:hubspot",
    }
    # once per scope: two slack touchpoints, one conversion
    assert value(engine, "partner:slack", "nb.leads.influenced") == 1
    assert value(engine, "channel:webinar", "nb.cw.influenced") == 1
    assert value(engine, camp(late), "nb.cw.influenced") == 0
    # influenced ARR is the whole 50 000 cents per influencing scope
    assert value(engine, "partner:slack", "nb.s2.influenced_arr") == 50_000
    assert value(engine, "partner:hubspot", "nb.cw.influenced_arr") == 50_000
    # W: FT s1 30, LC s2 30, middle z 10, OC a 30 of 50 000 cents
    assert value(engine, "partner:slack", "nb.s2.attributed_arr") == 15_000 + 15_000
    assert value(engine, "partner:zoom", "nb.cw.attributed_arr") == 5_000
    assert value(engine, "partner:aws", "nb.cw.attributed_arr") == 15_000
    assert value(engine, "partner:hubspot", "nb.cw.attributed_arr") == 0
    assert value(engine, "all", "nb.cw.attributed_arr") == 50_000
    # U: s1, s2 50/50, both slack
    assert value(engine, "partner:slack", "nb.leads.attributed") == 1_000_000


def test_new_business_and_expansion_split() -> None:
    engine = run(
        [
            touch("a", "L", 1, ptnr("slack", "a")),
            created("lc", "L", 1),
            mql("m", "L", 2),
            opp("o", "O", 3, ["L"], arr=100, business="expansion"),
            stage("won", "O", 4, "closed_won"),
        ]
    )
    assert value(engine, "partner:slack", "ex.s2.influenced") == 1
    assert value(engine, "partner:slack", "ex.s2.influenced_arr") == 10_000
    assert value(engine, "partner:slack", "ex.s2.attributed_arr") == 10_000
    assert value(engine, "partner:slack", "ex.cw.influenced") == 1
    assert value(engine, "partner:slack", "ex.cw.influenced_arr") == 10_000
    assert value(engine, "partner:slack", "ex.cw.attributed_arr") == 10_000
    metrics = {metric for _, metric in engine.totals}
    assert not {m for m in metrics if m.startswith(("nb.s2", "nb.cw"))}
    assert not {m for m in metrics if m.startswith(("ex.leads", "ex.mqls"))}
    # the lead and its MQL are new-business conversions
    assert value(engine, "partner:slack", "nb.leads.influenced") == 1
    assert value(engine, "partner:slack", "nb.mqls.influenced") == 1


def test_pipeline_metrics() -> None:
    engine = run(
        [
            opp("o", "O", 1, ["L"], arr=200, referral_partner="Slack", source_partner="zoom"),
            stage("won", "O", 2, "closed_won"),
            opp("p", "P", 1, ["M"], arr=50, currency="EUR", source_partner="ZOOM "),
            opp("q", "Q", 1, ["N"], arr=70, referral_partner="slack"),
        ]
    )
    assert value(engine, "partner:slack", "pipeline.referrals") == 2
    assert value(engine, "all", "pipeline.referrals") == 2
    assert value(engine, "partner:zoom", "pipeline.sourced_deals") == 2
    assert value(engine, "all", "pipeline.sourced_deals") == 2
    # 200 USD + 50 EUR x 1.08 = 200 + 54 USD
    assert value(engine, "partner:zoom", "pipeline.sourced_arr") == 20_000 + 5_400
    assert value(engine, "partner:zoom", "pipeline.sourced_won_arr") == 20_000
    assert value(engine, "partner:slack", "pipeline.sourced_arr") == 0


def test_leads_acquired() -> None:
    slack = ptnr("slack", "acq")
    engine = run(
        [
            touch("l1t", "L1", 1, slack),
            created("l1c", "L1", 2),  # LC is slack's
            touch("l2t", "L2", 1, slack),
            touch("l2u", "L2", 2),
            created("l2c", "L2", 3),  # FT slack, but LC non-partner: not acquired
            created("l3c", "L3", 1, source_partner="AWS"),  # no touches
            touch("l4t", "L4", 1, ptnr("zoom", "acq")),
            created("l4c", "L4", 2, source_partner="zoom"),  # both say zoom: once
            touch("l5t", "L5", 1, ptnr("slack", "acq5")),
            created("l5c", "L5", 2, source_partner="aws"),  # slack and aws
            touch("l6t", "L6", 1, slack),  # never created
        ]
    )
    assert value(engine, "partner:slack", "leads.acquired") == 2  # L1, L5
    assert value(engine, "partner:aws", "leads.acquired") == 2  # L3, L5
    assert value(engine, "partner:zoom", "leads.acquired") == 1  # L4
    assert value(engine, "all", "leads.acquired") == 4  # L1, L3, L4, L5


def test_leads_reengaged() -> None:
    b, c = ptnr("slack", "b"), ptnr("slack", "c")
    e, f, g = ptnr("zoom", "e"), ptnr("zoom", "f"), ptnr("zoom", "g")
    engine = run(
        [
            touch("a", "L", 0),
            created("lc", "L", 1),
            touch("b", "L", 101, b),  # 100 days quiet, partner touch: re-engaged
            touch("c", "L", 102, c),  # same episode
            touch("d", "L", 192),  # 90 days quiet, but a non-partner touch comes first
            touch("e", "L", 193, e),
            touch("f", "L", 282, f),  # only 89 days quiet
            touch("g", "L", 372, g),  # exactly 90 days quiet: re-engaged
            # an MQL is activity: 40 days quiet only
            touch("m1", "M", 0),
            mql("mm", "M", 60),
            touch("m2", "M", 100, ptnr("slack", "m2")),
        ]
    )
    assert value(engine, "all", "leads.reengaged") == 2
    assert value(engine, "partner:slack", "leads.reengaged") == 1
    assert value(engine, "partner:zoom", "leads.reengaged") == 1
    assert value(engine, camp(b), "leads.reengaged") == 1
    assert value(engine, camp(c), "leads.reengaged") == 0
    assert value(engine, camp(e), "leads.reengaged") == 0
    assert value(engine, camp(f), "leads.reengaged") == 0
    assert value(engine, camp(g), "leads.reengaged") == 1
    assert value(engine, "channel:webinar", "leads.reengaged") == 2


# --- partners, names, data quality ---------------------------------------------


def test_partner_precedence() -> None:
    events = [
        registry("r-zoom", ptnr("zoom", "p2"), 0, "Segment"),
        registry("r-zoom6", ptnr("zoom", "p6"), 0, "segment"),
        registry("r-promo", "Spring Promo", 0, "okta"),
        touch("p1", "P1", 1, ptnr("slack", "p1"), partner="AWS", channel="Event"),  # field
        touch("p2", "P2", 1, ptnr("zoom", "p2")),  # registry
        touch("p3", "P3", 1, ptnr("hubspot", "p3")),  # name
        touch("p4", "P4", 1, ptnr("slack", "p4"), partner="none"),  # field says none
        touch("p5", "P5", 1, dg("p5")),  # name says none
        touch("p6", "P6", 1, ptnr("zoom", "p6"), partner="stripe"),  # field beats registry
        touch("p7", "P7", 1, "Spring Promo"),  # registry applies to any name
        # SPEC §2 knows one "no partner" value, `none` (any case): `na` and
        # `n-a` are partner ids like any other (`na` is also a region code)
        touch("p8", "P8", 1, ptnr("na", "p8")),
        touch("p9", "P9", 1, ptnr("slack", "p9"), partner="N-A"),
        touch("p10", "P10", 1, ptnr("slack", "p10"), partner="NoNe"),  # any case stops it
    ]
    events += [created(f"c{i}", f"P{i}", 2) for i in range(1, 11)]
    engine = run(events)
    partners = {
        s: v
        for (s, m), v in engine.totals.items()
        if m == "nb.leads.influenced" and s.startswith("partner:")
    }
    assert partners == {
        "partner:aws": 1,
        "partner:segment": 1,
        "partner:hubspot": 1,
        "partner:stripe": 1,
        "partner:okta": 1,
        "partner:na": 1,
        "partner:n-a": 1,
    }
    assert value(engine, "all", "nb.leads.influenced") == 10
    # channel: the touch's field, else the name's channel group
    assert value(engine, "channel:event", "nb.leads.influenced") == 1
    # p2 p3 p4 p6 p8 p9 p10
    assert value(engine, "channel:webinar", "nb.leads.influenced") == 7
    assert value(engine, "channel:paid-social", "nb.leads.influenced") == 1


def test_blank_partner_field_is_absent() -> None:
    # docs: a blank optional field is absent, so the name's partner applies
    raw = touch("t", "L", 1, ptnr("slack", "blank"), partner="  ")
    item = parse_event(json.dumps(raw).encode(), currencies=DEFAULT.currencies)
    assert not isinstance(item, Rejection), item
    engine = Engine()
    engine.run([item, parse(created("c", "L", 2))])
    assert value(engine, "all", "nb.leads.influenced") == 1
    assert value(engine, "partner:slack", "nb.leads.influenced") == 1


def test_source_partner_none_is_no_partner() -> None:
    # "none" means no partner; a CRM export's literal "None" must not become a partner
    engine = run(
        [
            created("c", "L", 1, source_partner="None"),
            opp("o", "O", 2, ["L"], source_partner="none", referral_partner="none"),
        ]
    )
    assert not [key for key in engine.totals if key[0] == "partner:none"]


def test_names_are_normalised() -> None:
    engine = run(
        [
            touch("t1", "L", 1, " 2026Q3_PTNR_Slack_Webinar_EMEA_ai-support "),
            touch("t2", "L", 2, "2026q3_ptnr_slack_webinar_emea_ai-support"),  # same campaign
            touch("t3", "L", 3, "Spring   Promo", partner=" AWS ", channel="Partner   Event"),
            created("lc", "L", 4),
        ]
    )
    assert credit(engine, "lead:L") == {"t1": F(1, 2), "t3": F(1, 2)}
    for scope in (
        "campaign:2026q3_ptnr_slack_webinar_emea_ai-support",
        "partner:slack",
        "channel:webinar",
        "campaign:spring promo",
        "partner:aws",
        "channel:partner event",
    ):
        assert value(engine, scope, "nb.leads.influenced") == 1, scope


def test_invalid_campaign_name() -> None:
    events = [
        touch("t1", "L", 1, "Spring Promo"),
        touch("t2", "L", 2, "Spring Promo"),  # a second touch event: counted again
        touch("t3", "L", 3, ptnr("slack", "ok")),
        created("lc", "L", 4),
    ]
    engine = run([*events, events[0]])  # a duplicate delivery is not counted
    assert value(engine, "all", "dq.campaign_name_invalid") == 2
    assert value(engine, "campaign:spring promo", "dq.campaign_name_invalid") == 2
    assert value(engine, camp(ptnr("slack", "ok")), "dq.campaign_name_invalid") == 0
    # still attributed, as a non-partner touch without a channel
    assert credit(engine, "lead:L") == {"t1": F(1, 2), "t3": F(1, 2)}
    assert value(engine, "campaign:spring promo", "nb.leads.attributed") == 500_000
    assert value(engine, "partner:slack", "nb.leads.attributed") == 500_000
    assert value(engine, "all", "nb.leads.attributed") == 1_000_000


def test_registry_change_reattributes() -> None:
    name = ptnr("slack", "reg")
    engine = Engine()
    for raw in [
        touch("t", "L", 1, name),
        created("lc", "L", 2),
        opp("o", "O", 3, ["L"], arr=100),
        stage("s2", "O", 4, "S2"),
    ]:
        feed(engine, raw)
    assert value(engine, "partner:slack", "nb.s2.attributed_arr") == 10_000
    deltas = feed(engine, registry("r1", name, 10, "Zoom"))
    assert deltas.totals[("partner:slack", "nb.s2.attributed_arr")] == -10_000
    assert deltas.totals[("partner:zoom", "nb.s2.attributed_arr")] == 10_000
    assert deltas.totals[("partner:slack", "nb.leads.attributed")] == -1_000_000
    retracted = [d for d in deltas.credits if d.subject == "opportunity:O" and d.credit < 0]
    assert [(d.touch_id, d.credit, d.units) for d in retracted] == [("t", F(-1), -10_000)]
    assert "partner:slack" in retracted[0].scopes
    for metric in ("nb.leads.influenced", "nb.s2.influenced", "nb.leads.attributed"):
        assert value(engine, "partner:slack", metric) == 0
    assert value(engine, "partner:zoom", "nb.s2.influenced") == 1
    # an older registry entry arriving late is not in force
    feed(engine, registry("r0", name, 5, "aws"))
    assert not [key for key in engine.totals if key[0] == "partner:aws"]
    # a newer entry without a partner falls back to the naming convention
    feed(engine, registry("r2", name, 20))
    assert value(engine, "partner:slack", "nb.s2.attributed_arr") == 10_000
    assert value(engine, "partner:zoom", "nb.s2.attributed_arr") == 0


def test_duplicate_event_ids_ignored() -> None:
    events = [
        touch("a", "L", 1),
        created("lc", "L", 1),
        opp("o", "O", 2, ["L"]),
        stage("s2", "O", 3, "S2"),
        registry("r", dg("a"), 0, "slack"),
    ]
    clean = run(events)
    engine = Engine()
    for raw in events:
        feed(engine, raw)
    for raw in events:
        again = feed(engine, raw)
        assert again.metrics == {("all", "dq.duplicates_ignored"): 1}
        assert again.credits == []
    assert value(engine, "all", "dq.duplicates_ignored") == 5
    assert engine.credits() == clean.credits()
    assert without_dq(engine) == without_dq(clean)


def test_event_time_uses_the_offset() -> None:
    # 10:00+02:00 is 08:00Z, before 09:00Z: it is the first touch
    engine = run(
        [
            {**touch("z", "L", 0), "occurred_at": "2026-01-01T09:00:00+00:00"},
            {**touch("y", "L", 0), "occurred_at": "2026-01-01T10:00:00+02:00"},
            created("lc", "L", 1),
            touch("x", "L", 2),
            opp("z-o", "O", 2, ["L"]),  # same instant as x, after it by event id
        ]
    )
    # FT y, LC z, OC x, no middle: 1/3 each; U: FT y, LC z 50/50
    assert credit(engine, "lead:L") == {"y": F(1, 2), "z": F(1, 2)}
    assert credit(engine, "opportunity:O") == {"y": F(1, 3), "z": F(1, 3), "x": F(1, 3)}


# --- credit deltas name their cause (SPEC §5 `partnerpulse.credits`) ----------


def test_credit_delta_cause_is_the_touch_that_moved_pending() -> None:
    engine = Engine(FULL_PATH)
    for raw in _case5()[:7]:
        feed(engine, raw)
    deltas = feed(engine, touch("f", "L", 6))
    causes = {d.cause for d in deltas.credits if d.subject == "opportunity:O"}
    assert causes == {"f"}


def test_credit_delta_cause_is_the_registry_entry() -> None:
    name = ptnr("slack", "cause")
    engine = Engine()
    for raw in [touch("t", "L", 1, name), created("lc", "L", 2)]:
        feed(engine, raw)
    deltas = feed(engine, registry("r1", name, 10, "zoom"))
    assert deltas.credits
    assert {d.cause for d in deltas.credits} == {"r1"}
