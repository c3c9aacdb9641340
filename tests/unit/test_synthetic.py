"""The synthetic stream generator (the `datagen` package): pure, seeded, valid, realistic."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from datetime import date, datetime
from functools import cache
from itertools import pairwise

import pytest
from click.testing import CliRunner

from datagen import PARTNERS, SyntheticConfig, generate
from models.config import DEFAULT_NAMING
from models.events import ROUTES
from models.parse import Rejection, parse_event
from streams.cli import main

Item = dict[str, object] | str


@cache
def stream(
    seed: int = 1,
    leads: int = 400,
    duplicates: float = 0.0,
    shuffle: float = 0.0,
    invalid: float = 0.0,
) -> tuple[Item, ...]:
    return tuple(
        generate(
            SyntheticConfig(
                seed=seed, leads=leads, duplicates=duplicates, shuffle=shuffle, invalid=invalid
            )
        )
    )


def events(items: tuple[Item, ...]) -> list[dict[str, object]]:
    return [item for item in items if isinstance(item, dict)]


def moment(item: dict[str, object]) -> datetime:
    return datetime.fromisoformat(str(item["occurred_at"]))


def test_same_seed_same_output_and_other_seed_differs() -> None:
    config = SyntheticConfig(seed=11, leads=200, duplicates=0.05, shuffle=0.1, invalid=0.02)
    first = generate(config)
    assert first == generate(config)
    assert json.dumps(first) == json.dumps(generate(config))
    assert first != generate(SyntheticConfig(seed=12, leads=200))


def test_every_dict_validates_and_every_str_is_rejected() -> None:
    items = stream(duplicates=0.05, shuffle=0.2, invalid=0.05)
    strings = [item for item in items if isinstance(item, str)]
    assert strings
    for item in events(items):
        parsed = parse_event(json.dumps(item).encode())
        assert not isinstance(parsed, Rejection), (item, parsed)
        assert parsed.event_id == item["event_id"]
    reasons: Counter[str] = Counter()
    for line in strings:
        assert "\n" not in line
        parsed = parse_event(line.encode())
        assert isinstance(parsed, Rejection), line
        reasons[parsed.reason] += 1
    assert {"invalid_json", "missing_field", "unknown_type", "invalid_field"} <= set(reasons)


def test_json_ready_values() -> None:
    for item in events(stream()):
        assert str(item["occurred_at"]).endswith("+00:00")
        for key in ("arr", "spend"):
            if key in item:
                value = item[key]
                assert isinstance(value, int | float) and not isinstance(value, bool)
                assert value >= 0
                assert isinstance(value, int) or round(value, 2) == value


def test_all_event_types_present() -> None:
    assert {str(item["type"]) for item in events(stream())} == set(ROUTES)


def test_ids_unique_without_duplicates() -> None:
    ids = [item["event_id"] for item in events(stream())]
    assert len(ids) == len(set(ids))


def test_no_shuffle_means_event_time_order() -> None:
    items = events(stream())
    keys = [(moment(item), str(item["event_id"])) for item in items]
    assert keys == sorted(keys)


def test_shuffle_moves_events_but_keeps_the_set() -> None:
    clean = events(stream())
    shuffled = events(stream(shuffle=0.3))
    assert shuffled != clean
    assert sorted(shuffled, key=lambda e: str(e["event_id"])) == clean
    out_of_order = sum(1 for a, b in pairwise(shuffled) if moment(b) < moment(a))
    assert out_of_order > len(clean) * 0.05


def test_duplicates_fraction_identical_content_later_position() -> None:
    clean = events(stream())
    items = events(stream(duplicates=0.1))
    seen: dict[object, dict[str, object]] = {}
    repeats = 0
    for item in items:
        first = seen.get(item["event_id"])
        if first is None:
            seen[item["event_id"]] = item
        else:
            repeats += 1
            assert item == first and item is not first
    assert len(seen) == len(clean)
    assert abs(repeats / len(clean) - 0.1) < 0.01
    # the first deliveries are the clean stream, still in order
    assert list(seen.values()) == clean


def test_invalid_fraction() -> None:
    clean = events(stream())
    items = stream(invalid=0.05)
    bad = [item for item in items if isinstance(item, str)]
    assert abs(len(bad) / len(clean) - 0.05) < 0.01
    assert events(items) == clean


def test_some_campaign_names_break_the_naming_convention() -> None:
    naming = re.compile(DEFAULT_NAMING)
    names = {
        str(item["campaign"]).strip().lower()
        for item in events(stream())
        if item["type"] in ("touch", "campaign", "campaign_stats")
    }
    invalid = {name for name in names if not naming.match(name)}
    assert invalid
    assert 0.03 < len(invalid) / len(names) < 0.25
    parsed_partners = {m["partner"] for name in names if (m := naming.match(name))}
    assert {p.id for p in PARTNERS} <= parsed_partners
    assert "none" in parsed_partners


def test_realistic_shape() -> None:
    leads = 400
    items = events(stream(leads=leads))
    by_type = Counter(str(item["type"]) for item in items)
    mql_leads = {item["lead_id"] for item in items if item["type"] == "mql"}
    assert 0.3 < len(mql_leads) / leads < 0.5
    opps = [item for item in items if item["type"] == "opportunity_created"]
    assert abs(len(opps) - leads / 6) <= leads / 30
    assert {o["business"] for o in opps} == {"new_business", "expansion"}
    assert len({o.get("currency", "USD") for o in opps}) >= 3
    assert any("source_partner" in o for o in opps)
    assert any("referral_partner" in o for o in opps)
    assert all(5_000 * 0.5 <= float(str(o["arr"])) <= 250_000 for o in opps)
    assert by_type["touch"] > 2 * leads

    # contacts: primary first, all leads of one account (as far as events say)
    account_of: dict[object, object] = {}
    for item in items:
        if item["type"] in ("touch", "lead_created") and "account_id" in item:
            assert account_of.setdefault(item["lead_id"], item["account_id"]) == item["account_id"]
    for o in opps:
        lead_ids = o["lead_ids"]
        assert isinstance(lead_ids, list) and 1 <= len(lead_ids) <= 3
        assert len(set(lead_ids)) == len(lead_ids)
        for lead in lead_ids:
            assert account_of.get(lead, o["account_id"]) == o["account_id"]

    # stage histories: S2 sometimes skipped, some regressions, won and lost
    stages: dict[object, list[str]] = {}
    for item in items:
        if item["type"] == "opportunity_stage":
            stages.setdefault(item["opportunity_id"], []).append(str(item["stage"]))
    flat = Counter(s for path in stages.values() for s in path)
    assert flat["closed_won"] and flat["closed_lost"]
    assert any("S3" in p and "S2" not in p for p in stages.values())
    order = {"S1": 1, "S2": 2, "S3": 3, "S4": 4, "S5": 5}
    assert any(order.get(b, 9) < order.get(a, 0) for p in stages.values() for a, b in pairwise(p))


def test_dormant_leads_are_reengaged_by_partner_campaigns() -> None:
    naming = re.compile(DEFAULT_NAMING)
    last: dict[object, datetime] = {}
    reengaged = 0
    for item in events(stream()):
        if item["type"] != "touch":
            continue
        at = moment(item)
        before = last.get(item["lead_id"])
        if before is not None and (at - before).days > 90:
            m = naming.match(str(item["campaign"]).lower())
            if "partner" in item or (m and m["partner"] != "none") or not m:
                reengaged += 1
        last[item["lead_id"]] = at
    assert reengaged >= 5


def test_milestones_sometimes_repeat() -> None:
    items = events(stream(leads=1000))
    created = Counter(item["lead_id"] for item in items if item["type"] == "lead_created")
    won = Counter(
        item["opportunity_id"]
        for item in items
        if item["type"] == "opportunity_stage" and item["stage"] == "closed_won"
    )
    assert max(created.values()) >= 2
    assert max(won.values()) >= 2


def test_zero_leads_and_tiny_spans_still_work() -> None:
    for config in (
        SyntheticConfig(seed=3, leads=0, invalid=0.1),
        SyntheticConfig(seed=3, leads=20, days=7, duplicates=1.0, shuffle=1.0, invalid=1.0),
    ):
        for item in generate(config):
            parsed = parse_event((item if isinstance(item, str) else json.dumps(item)).encode())
            assert isinstance(parsed, Rejection) == isinstance(item, str)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"leads": -1},
        {"days": 0},
        {"shuffle": 1.5},
        {"duplicates": -0.1},
        {"currencies": ()},
        {"currencies": ("usd",)},
        {"accounts": 0},
    ],
)
def test_config_is_validated(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SyntheticConfig(seed=1, **kwargs)  # type: ignore[arg-type]


def test_most_touches_are_plain_and_some_register_or_attend() -> None:
    """SPEC §1: `action` is optional; the generator sends it as CRM exports do,
    on sign-ups and attendance only, so most touches carry none."""
    touches = [item for item in events(stream()) if item["type"] == "touch"]
    actions = Counter(item.get("action") for item in touches)
    assert actions[None] > len(touches) / 2
    assert actions["registered"] > 0 and actions["attended"] > 0
    assert set(actions) == {None, "registered", "attended"}


def test_quarters_in_names_follow_the_fiscal_start_month() -> None:
    """Campaigns starting in January 2026: 2026Q1 with a January fiscal start,
    FY2025 Q4 (November-January) with a February start (SPEC §4.1)."""
    naming = re.compile(DEFAULT_NAMING)

    def quarters(start_month: int) -> set[str]:
        config = SyntheticConfig(
            seed=2, leads=50, start=date(2026, 1, 5), days=20, fiscal_start_month=start_month
        )
        names = {
            str(e["campaign"]).lower() for e in events(tuple(generate(config))) if "campaign" in e
        }
        return {m["period"] for name in names if (m := naming.match(name)) and "q" in m["period"]}

    assert quarters(1) == {"2026q1"}
    assert quarters(2) == {"2025q4"}


def test_goals_from_outcomes_are_quarterly_and_near_what_the_campaign_achieves() -> None:
    """Each goal's period is the fiscal quarter its campaign starts in (from the
    registry, else the name), and its target is the campaign's influenced
    leads over that quarter, counted here by hand, give or take a third."""
    config = SyntheticConfig(
        seed=4, leads=1500, start=date(2026, 7, 1), days=92, goals_from_outcomes=True
    )
    items = events(tuple(generate(config)))
    q3 = ("2026-07-01", "2026-09-30")
    created: dict[object, str] = {}
    touched: dict[tuple[str, object], str] = {}
    for item in items:
        at = str(item["occurred_at"])
        if item["type"] == "lead_created":
            created.setdefault(item["lead_id"], at)
        if item["type"] == "touch":
            touched.setdefault((str(item["campaign"]).lower(), item["lead_id"]), at)
    checked = 0
    for item in items:
        goal = item.get("goal")
        if not isinstance(goal, dict):
            continue
        if "period_start" in goal:
            assert (goal["period_start"][:10], goal["period_end"][:10]) == q3
        else:
            assert str(item["campaign"]).lower().startswith("2026q3_")
        if goal["metric"] != "nb.leads.influenced":
            continue
        name = str(item["campaign"]).lower()
        actual = sum(
            1
            for (c, lead), at in touched.items()
            if c == name and lead in created and at <= created[lead]
        )
        assert 0.75 * actual - 1 <= goal["target"] <= 1.35 * actual + 1, (name, goal, actual)
        checked += 1
    assert checked >= 3


def test_generate_without_start_is_unchanged() -> None:
    """sha256 of `partnerpulse generate` output on main (3987b0f) before --start existed:
    `partnerpulse generate --seed 7 --leads 300 --duplicates 0.02 --shuffle 0.05
    --invalid 0.01 | sha256sum` and `partnerpulse generate --seed 1 | sha256sum`."""
    runner = CliRunner()
    for args, digest in (
        (
            [
                "--seed",
                "7",
                "--leads",
                "300",
                "--duplicates",
                "0.02",
                "--shuffle",
                "0.05",
                "--invalid",
                "0.01",
            ],
            "bfcb323defb5127ff01de720f15f52129fdc0bba40d8d55beff32711aef9040c",
        ),
        (["--seed", "1"], "d1a5b8a46516c5e22265ca5b7c63df32d42df2a516dcab0f4755f6853a1cec15"),
    ):
        result = runner.invoke(main, ["generate", *args])
        assert result.exit_code == 0, result.output
        assert hashlib.sha256(result.stdout_bytes).hexdigest() == digest


def test_generate_start_moves_event_time() -> None:
    result = CliRunner().invoke(
        main, ["generate", "--seed", "1", "--leads", "20", "--days", "10", "--start", "2025-03-04"]
    )
    assert result.exit_code == 0, result.output
    days = {json.loads(line)["occurred_at"][:10] for line in result.stdout.splitlines()}
    assert min(days) == "2025-03-04" and max(days) <= "2025-03-13"
