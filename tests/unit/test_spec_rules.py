"""The rules the clarified SPEC §1-§4 states, one hand-computed test each.

The stage ladder, a repeated `opportunity_created`, `none`/blank partners and
the channel fallback, "at or before" on `(occurred_at, event_id)` pairs, an MQL
without `lead_created`, the `partners` scope, the lookback window and the
position pickers.  Touches carry no `action` unless a test is about it (as in
real CRM exports).  Builders and conventions are those of test_rules.py: days
from 2026-01-01, ARR 1000 = 100 000 cents, lead credit in millionths.
"""

from __future__ import annotations

from fractions import Fraction as F

from models.attribution import (
    Position,
    Touchpoint,
    full_path_positions,
    position_roles,
    u_shaped_positions,
    w_shaped_positions,
)
from models.config import EngineConfig
from models.engine import Engine
from tests.unit.test_rules import (
    FULL_PATH,
    camp,
    created,
    credit,
    dg,
    mql,
    opp,
    ptnr,
    registry,
    run,
    stage,
    touch,
    value,
)

LOOKBACK = EngineConfig(lookback_days=10)
FULL_PATH_LOOKBACK = EngineConfig(model="full-path", lookback_days=10)


def expect(engine: Engine, table: list[tuple[str, str, int]]) -> None:
    """Each (scope, metric, hand-computed value) holds; names the first that does not."""
    for scope, metric, expected in table:
        assert value(engine, scope, metric) == expected, (scope, metric)


# --- §1 stage ladder ------------------------------------------------------------


def test_won_without_stages_reaches_s2_at_its_win_and_closed_lost_is_off_the_ladder() -> None:
    engine = run(
        [
            touch("a", "L", 1),
            created("lc", "L", 1.5),
            opp("o", "O", 2, ["L"]),
            touch("b", "L", 3),  # after creation, before the win
            stage("w", "O", 4, "closed_won"),  # S2 reached here, at the win
            stage("s1", "O", 5, "S1"),  # a later regression undoes nothing
            touch("m", "M", 1),
            opp("p", "P", 2, ["M"]),
            stage("l", "P", 3, "closed_lost"),  # lost: never reached S2
            touch("n", "N", 1),
            opp("q", "Q", 2, ["N"]),
            stage("s3", "Q", 3, "S3"),  # S2 skipped: S3 reaches it
            stage("q1", "Q", 4, "S1"),
        ]
    )
    expect(
        engine,
        [
            ("all", "nb.s2.influenced", 2),  # O and Q
            (camp(dg("a")), "nb.s2.influenced", 1),
            # the S2 moment of O is its win (day 4), so b (day 3) influenced it
            (camp(dg("b")), "nb.s2.influenced", 1),
            (camp(dg("b")), "nb.cw.influenced", 1),
            (camp(dg("m")), "nb.s2.influenced", 0),
            (camp(dg("n")), "nb.s2.influenced", 1),
            # W credit of O: only a is at or before creation -> all 100 000 cents
            (camp(dg("a")), "nb.s2.attributed_arr", 100_000),
            (camp(dg("b")), "nb.s2.attributed_arr", 0),
        ],
    )


# --- §1 repeated opportunity_created --------------------------------------------


def test_repeated_opportunity_created_unions_contacts_latest_arr_rest_from_earliest() -> None:
    engine = run(
        [
            touch("a", "L1", 1),
            touch("b", "L2", 2),
            # the later event arrives first: another contact, new ARR, other facts
            opp("o2", "O", 5, ["L2"], 2000, "expansion", "other", source_partner="zoom"),
            opp("o1", "O", 3, ["L1"], arr=1000, source_partner="slack"),
            stage("s", "O", 6, "S2"),  # no arr: the latest carrying one is o2
        ]
    )
    # contacts L1 + L2; created day 3 (o1); a and b both at or before it.
    # FT a, OC b, no LC, no middle: LC's 30 % and middle's 10 % shared by the
    # two held positions -> 50 / 50
    assert credit(engine, "opportunity:O") == {"a": F(1, 2), "b": F(1, 2)}
    # business new_business (o1), ARR 2000 (o2): 200 000 cents
    expect(
        engine,
        [
            ("all", "nb.s2.influenced_arr", 200_000),
            ("all", "nb.s2.attributed_arr", 200_000),
            ("all", "ex.s2.influenced", 0),
            # the source partner comes from the earliest event
            ("partner:slack", "pipeline.sourced_arr", 200_000),
            ("partner:zoom", "pipeline.sourced_deals", 0),
        ],
    )


# --- §1 action optional ----------------------------------------------------------


def test_plain_touch_counts_for_attribution_and_influence_not_engagement() -> None:
    webinar = ptnr("slack", "launch")
    engine = run(
        [
            touch("p", "L", 1, webinar),  # plain: the touchpoint of the campaign
            touch("r", "L", 2, webinar, action="Registered"),  # a later interaction
            touch("q", "M", 1, webinar),  # plain only
            touch("x", "M", 1.5, dg("x"), action="attended"),
            created("c", "L", 3),
            created("cm", "M", 3),
        ]
    )
    assert credit(engine, "lead:L") == {"p": F(1)}
    assert credit(engine, "lead:M") == {"q": F(1, 2), "x": F(1, 2)}
    expect(
        engine,
        [
            (camp(webinar), "nb.leads.influenced", 2),
            (camp(webinar), "campaigns.registrations", 1),  # L, by r
            (camp(webinar), "campaigns.attendees", 0),
            (camp(dg("x")), "campaigns.attendees", 1),
            ("all", "campaigns.registrations", 1),
        ],
    )


# --- §2 none, blank, channel -----------------------------------------------------


def test_none_any_case_and_blank_mean_no_partner_everywhere() -> None:
    engine = run(
        [
            registry("r1", ptnr("slack", "x"), 0, "zoom"),
            registry("r2", ptnr("slack", "y"), 0, "None"),  # registry says none
            # an explicit NONE on the touch stops the search (registry zoom, name slack)
            touch("t1", "L1", 1, ptnr("slack", "x"), partner="NONE"),
            # a registry none is no partner from the registry: the name decides
            touch("t2", "L2", 1, ptnr("slack", "y")),
            touch("t3", "L3", 1, "2026Q3_ptnr_NONE_webinar_emea_z"),  # name part NONE
            # a blank field is absent: the name's partner; the touch's channel wins
            touch("t4", "L4", 1, ptnr("hubspot", "w"), partner="  ", channel="Event"),
            created("c1", "L1", 2, source_partner="NoNe"),
            created("c2", "L2", 2),
            created("c3", "L3", 2),
            created("c4", "L4", 2, source_partner=" "),
            opp("o", "O", 3, ["L1"], source_partner="none", referral_partner=""),
        ]
    )
    expect(
        engine,
        [
            ("partner:zoom", "nb.leads.influenced", 0),
            ("partner:none", "nb.leads.influenced", 0),
            ("partner:slack", "nb.leads.influenced", 1),  # t2
            ("partner:hubspot", "nb.leads.influenced", 1),  # t4
            ("partners", "nb.leads.influenced", 2),
            ("all", "nb.leads.influenced", 4),
            # acquired: L2 (LC slack) and L4 (LC hubspot); L1's source_partner NoNe is none
            ("all", "leads.acquired", 2),
            ("partners", "leads.acquired", 2),
            ("all", "pipeline.sourced_deals", 0),
            ("all", "pipeline.referrals", 0),
            # channel: the touch's field, else the name's channel group
            ("channel:event", "nb.leads.influenced", 1),  # t4
            ("channel:webinar", "nb.leads.influenced", 3),  # t1 t2 t3
        ],
    )


# --- §3 "at or before" compares (occurred_at, event_id) -------------------------


def _ties() -> list[dict[str, object]]:
    """Every milestone shares its instant with a touch on each side of its event id."""
    return [
        touch("a", "L", 1),
        touch("b", "L", 2),
        created("bb", "L", 2),  # b < bb: b is at or before lead creation
        touch("c", "L", 2),  # c > bb: after it
        touch("d", "L", 3),
        opp("d0", "O", 3, ["L"]),  # d < d0: at or before creation
        touch("e", "L", 3),  # e > d0: after creation
        touch("f", "L", 4),
        stage("s", "O", 4, "S2"),  # f < s: influences S2
        touch("t", "L", 4),  # t > s: does not
        touch("v", "L", 6),
        stage("w", "O", 6, "closed_won"),  # v < w: the CW touchpoint
        touch("x", "L", 6),  # x > w: after the win
    ]


def test_at_or_before_breaks_same_instant_ties_by_event_id() -> None:
    engine = run(_ties())
    # lead: FT a, LC b (c is after creation): 50 / 50
    assert credit(engine, "lead:L") == {"a": F(1, 2), "b": F(1, 2)}
    assert value(engine, camp(dg("b")), "nb.leads.influenced") == 1
    assert value(engine, camp(dg("c")), "nb.leads.influenced") == 0
    # W: FT a, LC b, OC d, middle c; e is after creation
    assert credit(engine, "opportunity:O") == {
        "a": F(3, 10),
        "b": F(3, 10),
        "c": F(1, 10),
        "d": F(3, 10),
    }
    expect(
        engine,
        [
            (camp(dg("f")), "nb.s2.influenced", 1),
            (camp(dg("t")), "nb.s2.influenced", 0),
            (camp(dg("v")), "nb.cw.influenced", 1),
            (camp(dg("x")), "nb.cw.influenced", 0),
        ],
    )


def test_full_path_cw_and_oc_at_or_before_by_event_id() -> None:
    # FT a, LC b, OC d (latest at or before (day 3, d0)), CW v (latest at or
    # before (day 6, w)); middles c, e, f, t share 10 %: 1/40 each; x is after
    assert credit(run(_ties(), FULL_PATH), "opportunity:O") == {
        "a": F(9, 40),
        "b": F(9, 40),
        "c": F(1, 40),
        "d": F(9, 40),
        "e": F(1, 40),
        "f": F(1, 40),
        "t": F(1, 40),
        "v": F(9, 40),
    }


# --- §4 MQL without lead_created --------------------------------------------------


def test_mql_counts_without_lead_created() -> None:
    engine = run([touch("a", "L", 1, ptnr("slack", "a")), mql("m", "L", 2)])
    for scope in ("all", "partners", "partner:slack", camp(ptnr("slack", "a"))):
        assert value(engine, scope, "nb.mqls.influenced") == 1
    assert value(engine, "all", "nb.leads.influenced") == 0
    assert "lead:L" not in engine.credits()  # no lead creation: no U-shaped credit


# --- §4 the partners scope --------------------------------------------------------


def test_partners_scope_counts_once_and_sums_partner_credit() -> None:
    engine = run(
        [
            touch("a", "L", 1, ptnr("slack", "a")),
            touch("b", "L", 2, ptnr("zoom", "b")),
            touch("c", "L", 3),  # no partner
            created("lc", "L", 3.5),
            mql("m", "L", 4),
            opp("o", "O", 4, ["L"]),
            stage("w", "O", 5, "closed_won"),
            touch("d", "L2", 1, ptnr("slack", "d")),
            created("lc2", "L2", 2, source_partner="zoom"),
            opp("p", "P", 4, ["L2"], arr=500, source_partner="slack", referral_partner="zoom"),
        ]
    )
    # influenced: L touched by two partners counts once in partners
    expect(
        engine,
        [
            ("partners", "nb.leads.influenced", 2),  # L, L2
            ("partner:slack", "nb.leads.influenced", 2),
            ("partner:zoom", "nb.leads.influenced", 1),
            ("partners", "nb.mqls.influenced", 1),
            # U-shaped on L: FT a 40 %, LC c 40 %, middle b 20 %; L2: d 100 %
            ("partner:slack", "nb.leads.attributed", 400_000 + 1_000_000),
            ("partner:zoom", "nb.leads.attributed", 200_000),
            ("partners", "nb.leads.attributed", 600_000 + 1_000_000),
            ("all", "nb.leads.attributed", 2_000_000),
            # W on O (100 000 cents): FT a 30 %, LC = OC c 60 %, middle b 10 %
            ("partner:slack", "nb.cw.attributed_arr", 30_000),
            ("partner:zoom", "nb.cw.attributed_arr", 10_000),
            ("partners", "nb.cw.attributed_arr", 40_000),  # <= all
            ("all", "nb.cw.attributed_arr", 100_000),
            # influenced ARR once in partners although two partners touched O
            ("partners", "nb.cw.influenced", 1),
            ("partners", "nb.cw.influenced_arr", 100_000),
            ("partner:slack", "nb.cw.influenced_arr", 100_000),
            ("partner:zoom", "nb.cw.influenced_arr", 100_000),
            # acquired: L2 by its LC d (slack) and its source (zoom): once in partners
            ("partner:slack", "leads.acquired", 1),
            ("partner:zoom", "leads.acquired", 1),
            ("partners", "leads.acquired", 1),
            ("all", "leads.acquired", 1),
            # pipeline: P sourced by slack, referred by zoom
            ("partners", "pipeline.sourced_deals", 1),
            ("partners", "pipeline.sourced_arr", 50_000),
            ("partners", "pipeline.referrals", 1),
            ("partner:zoom", "pipeline.referrals", 1),
            ("all", "pipeline.referrals", 1),
            # performance: O (partner touchpoints) is one closed, won deal in partners
            ("partners", "perf.partner.closed", 1),
            ("partners", "perf.partner.won", 1),
        ],
    )


# --- lookback window (PP_LOOKBACK_DAYS) ------------------------------------------


def _lookback_case() -> list[dict[str, object]]:
    return [
        touch("a", "L", 0),
        touch("b", "L", 5),  # exactly 10 days before lead creation: still eligible
        touch("c", "L", 12),
        created("lc", "L", 15),
        touch("d", "L", 18),
        opp("o", "O", 20, ["L"]),
        stage("s", "O", 25, "S2"),
        mql("m", "L", 29),
        touch("e", "L", 30),  # after creation; exactly 10 days before the win
        stage("w", "O", 40, "closed_won"),
    ]


def test_lookback_window_limits_eligibility_per_conversion() -> None:
    engine = run(_lookback_case(), LOOKBACK)
    # lead creation (day 15), window [5, 15]: b, c; a is 15 days before
    assert credit(engine, "lead:L") == {"b": F(1, 2), "c": F(1, 2)}
    expect(
        engine,
        [
            (camp(dg("a")), "nb.leads.influenced", 0),
            (camp(dg("b")), "nb.leads.influenced", 1),
            # MQL (day 29), window [19, 29]: no touchpoint -> influenced nowhere
            ("all", "nb.mqls.influenced", 0),
            # W, window [10, 20] from creation: c (FT, and the lead's LC), d (OC).
            # FT + LC = 60 %, OC 30 %, the unused middle 10 % by 3 position shares:
        ],
    )
    # c 2/3, d 1/3
    assert credit(engine, "opportunity:O") == {"c": F(2, 3), "d": F(1, 3)}
    # S2 (day 25), window [15, 25]: d only
    expect(
        engine,
        [
            (camp(dg("d")), "nb.s2.influenced", 1),
            (camp(dg("c")), "nb.s2.influenced", 0),
            # closed-won (day 40), window [30, 40]: e on the edge only
            (camp(dg("e")), "nb.cw.influenced", 1),
            (camp(dg("d")), "nb.cw.influenced", 0),
            # attributed ARR is the opportunity's credit (window from creation)
            (camp(dg("c")), "nb.cw.attributed_arr", 66_667),
            (camp(dg("d")), "nb.cw.attributed_arr", 33_333),
        ],
    )


def test_lookback_is_off_by_default() -> None:
    engine = run(_lookback_case())
    # U: FT a 40 %, LC c 40 %, middle b 20 %
    assert credit(engine, "lead:L") == {"a": F(2, 5), "b": F(1, 5), "c": F(2, 5)}
    assert value(engine, "all", "nb.mqls.influenced") == 1


def test_lookback_full_path_window_runs_from_creation_to_the_close() -> None:
    # window [10, (40, w)]: c FT + LC, d OC, e CW, no middle: each of the four
    # positions 22.5 % + 10 % / 4 = 25 %
    engine = run(_lookback_case(), FULL_PATH_LOOKBACK)
    assert credit(engine, "opportunity:O") == {"c": F(1, 2), "d": F(1, 4), "e": F(1, 4)}


# --- position pickers and the Position enum --------------------------------------


def _points(n: int) -> list[Touchpoint]:
    return [Touchpoint(i, f"t{i}", "L", f"c{i}", None, None) for i in range(1, n + 1)]


def test_position_pickers() -> None:
    p1, p2, p3, p4 = _points(4)
    assert u_shaped_positions([]) == {Position.FT: None, Position.LC: None}
    assert u_shaped_positions([p1, p2, p3]) == {Position.FT: p1, Position.LC: p3}
    assert w_shaped_positions([p1, p2, p3], p2) == {
        Position.FT: p1,
        Position.LC: p2,
        Position.OC: p3,
    }
    # an LC that is not eligible holds no position
    assert w_shaped_positions([p1, p2, p3], p4)[Position.LC] is None
    full = full_path_positions([p1, p2, p3, p4], p2, (2, "t2"))
    assert full == {Position.FT: p1, Position.LC: p2, Position.OC: p2, Position.CW: p4}
    assert position_roles(full) == {p1: ("ft",), p2: ("lc", "oc"), p4: ("cw",)}
    assert position_roles(full, pending=True)[p4] == ("pending",)


def test_position_values_are_the_stored_strings() -> None:
    assert [p.value for p in Position] == ["ft", "lc", "oc", "cw", "pending", "middle"]
    roles = position_roles({Position.FT: _points(1)[0]})
    assert all(type(role) is str for names in roles.values() for role in names)
