"""The cache's packed contribution: the same mapping, the same deltas, less memory."""

from __future__ import annotations

from fractions import Fraction

import pytest

from models.subject import NO_REPEATS, Contribution, CreditLine, Subject, diff
from sinks.redis_sink import _encode_subject
from streams.state.subjects import PackedMetrics, compact

LINE = CreditLine(Fraction(1, 3), 333_333, ("all", "partner:slack"), ("first",), 1)
BASE = Contribution(
    {
        ("all", "nb.leads.influenced@2026-03-09"): 1,
        ("partner:slack", "nb.leads.attributed@2026-03-09"): 333_333,
        ("all", "dq.late_events"): 2,
    },
    {"evt-1": LINE},
)


def test_packed_metrics_read_back_as_the_dict() -> None:
    packed = compact(BASE).metrics
    assert isinstance(packed, PackedMetrics)
    assert dict(packed) == BASE.metrics
    assert list(packed.items()) == list(BASE.metrics.items())
    assert packed[("all", "dq.late_events")] == 2
    assert ("all", "dq.late_events") in packed
    with pytest.raises(KeyError):
        packed[("all", "leads.acquired@2026-03-09")]


def test_packed_metrics_equal_a_dict_either_side() -> None:
    packed, plain = compact(BASE), BASE
    assert packed == plain
    assert plain == packed  # the dict's side: it hands the comparison over
    changed = {**BASE.metrics, ("all", "dq.late_events"): 3}
    assert packed != Contribution(changed, BASE.credits)
    assert Contribution(changed, BASE.credits) != packed
    fewer = dict(list(BASE.metrics.items())[:2])
    assert packed.metrics != fewer
    assert packed.metrics != {**BASE.metrics, ("all", "leads.acquired@2026-03-09"): 1}


def test_keys_are_shared_between_compacted_contributions() -> None:
    again = Contribution({("all", "dq.late_events"): 2}, {})
    first = next(k for k in compact(BASE).metrics if k[1] == "dq.late_events")
    assert next(iter(compact(again).metrics)) is first


def test_a_value_beyond_32_bits_is_packed_in_64() -> None:
    large = Contribution({("all", "pipeline.sourced_arr@2026-03-09"): 1 << 40}, {})
    packed = compact(large).metrics
    assert isinstance(packed, PackedMetrics)
    assert dict(packed) == {("all", "pipeline.sourced_arr@2026-03-09"): 1 << 40}


def test_a_value_beyond_64_bits_stays_a_dict() -> None:
    huge = Contribution({("all", "pipeline.sourced_arr@2026-03-09"): 1 << 70}, {})
    kept = compact(huge)
    assert kept == huge
    assert type(kept.metrics) is dict


def test_deltas_from_a_packed_base_are_those_from_the_dict() -> None:
    new = Contribution(
        {
            ("all", "nb.leads.influenced@2026-03-09"): 1,
            ("partner:slack", "nb.leads.attributed@2026-03-09"): 500_000,
            ("all", "leads.acquired@2026-03-09"): 1,
        },
        {"evt-1": CreditLine(Fraction(1, 2), 500_000, LINE.scopes, LINE.positions, 1)},
    )
    packed = compact(BASE)
    assert diff("lead:l1", packed, new, "evt-2") == diff("lead:l1", BASE, new, "evt-2")
    assert _encode_subject("lead:l1", new, "evt-2", packed) == _encode_subject(
        "lead:l1", new, "evt-2", BASE
    )
    _, deltas = _encode_subject("lead:l1", new, "evt-2", packed)
    assert deltas == {
        ("partner:slack", "nb.leads.attributed@2026-03-09"): 166_667,
        ("all", "leads.acquired@2026-03-09"): 1,
        ("all", "dq.late_events"): -2,
    }


def test_a_subject_without_duplicates_holds_no_set_of_its_own() -> None:
    first, second = Subject("a"), Subject("b")
    assert first.admit("evt-1", 10, 1)
    assert second.admit("evt-1", 10, 1)
    assert first.repeats is second.repeats is NO_REPEATS
    assert not first.admit("evt-1", 10, 5)  # a duplicate at another position
    assert not first.admit("evt-1", 10, 5)  # the same duplicate delivered again
    assert not first.admit("evt-1", 10, 1)  # a replay: not counted
    assert first.repeats == {5}
    assert second.repeats == frozenset()
    assert first.quality() == {("all", "dq.duplicates_ignored"): 1}
