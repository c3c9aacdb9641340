"""The demo's endless feed: epochs never collide and every line is a valid event or a bad line."""

from __future__ import annotations

from itertools import islice

import orjson

from models.parse import Rejection, parse_event
from models.synthetic import SyntheticConfig, generate
from streams.demo import EPOCH_DAYS, applied_count, demo_stream, epoch_events

RENAMED = {"event_id", "lead_id", "opportunity_id", "account_id", "referral_id"}


def test_epochs_have_disjoint_ids_and_consecutive_event_time() -> None:
    first, second = epoch_events(7, 0), epoch_events(7, 1)
    parsed = [[parse_event(raw) for raw in epoch] for epoch in (first, second)]
    events = [[e for e in epoch if not isinstance(e, Rejection)] for epoch in parsed]
    assert all(any(isinstance(e, Rejection) for e in epoch) for epoch in parsed)
    ids = [{e.event_id for e in epoch} for epoch in events]
    assert ids[0] and ids[1] and not ids[0] & ids[1]
    assert all(i.startswith("r0-") for i in ids[0]) and all(i.startswith("r1-") for i in ids[1])
    contacts = [lead for e in events[1] for lead in getattr(e, "lead_ids", ())]
    assert contacts and all(lead.startswith("r1-lead-") for lead in contacts)
    days = [sorted(e.occurred_at for e in epoch) for epoch in events]
    assert days[0][-1] < days[1][0]
    assert (days[1][0] - days[0][0]).days >= EPOCH_DAYS - 1


def test_epoch_zero_is_the_synthetic_world_renamed() -> None:
    """Same events as `generate` with the same config, ids prefixed, nothing else changed."""
    config = SyntheticConfig(
        seed=3, leads=1000, days=EPOCH_DAYS, duplicates=0.01, shuffle=0.02, invalid=0.002
    )
    items, lines = generate(config), epoch_events(3, 0)
    assert len(items) == len(lines)
    renamed = 0
    for item, line in zip(items, lines, strict=True):
        if isinstance(item, str):  # malformed lines pass through untouched
            assert line == item.encode()
            continue
        expected = {key: "r0-" + value if key in RENAMED else value for key, value in item.items()}
        if "lead_ids" in item:
            expected["lead_ids"] = [f"r0-{lead}" for lead in item["lead_ids"]]
        assert orjson.loads(line) == expected
        renamed += 1
    assert renamed > 1000


def test_stream_continues_past_an_epoch() -> None:
    n = len(epoch_events(1, 0))
    tail = list(islice(demo_stream(1), n, n + 5))
    assert all(b'"r1-' in line for line in tail)


def test_applied_count_sums_next_offsets_of_the_topics_asked() -> None:
    offsets = {("leads", 0): 9, ("leads", 1): 0, ("opportunities", 0): 4, ("internal", 0): 99}
    assert applied_count(offsets, ["leads", "opportunities"]) == 10 + 1 + 5
    assert applied_count({}, ["leads"]) == 0
