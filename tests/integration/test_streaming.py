"""The streaming path equals the batch oracle, on the real broker and real Redis."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from datagen import SyntheticConfig, generate
from models.lead import LeadState
from streams.processing import CREDITS, DLQ, METRICS
from streams.runtime import ReplayRun, replay_run, stop_worker
from streams.settings import Settings
from tests.integration.kafka_topics import read_topic
from tests.integration.poison.sitecustomize import poison_lead
from tests.integration.replay_checks import (
    assert_same,
    collected,
    kafka_totals,
    recompute,
    write_events,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

# Short sessions so a SIGKILLed worker's partitions move on quickly.
SETTINGS = Settings(session_timeout=6.0)


def test_replay_equals_recompute_shuffled_with_duplicates_two_workers(
    tmp_path: Path, broker: str, runtime: str
) -> None:
    events = write_events(
        tmp_path / "events.jsonl",
        SyntheticConfig(seed=21, leads=2200, duplicates=0.03, shuffle=0.6, invalid=0.01),
    )
    assert sum(1 for _ in events.open()) >= 20_000
    with replay_run(SETTINGS, partitions=4, broker=broker, runtime=runtime) as run:
        run.send(events)
        run.start_worker()
        run.start_worker()
        replayed = collected(run)
        bootstrap = run.endpoints.bootstrap
        metric_messages = asyncio.run(read_topic(bootstrap, run.settings.topic(METRICS), 4))
        credit_messages = asyncio.run(read_topic(bootstrap, run.settings.topic(CREDITS), 4))
    expected = recompute(events)
    assert expected["metrics"]["all"]["dq.duplicates_ignored"] > 0
    assert expected["metrics"]["all"]["dq.dead_letters"] > 0
    assert_same(replayed, expected)

    assert_same(kafka_totals(metric_messages, credit_messages), expected)


@pytest.mark.parametrize("stop", [stop_worker, subprocess.Popen.kill], ids=["sigterm", "sigkill"])
def test_worker_stopped_mid_stream_and_restarted(
    tmp_path: Path, stop: Callable[[subprocess.Popen[bytes]], object], broker: str, runtime: str
) -> None:
    """Stop (SIGTERM) or kill (SIGKILL: no shutdown, no commit) the worker a
    third of the way through, start a new one: still exact."""
    events = write_events(
        tmp_path / "events.jsonl",
        SyntheticConfig(seed=24, leads=1500, duplicates=0.02, shuffle=0.3, invalid=0.005),
    )
    with replay_run(
        SETTINGS, partitions=4, model="full-path", broker=broker, runtime=runtime
    ) as run:
        run.send(events)
        stop_one_midway(run, events, stop)
        replayed = collected(run)
    assert_same(replayed, recompute(events, "full-path"))


def test_account_mapping_two_workers_one_killed_and_restarted(tmp_path: Path) -> None:
    """`PP_MAPPING=account`: leads and opportunities meet through account-keyed
    messages; shuffled, duplicated, a worker SIGKILLed mid-stream: still exact."""
    events = write_events(
        tmp_path / "events.jsonl",
        SyntheticConfig(seed=27, leads=1500, duplicates=0.03, shuffle=0.5, invalid=0.005),
    )
    with replay_run(SETTINGS, partitions=4, mapping="account") as run:
        run.send(events)
        stop_one_midway(run, events, subprocess.Popen.kill, workers=2)
        replayed = collected(run)
    expected = recompute(events, mapping="account")
    assert expected != recompute(events), "the mappings must differ on this file"
    assert_same(replayed, expected)


def test_replay_equals_recompute_without_the_state_cache(tmp_path: Path) -> None:
    """Every batch reads its subjects from Redis, small batches: the reads of one
    batch meet the previous batch's write still in flight."""
    events = write_events(
        tmp_path / "events.jsonl",
        SyntheticConfig(seed=25, leads=500, duplicates=0.02, shuffle=0.3, invalid=0.005),
    )
    settings = SETTINGS.model_copy(update={"state_cache": 0, "batch_size": 100})
    with replay_run(settings, partitions=2) as run:
        run.send(events)
        run.start_worker()
        replayed = collected(run)
    assert_same(replayed, recompute(events))


def stop_one_midway(
    run: ReplayRun,
    events: Path,
    stop: Callable[[subprocess.Popen[bytes]], object],
    workers: int = 1,
) -> None:
    """Start `workers` workers, stop the first a third of the way through `events`,
    then start a replacement."""
    first = run.start_worker()
    for _ in range(workers - 1):
        run.start_worker()
    wait_for_progress(run, sum(1 for line in events.open() if line.strip()) // 3)
    stop(first)
    first.wait()
    run.start_worker()


def wait_for_progress(run: ReplayRun, applied: int) -> None:
    deadline = time.monotonic() + 120
    while sum(n + 1 for n in run.applied().values()) < applied:
        assert time.monotonic() < deadline, run.worker_logs()
        time.sleep(0.2)


BAD_LINES = {
    "invalid_json": b'{"type": "touch", "event_id": ',
    "missing_field": b'{"type": "mql", "event_id": "bad-1", "occurred_at": "2026-02-01T00:00:00Z"}',
    "invalid_field": (
        b'{"type": "opportunity_created", "event_id": "bad-2",'
        b' "occurred_at": "2026-02-01T00:00:00Z", "opportunity_id": "o-x", "account_id": "a",'
        b' "lead_ids": ["l"], "business": "new_business", "arr": "lots"}'
    ),
    "unknown_type": (
        b'{"type": "page_view", "event_id": "bad-3", "occurred_at": "2026-02-01T00:00:00Z"}'
    ),
    "oversize": json.dumps(
        {
            "type": "touch",
            "event_id": "bad-4",
            "occurred_at": "2026-02-01T00:00:00Z",
            "lead_id": "l",
            "campaign": "c",
            "action": "visited",
            "padding": "x" * 70_000,
        }
    ).encode(),
}


def test_bad_input_goes_to_the_dead_letter_topic(tmp_path: Path, broker: str, runtime: str) -> None:
    good = list(generate(SyntheticConfig(seed=23, leads=60)))
    lines = [orjson.dumps(item) for item in good if not isinstance(item, str)]
    for i, bad in enumerate(BAD_LINES.values()):
        lines.insert(10 + i * 50, bad)
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")

    with replay_run(SETTINGS, partitions=2, broker=broker, runtime=runtime) as run:
        run.send(events)
        run.start_worker()
        replayed = collected(run)
        records = asyncio.run(read_topic(run.endpoints.bootstrap, run.settings.topic(DLQ), 2))
    letters = [(r.value, {k: v.decode() for k, v in r.headers}) for r in records]

    assert replayed["metrics"]["all"]["dq.dead_letters"] == len(BAD_LINES)
    for reason in BAD_LINES:
        assert replayed["metrics"]["all"][f"dq.dead_letters.{reason}"] == 1
    # The topic is at least once (a restarted worker produces its batch's dead
    # letters again); the source headers identify each one.
    by_source = {
        (h["source_topic"], h["source_partition"], h["source_offset"]): (raw, h)
        for raw, h in letters
    }
    assert sorted(h["reason"] for _, h in by_source.values()) == sorted(BAD_LINES)
    for raw, headers in by_source.values():
        assert raw == BAD_LINES[headers["reason"]]
        assert headers["source_topic"].startswith(run.settings.topic_prefix)
        assert int(headers["source_offset"]) >= 0 and int(headers["source_partition"]) in (0, 1)
    assert_same(replayed, recompute(events))


POISON = Path(__file__).parent / "poison"


def test_a_poisoned_subject_is_dead_lettered_and_the_rest_applied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, broker: str, runtime: str
) -> None:
    """Settling one lead raises (an injected fault) in two workers, one SIGKILLed
    mid-stream: that lead's messages are dead-lettered as `processing_error`, the
    workers go on, and the result is the oracle's under the same fault; every
    other number is the oracle's on the file without the poisoned lead's lines."""
    events = write_events(
        tmp_path / "events.jsonl",
        SyntheticConfig(seed=26, leads=1200, duplicates=0.03, shuffle=0.3, invalid=0.005),
    )
    lines = events.read_bytes().splitlines()
    victim = poison_victim(lines)
    poisoned = [line for line in lines if _lead_of(line) == victim]
    clean = tmp_path / "clean.jsonl"
    clean.write_bytes(b"".join(line + b"\n" for line in lines if _lead_of(line) != victim))

    monkeypatch.setenv("PP_TEST_POISON_LEAD", victim)
    path = [str(POISON), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(path))
    with replay_run(SETTINGS, partitions=4, broker=broker, runtime=runtime) as run:
        run.send(events)
        stop_one_midway(run, events, subprocess.Popen.kill, workers=2)
        replayed = collected(run)
        records = asyncio.run(read_topic(run.endpoints.bootstrap, run.settings.topic(DLQ), 4))

    letters = {
        (h["source_topic"], h["source_partition"], h["source_offset"]): (r.value, h)
        for r in records
        for h in [{k: v.decode() for k, v in r.headers}]
        if h["reason"] == "processing_error"
    }
    assert sorted(raw for raw, _ in letters.values()) == sorted(poisoned)
    for _, headers in letters.values():
        assert headers["error"] == f"RuntimeError: injected fault settling lead {victim}"

    with monkeypatch.context() as patched:
        patched.setattr(LeadState, "contribute", LeadState.contribute)
        poison_lead(victim)
        assert_same(replayed, recompute(events))
    expected = recompute(clean)
    dq = expected["metrics"]["all"]
    dq["dq.dead_letters"] += len(poisoned)
    dq["dq.dead_letters.processing_error"] = len(poisoned)
    assert_same(replayed, expected)


def _lead_of(line: bytes) -> str | None:
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return event.get("lead_id") if isinstance(event, dict) else None


def poison_victim(lines: list[bytes]) -> str:
    """A lead with several lines, a duplicate among them, and no opportunity."""
    contacts = set()
    counts: dict[str, list[bytes]] = {}
    for line in lines:
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(event, dict):
            continue
        contacts.update(event.get("lead_ids") or ())
        if "lead_id" in event:
            counts.setdefault(event["lead_id"], []).append(line)
    return next(
        lead
        for lead, own in sorted(counts.items())
        if lead not in contacts and len(own) >= 3 and len(set(own)) < len(own)
    )
