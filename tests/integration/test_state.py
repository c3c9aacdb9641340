"""Subject state reads against a real Redis: they never overtake a write in flight."""

from __future__ import annotations

import asyncio

import pytest

from sinks.redis_sink import HashWrite, RedisSink, SetAdd
from streams.state.store import StateStore

pytestmark = pytest.mark.integration


async def test_a_read_waits_for_the_write_in_flight_of_its_key(sink: RedisSink) -> None:
    store = StateStore(sink)
    leads = store.keys.subjects("lead")
    await sink.client.hset(leads, mapping={"a": store.encode(b"old"), "b": store.encode(b"b")})
    landed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    store.writing([HashWrite(leads, "a", store.encode(b"new"))], landed)

    other, _ = await asyncio.wait_for(store.load({"lead": {"b"}}), 2)
    assert other["lead"] == {"b": b"b"}, "a key not being written is read at once"

    reading = asyncio.create_task(store.load({"lead": {"a", "b"}}))
    await asyncio.sleep(0.3)
    assert not reading.done()
    await sink.client.hset(leads, "a", store.encode(b"new"))  # the write lands
    landed.set_result(None)
    states, _ = await asyncio.wait_for(reading, 2)
    assert states["lead"] == {"a": b"new", "b": b"b"}


async def test_campaign_members_wait_for_the_write_in_flight_of_their_set(
    sink: RedisSink,
) -> None:
    store = StateStore(sink)
    webinar = store.keys.campaign("2026q3_ptnr_slack_webinar_emea_x")
    landed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    store.writing([SetAdd(webinar, "l2")], landed)

    assert await asyncio.wait_for(store.campaign_leads(["other"]), 2) == {"other": set()}
    reading = asyncio.create_task(store.campaign_leads(["2026q3_ptnr_slack_webinar_emea_x"]))
    await asyncio.sleep(0.3)
    assert not reading.done()
    await sink.client.sadd(webinar, "l2")
    landed.set_result(None)
    assert await asyncio.wait_for(reading, 2) == {"2026q3_ptnr_slack_webinar_emea_x": {"l2"}}
