"""The worker's processing against a real Redis, batch by batch, without a broker."""

from __future__ import annotations

import orjson
import pytest

from models.engine import RegistryEntry
from sinks.redis_sink import RedisSink
from streams.processing import LEAD_COMMANDS, Message, Processor
from streams.settings import Settings
from streams.state.codec import dump_registry
from streams.state.store import StateStore
from tests.lead_journey import CAMPAIGN, lead_journey

pytestmark = pytest.mark.integration

SETTINGS = Settings(partitions=1)


def lead_messages() -> list[Message]:
    """`lead_journey` on `leads` partition 0."""
    topic = SETTINGS.topic("leads")
    return [
        Message(topic, 0, offset, orjson.dumps(line)) for offset, line in enumerate(lead_journey())
    ]


async def test_a_restarted_worker_resettles_the_leads_of_an_entry_it_loaded(
    sink: RedisSink,
) -> None:
    """The campaign's owner records a registry entry in Redis, then broadcasts it.
    A lead worker restarting in between loads the entry at start, so its partner
    is in force when the broadcast arrives; the broadcast must still re-settle
    the campaign's leads, whose published numbers lack the partner."""
    store = StateStore(sink)
    before = Processor(SETTINGS, store)
    await before.start()
    await sink.execute(sink.prepare((await before.process(lead_messages())).sink))
    assert ("partner:slack", "nb.leads.influenced") not in await sink.read_metrics()

    entry = RegistryEntry(1, "r1", "slack")
    await store.record_registry({CAMPAIGN: dump_registry(entry)})
    restarted = Processor(SETTINGS, store)
    await restarted.start()
    command = {
        "op": "registry",
        "campaign": CAMPAIGN,
        "ts": 1,
        "event_id": "r1",
        "partner": "slack",
    }
    broadcast = Message(SETTINGS.topic(LEAD_COMMANDS), 0, 0, orjson.dumps(command))
    await sink.execute(sink.prepare((await restarted.process([broadcast])).sink))

    metrics = await sink.read_metrics()
    assert metrics[("partner:slack", "nb.leads.influenced")] == 1
    assert metrics[("partner:slack", "leads.acquired")] == 1
    assert metrics[("all", "nb.leads.influenced")] == 1
