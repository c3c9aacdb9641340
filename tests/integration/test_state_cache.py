"""The worker's processing through both tiers of its state cache equals the oracle.

A Processor is driven in-process against the real Redis, batch by batch, its
internal messages fed back as the next batch's (no broker), with a cache far
smaller than the file's subjects and a hot tier smaller still: subjects are
demoted, promoted and evicted all along.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from datagen import SyntheticConfig
from models.output import render
from sinks.redis_sink import RedisSink
from streams.processing import Message, Processor
from streams.runtime import destination
from streams.settings import Settings
from streams.state.store import StateStore
from tests.integration.replay_checks import assert_same, recompute, write_events

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

SETTINGS = Settings(partitions=1)


class Topics:
    """Offsets per topic of one partition: each message gets the next."""

    def __init__(self) -> None:
        self.next: defaultdict[str, int] = defaultdict(int)

    def message(self, topic: str, raw: bytes) -> Message:
        offset = self.next[topic]
        self.next[topic] = offset + 1
        return Message(topic, 0, offset, raw)


@pytest.mark.parametrize(("size", "hot"), [(60, 10), (200, 0)])
async def test_replay_equals_recompute_through_both_tiers(
    sink: RedisSink, tmp_path: Path, size: int, hot: int
) -> None:
    events = write_events(
        tmp_path / "events.jsonl",
        SyntheticConfig(seed=28, leads=300, duplicates=0.03, shuffle=0.4, invalid=0.005),
    )
    store = StateStore(sink)
    processor = Processor(
        SETTINGS.model_copy(update={"state_cache": size, "state_hot": hot}), store
    )
    assert (processor.subjects.size, processor.subjects.hot) == (size, hot)  # PP_STATE_*
    await processor.start()
    topics = Topics()
    lines = [line for line in events.read_bytes().splitlines() if line.strip()]
    pending: list[Message] = []
    while lines or pending:
        chunk, lines = lines[:50], lines[50:]
        inputs = [topics.message(destination(line, SETTINGS)[0], line) for line in chunk]
        batch = await processor.process(inputs + pending)
        await store.record_registry(batch.registry)
        await sink.execute(sink.prepare(batch.sink))
        pending = [topics.message(SETTINGS.topic(s.topic), s.value) for s in batch.sends]

    subjects = processor.subjects
    assert subjects.cold_hits > 0
    assert subjects.misses > 0
    held = (
        len(subjects.leads)
        + len(subjects.opportunities)
        + len(subjects.others)
        + len(subjects.accounts)
    )
    assert held <= hot  # after the last trim
    replayed = render(await sink.read_metrics(), await sink.read_credits())
    assert_same(replayed, recompute(events))
