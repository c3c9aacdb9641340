"""The worker's subject cache: its two tiers (live objects, then bytes)."""

from __future__ import annotations

import asyncio
from fractions import Fraction
from typing import cast

from models.attribution import Touchpoint
from models.engine import Settled
from models.lead import LeadSnapshot, LeadState
from models.subject import NO_REPEATS, Contribution, CreditLine, Subject
from sinks.redis_sink import NOTHING, HashWrite, Published, StateWrite, published
from streams.state.codec import UNKNOWN, decompress, dump_lead, dump_published, load_published
from streams.state.store import KINDS, StateKeys, StateStore, pack
from streams.state.subjects import CachedSubjects

LINE = CreditLine(Fraction(1, 3), 333_333, ("all", "partner:slack"), ("first",), 1)
BASE = Contribution(
    {
        ("all", "nb.leads.influenced@2026-03-09"): 1,
        ("partner:slack", "nb.leads.attributed@2026-03-09"): 333_333,
        ("all", "dq.late_events"): 2,
    },
    {"evt-1": LINE},
)


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


# --- the two tiers (CachedSubjects) -------------------------------------------


class FakeStore:
    """The Redis side of `CachedSubjects`: the written states, and the reads asked."""

    def __init__(self) -> None:
        self.keys = StateKeys("pp:")
        self.held: dict[str, dict[str, bytes]] = {kind: {} for kind in KINDS}
        self.asked: list[dict[str, set[str]]] = []

    def encode(self, value: bytes) -> bytes:
        return pack(value, True)

    def apply(self, writes: list[StateWrite]) -> None:
        """What the sink does with a batch's state writes."""
        for write in writes:
            if isinstance(write, HashWrite):
                self.held[write.key.removeprefix("pp:state:")][write.field] = write.value

    async def load(
        self, wanted: dict[str, set[str]], campaigns: object = ()
    ) -> tuple[dict[str, dict[str, bytes]], dict[str, bytes]]:
        asked = {kind: ids for kind, ids in wanted.items() if ids}
        if asked:
            self.asked.append(asked)
        states = {
            kind: {i: decompress(self.held[kind][i]) for i in ids if i in self.held[kind]}
            for kind, ids in wanted.items()
        }
        return states, {}


def cache(size: int = 3, hot: int = 1) -> tuple[CachedSubjects, FakeStore]:
    store = FakeStore()
    return CachedSubjects(cast(StateStore, store), size, 1, hot), store


def sent(lead_id: str) -> Published:
    return published(
        Contribution({("all", f"leads.acquired@2026-03-0{len(lead_id)}"): 1}, {"evt-1": LINE})
    )


def snapshot(lead_id: str) -> LeadSnapshot:
    point = Touchpoint(10, f"evt-{lead_id}", lead_id, "spring", "slack", None)
    return LeadSnapshot(lead_id, "acme", (point,), point)


def settle(subjects: CachedSubjects, store: FakeStore, *lead_ids: str) -> list[StateWrite]:
    """One batch as a worker runs it: each lead admits an event and publishes, then
    the states are written (and applied, as the sink does) and the cache trimmed."""
    for lead_id in lead_ids:
        lead = subjects.leads.setdefault(lead_id, LeadState(lead_id))
        assert lead.admit(f"evt-{lead_id}-{len(lead.seen)}", 10, len(lead.seen) + 1)
        lead.sent = sent(lead_id)
        lead.snapshot = snapshot(lead_id)
    writes = subjects.writes(Settled(leads=list(lead_ids)))
    store.apply(writes)
    subjects.trim()
    return writes


def load(subjects: CachedSubjects, kind: str, *ids: str) -> None:
    asyncio.run(subjects.load({kind: set(ids)}, (), ()))


def test_subjects_beyond_the_hot_tier_are_kept_as_the_bytes_written() -> None:
    subjects, store = cache(size=3, hot=1)
    written = settle(subjects, store, "a")
    settle(subjects, store, "b")
    assert list(subjects.leads) == ["b"]
    assert [w.value for w in written if isinstance(w, HashWrite)] == [
        subjects._cold["lead"]["a"].state
    ]


def test_a_cold_hit_is_decoded_with_what_it_published() -> None:
    subjects, store = cache(size=3, hot=1)
    settle(subjects, store, "a")
    settle(subjects, store, "b")
    load(subjects, "lead", "a")
    assert store.asked == []  # no read from Redis
    lead = subjects.leads["a"]
    assert lead.seen == {"evt-a-0": 1}
    assert lead.sent == sent("a")  # the sink's base: deltas, not a diff
    assert lead.snapshot == snapshot("a")  # as its subscribers have it: not sent again
    assert (subjects.hits, subjects.misses, subjects.cold_hits) == (1, 0, 1)


def test_lru_order_runs_across_the_tiers() -> None:
    subjects, store = cache(size=3, hot=1)
    for lead_id in "abcd":
        settle(subjects, store, lead_id)
    # hot [d]; cold [b, c]: a was the least recently used of four
    assert (list(subjects.leads), list(subjects._cold["lead"])) == (["d"], ["b", "c"])

    load(subjects, "lead", "b")  # promoted: the most recently used
    subjects.trim()
    assert (list(subjects.leads), list(subjects._cold["lead"])) == (["b"], ["c", "d"])

    settle(subjects, store, "e")  # b demoted after d; c, the oldest, goes
    assert (list(subjects.leads), list(subjects._cold["lead"])) == (["e"], ["d", "b"])

    load(subjects, "lead", "a", "c")
    assert store.asked == [{"lead": {"a", "c"}}]
    assert subjects.leads["a"].sent is None  # read back: its base is unknown
    assert subjects.leads["a"].contribution is UNKNOWN
    assert (subjects.hits, subjects.misses) == (1, 2)


def test_a_restored_subject_leaves_both_tiers() -> None:
    """Poison isolation: a promoted subject changed by a failed batch goes back to
    its state before the batch, which Redis holds, never to a cached copy."""
    subjects, store = cache(size=3, hot=1)
    settle(subjects, store, "a")
    settle(subjects, store, "b")
    load(subjects, "lead", "a")
    assert subjects.leads["a"].admit("evt-poison", 20, 9)
    subjects.restore("lead", "a")
    subjects.trim()
    assert "a" not in subjects.leads
    assert "a" not in subjects._cold["lead"]
    assert "a" not in subjects._encoded["lead"]  # nothing of it is left behind

    load(subjects, "lead", "a")
    assert store.asked == [{"lead": {"a"}}]
    assert subjects.leads["a"].seen == {"evt-a-0": 1}
    assert subjects.leads["a"].sent is None


def test_clear_drops_both_tiers() -> None:
    subjects, store = cache(size=3, hot=1)
    settle(subjects, store, "a")
    settle(subjects, store, "b")
    subjects.clear()
    load(subjects, "lead", "a", "b")
    assert store.asked == [{"lead": {"a", "b"}}]
    assert (subjects.hits, subjects.misses) == (0, 2)


def test_a_subject_read_but_not_written_is_let_go_not_demoted() -> None:
    """Its bytes are not at hand; it is read again when next touched."""
    subjects, store = cache(size=3, hot=1)
    store.held["lead"]["x"] = pack(dump_lead(LeadState("x")), True)
    load(subjects, "lead", "x")
    settle(subjects, store, "b")
    assert (list(subjects.leads), list(subjects._cold["lead"])) == (["b"], [])


def test_without_a_cache_nothing_is_kept() -> None:
    subjects, store = cache(size=0, hot=10)
    settle(subjects, store, "a")
    assert (subjects.leads, subjects._cold["lead"]) == ({}, {})


def test_each_subject_of_an_extension_key_keeps_its_own_base() -> None:
    subjects, store = cache(size=3, hot=0)
    known, unknown = Subject("k"), Subject("k")
    known.sent = published(Contribution({("all", "dq.late_events"): 2}, {}))
    unknown.contribution = UNKNOWN
    subjects.others["k"] = {"partner_events": known, "referrals": unknown}
    store.apply(subjects.writes(Settled(others=["k"])))
    subjects.trim()
    assert subjects.others == {}

    load(subjects, "other", "k")
    again = subjects.others["k"]
    assert again["partner_events"].sent == published(
        Contribution({("all", "dq.late_events"): 2}, {})
    )
    assert again["referrals"].sent is None


def test_published_contributions_survive_their_bytes() -> None:
    other = Contribution({("partner:slack", "pipeline.sourced_arr@2026-03-09"): 1 << 40}, {})
    texts = {"": published(BASE), "group:x": published(other), "none": NOTHING}
    assert load_published(dump_published(texts, None)) == (texts, None)
    lead_snapshot = snapshot("lead-1")
    unattributed = LeadSnapshot("lead-2", None, (), None)
    for kept in (lead_snapshot, unattributed):
        assert load_published(dump_published(texts, kept)) == (texts, kept)
