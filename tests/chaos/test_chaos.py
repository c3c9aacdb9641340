"""Fault injection on the real path (broker, worker processes, Redis).

The worker kills run on both brokers (Tansu and Apache Kafka, the `broker`
fixture); the Redis faults on Tansu only (the broker plays no part in them).

Every scenario ends with the same three checks against the batch oracle:
Redis metrics and credits == `recompute` to the cent; the dead-letter topic
holds exactly the injected bad messages (deduplicated by source: the topic
is at least once); the Kafka outputs, deduplicated by id, add up to the
final totals.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from datagen import SyntheticConfig, generate
from streams.processing import CREDITS, DLQ, METRICS
from streams.runtime import ReplayRun, replay_run
from streams.settings import Settings
from tests.chaos.redis_server import RedisServer
from tests.integration.kafka_topics import read_topic
from tests.integration.replay_checks import (
    assert_same,
    collected,
    kafka_totals,
    recompute_once,
    write_events,
)

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.timeout(600)]

# Short sessions: a killed worker's partitions move on after 3 s.  Smaller
# batches: more points inside the stream for a kill to land on.
CHAOS = Settings(session_timeout=3.0, batch_size=400)


def applied(run: ReplayRun) -> int:
    return sum(n + 1 for n in run.applied().values())


def wait_for(run: ReplayRun, count: int, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while applied(run) < count:
        assert time.monotonic() < deadline, run.worker_logs()
        time.sleep(0.1)


def check(run: ReplayRun, events: Path, bad: int, model: str = "w-shaped") -> None:
    """The three checks of the module doc."""
    replayed = collected(run)
    expected = recompute_once(events, model)
    assert expected["metrics"]["all"].get("dq.dead_letters", 0) == bad
    try:
        assert_same(replayed, expected)
    except BaseException:
        # what the workers saw (assignments, retries, refusals): a rare mismatch
        # is only worth its CI run with them
        print(run.worker_logs(tail=50_000))
        raise
    n = run.settings.partitions
    bootstrap = run.endpoints.bootstrap
    metrics, credits, letters = (
        asyncio.run(read_topic(bootstrap, run.settings.topic(name), n))
        for name in (METRICS, CREDITS, DLQ)
    )
    sources = {tuple(v.decode() for k, v in r.headers if k.startswith("source_")) for r in letters}
    assert len(sources) == bad
    assert_same(kafka_totals(metrics, credits), expected)


def test_sigkill_at_random_points_ten_times(tmp_path: Path, broker: str, runtime: str) -> None:
    events = write_events(
        tmp_path / "events.jsonl",
        # long enough that ten kills (about 5 s of sleeps between them) land before
        # the end: 5,600 leads were all applied by the tenth kill once the worker got faster
        SyntheticConfig(seed=31, leads=14_000, duplicates=0.03, shuffle=0.5, invalid=0.005),
    )
    total = sum(1 for line in events.open() if line.strip())
    assert total >= 50_000
    bad = recompute_once(events)["metrics"]["all"]["dq.dead_letters"]
    rng = random.Random(31)
    with replay_run(CHAOS, partitions=4, broker=broker, runtime=runtime) as run:
        run.send(events)
        worker = run.start_worker()
        for _ in range(10):
            # a kill only counts once the new worker is moving: wait for progress
            wait_for(run, applied(run) + 1)
            time.sleep(rng.uniform(0.0, 1.5))
            worker.kill()
            worker.wait()
            worker = run.start_worker()
        assert applied(run) < total, "every kill should land mid-stream"
        check(run, events, bad)


def test_two_workers_one_killed_mid_stream_then_restarted(
    tmp_path: Path, broker: str, runtime: str
) -> None:
    events = write_events(
        tmp_path / "events.jsonl",
        SyntheticConfig(seed=32, leads=2500, duplicates=0.02, shuffle=0.5, invalid=0.005),
    )
    total = sum(1 for line in events.open() if line.strip())
    bad = recompute_once(events, "full-path")["metrics"]["all"]["dq.dead_letters"]
    with replay_run(CHAOS, partitions=8, model="full-path", broker=broker, runtime=runtime) as run:
        run.send(events)
        first = run.start_worker()
        run.start_worker()
        wait_for(run, total // 4)
        first.kill()  # its partitions move to the other worker: a rebalance
        first.wait()
        wait_for(run, total // 2)
        run.start_worker()  # and back: another rebalance
        check(run, events, bad, "full-path")


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_redis_down_for_ten_seconds_mid_stream(tmp_path: Path, private_redis: RedisServer) -> None:
    """The worker waits for Redis (back-pressure, no crash), then goes on exactly."""
    events = write_events(
        tmp_path / "events.jsonl",
        SyntheticConfig(seed=33, leads=2500, duplicates=0.02, shuffle=0.5, invalid=0.005),
    )
    total = sum(1 for line in events.open() if line.strip())
    bad = recompute_once(events)["metrics"]["all"]["dq.dead_letters"]
    settings = CHAOS.model_copy(update={"redis_url": private_redis.url})
    with replay_run(settings, partitions=4) as run:
        run.send(events)
        worker = run.start_worker()
        wait_for(run, total // 4)
        private_redis.stop()
        time.sleep(10)
        assert worker.poll() is None, "the worker must wait for Redis, not exit"
        private_redis.start()
        check(run, events, bad)
        assert run.restarts == 0 and worker.poll() is None


def test_redis_killed_and_restarted_with_its_data_three_times(
    tmp_path: Path, private_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL Redis at random points (between, or in the middle of, a batch's
    reads and its Lua apply); it comes back with every acknowledged write.

    Once (of seventeen runs counted), lead metrics came out 2-3 % high with
    every credit exact; not reproduced since.  The workers log at INFO here,
    and a failed check prints their logs, for the next time."""
    monkeypatch.setenv("PP_LOGLEVEL", "info")
    events = write_events(
        tmp_path / "events.jsonl",
        SyntheticConfig(seed=34, leads=2500, duplicates=0.02, shuffle=0.5, invalid=0.005),
    )
    total = sum(1 for line in events.open() if line.strip())
    bad = recompute_once(events)["metrics"]["all"]["dq.dead_letters"]
    settings = CHAOS.model_copy(update={"redis_url": private_redis.url})
    rng = random.Random(34)
    with replay_run(settings, partitions=4) as run:
        run.send(events)
        run.start_worker()
        for k in range(1, 4):
            wait_for(run, total * k // 5)
            time.sleep(rng.uniform(0.0, 0.5))
            private_redis.kill()
            time.sleep(rng.uniform(0.5, 2.0))
            private_redis.start()
        check(run, events, bad)


HOSTILE_NAMES = [
    "2026Q3_ptnr_a:b|c_webinar_emea_colon-pipe",
    "camp {tag} *?[glob] \\ back",
    "ünïcødé 🚀 campaign",
    "line\nbreak %20 percent",
    "pp:m:all",
]
HOSTILE_PARTNERS = ["part:ner|{x}*", "  Spaced PARTNER  ", "ü🚀?", "100%", "a\tb"]


def hostile_events() -> list[dict[str, Any]]:
    """Valid events whose campaign and partner names are made to break naive keys."""
    out: list[dict[str, Any]] = []
    for i, (campaign, partner) in enumerate(zip(HOSTILE_NAMES, HOSTILE_PARTNERS, strict=True)):
        lead, at = f"hostile-{i}", f"2026-03-0{i + 1}T10:00:00+00:00"
        base = {"occurred_at": at, "lead_id": lead}
        out += [
            {**base, "type": "touch", "event_id": f"h{i}-t", "campaign": campaign,
             "action": "attended", "partner": partner, "channel": campaign},
            {**base, "type": "lead_created", "event_id": f"h{i}-c"},
            {**base, "type": "mql", "event_id": f"h{i}-m"},
            {"type": "opportunity_created", "event_id": f"h{i}-o", "occurred_at": at,
             "opportunity_id": f"opp {campaign}", "account_id": f"acct:{i}",
             "lead_ids": [lead], "business": "new_business", "arr": 1000 * (i + 1) + 0.25},
            {"type": "opportunity_stage", "event_id": f"h{i}-w", "occurred_at": at,
             "opportunity_id": f"opp {campaign}", "stage": "closed_won"},
        ]  # fmt: skip
    return out


POISON = [
    b'{"type": "touch", "event_id": ',
    b"[1, 2, 3]",
    b'{"event_id": "p-1", "occurred_at": "2026-02-01T00:00:00Z"}',
    b'{"type": "mql", "event_id": "p-2", "occurred_at": "2026-02-01T00:00:00Z"}',
    b'{"type": "opportunity_created", "event_id": "p-3", "occurred_at": "2026-02-01T00:00:00Z",'
    b' "opportunity_id": "o", "account_id": "a", "lead_ids": "not-a-list",'
    b' "business": "new_business", "arr": 5}',
    b'{"type": "page_view", "event_id": "p-4", "occurred_at": "2026-02-01T00:00:00Z"}',
    b'{"type": "touch", "event_id": "p-5", "occurred_at": "yesterday", "lead_id": "l",'
    b' "campaign": "c", "action": "visited"}',
    json.dumps({"type": "touch", "event_id": "p-6", "pad": "x" * 70_000}).encode(),
    b"\xff\xfe not utf-8",
]


def test_poison_and_hostile_names_interleaved(tmp_path: Path) -> None:
    good = [orjson.dumps(i) for i in generate(SyntheticConfig(seed=35, leads=800))]
    good += [orjson.dumps(e) for e in hostile_events()]
    rng = random.Random(35)
    rng.shuffle(good)
    lines = list(good)
    injected = 0
    for k in range(60):
        lines.insert(rng.randrange(len(lines)), POISON[k % len(POISON)])
        injected += 1
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    with replay_run(CHAOS, partitions=4) as run:
        run.send(events)
        run.start_worker()
        check(run, events, injected)
    scopes = recompute_once(events)["metrics"]
    assert any("🚀" in scope for scope in scopes) and any("{x}" in s for s in scopes)


def test_late_and_duplicated_events_after_a_restart(tmp_path: Path) -> None:
    items = [i for i in generate(SyntheticConfig(seed=36, leads=1500)) if not isinstance(i, str)]
    rng = random.Random(36)
    again = rng.sample(items, 600)  # the same events (same ids) delivered again
    late = []
    for n, item in enumerate(rng.sample(items, 300)):  # new events, older than the rest
        if item["type"] == "touch":
            late.append({**item, "event_id": f"late-{n}", "occurred_at": "2025-01-01T00:00:00Z"})
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    first.write_bytes(b"\n".join(orjson.dumps(i) for i in items) + b"\n")
    second.write_bytes(b"\n".join(orjson.dumps(i) for i in again + late) + b"\n")
    both = tmp_path / "both.jsonl"
    both.write_bytes(first.read_bytes() + second.read_bytes())
    with replay_run(CHAOS, partitions=4) as run:
        run.send(first)
        worker = run.start_worker()
        run.collect(300, keep=True)
        worker.kill()
        worker.wait()
        run.send(second)
        run.start_worker()
        check(run, both, 0)
    totals = recompute_once(both)["metrics"]["all"]
    assert totals["dq.duplicates_ignored"] >= 600 and totals["dq.late_events"] > 0
