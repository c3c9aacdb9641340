"""A running worker's operator endpoints, scraped as Prometheus scrapes them."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from datagen import SyntheticConfig
from streams.embedded import find_free_port
from streams.runtime import ReplayRun, replay_run
from streams.settings import Settings
from tests.integration.replay_checks import assert_same, collected, recompute, write_events

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    """Every sample of `/metrics`, parsed by the Prometheus text parser."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


def status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except urllib.error.URLError:
        return 0  # not serving (yet)


def eventually(run: ReplayRun, condition: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, run.worker_logs()[-3000:]
        time.sleep(0.1)


def test_lag_batch_latency_and_dead_letters_move_as_a_replay_proceeds(tmp_path: Path) -> None:
    events = write_events(
        tmp_path / "events.jsonl",
        SyntheticConfig(seed=41, leads=3000, duplicates=0.02, shuffle=0.3, invalid=0.01),
    )
    port = find_free_port()
    # small batches: the replay takes many of them, so the scrapes see it move
    settings = Settings(session_timeout=6.0, batch_size=200, metrics_port=port)
    with replay_run(settings, partitions=4) as run:
        run.send(events)
        run.start_worker()
        eventually(run, lambda: status(port, "/healthz") == 200)

        early: Samples = {}

        def working() -> bool:  # batches applied while messages still wait
            early.clear()
            early.update(scrape(port))
            batches = total(early, "partnerpulse_batch_seconds_count")
            return batches >= 3 and total(early, "partnerpulse_consumer_lag") > 0

        eventually(run, working)
        assert status(port, "/readyz") == 200
        assert total(early, "partnerpulse_owned_partitions") > 0
        lag = total(early, "partnerpulse_consumer_lag")
        replayed = collected(run)
        final = scrape(port)

    expected = recompute(events)
    assert_same(replayed, expected)
    # lag: messages were waiting early on, none once everything is applied
    assert lag > 0
    assert total(final, "partnerpulse_consumer_lag") == 0
    # batches and their latency keep being counted
    assert total(final, "partnerpulse_batch_seconds_count") > total(
        early, "partnerpulse_batch_seconds_count"
    )
    assert total(final, "partnerpulse_batch_seconds_sum") > 0
    assert total(final, "partnerpulse_sink_call_seconds_count") == total(
        final, "partnerpulse_batch_seconds_count"
    )
    # every message consumed is counted by topic, every dead letter by reason
    dead = expected["metrics"]["all"]["dq.dead_letters"]
    assert total(final, "partnerpulse_dead_letters_total") == dead
    assert total(final, "partnerpulse_dead_letters_total") > total(
        early, "partnerpulse_dead_letters_total"
    )
    for reason, count in expected["metrics"]["all"].items():
        if reason.startswith("dq.dead_letters."):
            name = reason.removeprefix("dq.dead_letters.")
            assert total(final, "partnerpulse_dead_letters_total", reason=name) == count
    consumed = total(final, "partnerpulse_events_total")
    assert consumed >= sum(1 for line in events.open() if line.strip())
    assert total(final, "partnerpulse_state_cache_total", result="miss") > 0
    assert total(final, "partnerpulse_runtime_info", runtime="aiokafka") == 1
    assert total(final, "process_start_time_seconds") > 0  # a restart shows as a new start
