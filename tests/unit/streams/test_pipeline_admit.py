"""`Pipeline.admit`: what a runtime delivers is applied in offset order or not at all.

A runtime may redeliver (a rebalance, Faust's recovery seeking to its committed
offset) or skip (Faust's commit guard, faust #606): both are decided here, before
anything is processed, with hand-written offsets.
"""

from __future__ import annotations

from streams.pipeline import Pipeline
from streams.processing import Message


def pipeline(expected: dict[tuple[str, int], int]) -> Pipeline:
    """A pipeline that owns `expected`'s partitions, next offsets as given (`admit`
    touches nothing but these positions, so no Redis or broker is needed)."""
    owned = Pipeline.__new__(Pipeline)
    owned._expected = dict(expected)
    return owned


def m(topic: str, partition: int, offset: int) -> Message:
    return Message(topic, partition, offset, b"{}")


def offsets(messages: list[Message]) -> list[tuple[str, int, int]]:
    return [(x.topic, x.partition, x.offset) for x in messages]


def test_contiguous_delivery_is_admitted_and_advances() -> None:
    p = pipeline({("leads", 0): 5, ("leads", 1): 0})
    accepted, gaps = p.admit([m("leads", 0, 5), m("leads", 1, 0), m("leads", 0, 6)])
    assert offsets(accepted) == [("leads", 0, 5), ("leads", 1, 0), ("leads", 0, 6)]
    assert gaps == {}
    accepted, gaps = p.admit([m("leads", 0, 7)])
    assert offsets(accepted) == [("leads", 0, 7)] and gaps == {}


def test_redelivered_messages_are_dropped() -> None:
    p = pipeline({("leads", 0): 5})
    accepted, gaps = p.admit([m("leads", 0, 3), m("leads", 0, 4), m("leads", 0, 5)])
    assert offsets(accepted) == [("leads", 0, 5)]
    assert gaps == {}


def test_a_gap_cuts_its_partition_and_asks_for_a_seek_back() -> None:
    p = pipeline({("leads", 0): 5, ("opportunities", 0): 9})
    batch = [
        m("leads", 0, 5),
        m("leads", 0, 7),  # 6 never came
        m("opportunities", 0, 9),
        m("leads", 0, 8),  # after the gap: not applied either
    ]
    accepted, gaps = p.admit(batch)
    assert offsets(accepted) == [("leads", 0, 5), ("opportunities", 0, 9)]
    assert gaps == {("leads", 0): 6}
    # the runtime seeks back: 6 arrives, then the rest again
    accepted, gaps = p.admit([m("leads", 0, 6), m("leads", 0, 7), m("leads", 0, 8)])
    assert offsets(accepted) == [("leads", 0, 6), ("leads", 0, 7), ("leads", 0, 8)]
    assert gaps == {}


def test_messages_of_partitions_not_owned_are_dropped() -> None:
    p = pipeline({("leads", 0): 0})
    accepted, gaps = p.admit([m("leads", 1, 0), m("leads", 0, 0)])
    assert offsets(accepted) == [("leads", 0, 0)]
    assert gaps == {}
