"""Series and windows through the streaming path equal the batch oracle's (SPEC §4.1, §6).

Two workers over a shuffled file with duplicates and malformed lines: every
day of every series, and every window's totals, equal `recompute`'s; in Redis
as in the engine, each series sums to its running total.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner

from datagen import SyntheticConfig
from models.config import EngineConfig
from models.engine import Engine
from models.output import render
from models.periods import SERIES_METRICS, Calendar, Window, split_point, window_totals
from sinks.redis_sink import RedisSink
from streams.cli import main
from streams.cli.common import read_jsonl
from streams.runtime import replay_run
from streams.settings import Settings
from streams.windows import read_window
from tests.integration.replay_checks import MAX_BYTES, assert_same, write_events
from tests.local_redis import REDIS_URL

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

FEBRUARY = Calendar(start_month=2)
WINDOWS = [
    Calendar().period("2026Q1"),
    Calendar().period("2026-02"),
    FEBRUARY.period("2026Q1"),  # February to April
    Window(date(2026, 3, 15), date(2026, 5, 20)),
]


def test_replay_series_and_windows_equal_recompute_two_workers(tmp_path: Path) -> None:
    events = write_events(
        tmp_path / "events.jsonl",
        SyntheticConfig(seed=31, leads=900, duplicates=0.03, shuffle=0.5, invalid=0.01),
    )
    with replay_run(Settings(session_timeout=6.0), partitions=4) as run:
        run.send(events)
        run.start_worker()
        run.start_worker()
        totals, credits = run.collect(600)
    engine = Engine(EngineConfig())
    engine.run(read_jsonl(events, engine.ctx.config, MAX_BYTES))

    expected = render(engine.totals, engine.credits())
    assert sum(len(days) for m in expected["series"].values() for days in m.values()) > 1000
    assert_same(render(totals, credits), expected)  # totals, every series day and credits
    for window in WINDOWS:
        assert_same(
            render(window_totals(totals, window), credits),
            render(window_totals(engine.totals, window), engine.credits()),
        )
    sums: dict[tuple[str, str], int] = {}
    for (scope, metric), value in totals.items():
        name, day = split_point(metric)
        if day is not None:
            sums[(scope, name)] = sums.get((scope, name), 0) + value
    for (scope, metric), value in totals.items():
        if metric in SERIES_METRICS:
            assert sums.get((scope, metric)) == value, (scope, metric)


def test_replay_command_prints_the_windowed_document_of_recompute(tmp_path: Path) -> None:
    events = write_events(
        tmp_path / "events.jsonl", SyntheticConfig(seed=32, leads=200, shuffle=0.3, invalid=0.01)
    )
    window = ["--from", "2026-02-10", "--to", "2026-04-30"]
    env = {**os.environ, "PP_SESSION_TIMEOUT": "6"}

    def cli(*args: str) -> dict[str, object]:
        done = subprocess.run(
            [sys.executable, "-m", "streams.cli", *args, str(events), "--json", *window],
            capture_output=True,
            env=env,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        document: dict[str, object] = json.loads(done.stdout)
        return document

    replayed = cli("replay", "--workers", "2")
    expected = cli("recompute")
    assert expected["metrics"] and expected["series"]
    assert replayed == expected


async def test_read_window_sums_each_series_over_the_window(sink: RedisSink) -> None:
    keys = sink.keys
    await sink.client.hset(
        keys.series("partner:slack", "nb.cw.influenced"),
        mapping={"2026-06-30": 1, "2026-07-01": 2, "2026-09-30": 4, "2026-10-01": 8},
    )
    await sink.client.hset(
        keys.series("partner:a b", "nb.cw.influenced_arr"), mapping={"2026-08-15": 150_000}
    )
    got = await read_window(
        sink,
        ["partner:slack", "partner:a b", "partner:none-yet"],
        ["nb.cw.influenced", "nb.cw.influenced_arr"],
        Calendar().period("2026Q3"),
    )
    assert got == {
        ("partner:slack", "nb.cw.influenced"): 6,  # July 1 and September 30, not June or October
        ("partner:a b", "nb.cw.influenced_arr"): 150_000,
    }


async def test_report_from_redis_over_a_period(sink: RedisSink) -> None:
    keys = sink.keys
    await sink.client.hset(keys.metrics("partner:slack"), mapping={"nb.s2.influenced": 3})
    await sink.client.hset(
        keys.series("partner:slack", "nb.s2.influenced"),
        mapping={"2026-03-31": 1, "2026-04-01": 2},  # Q1, Q2
    )
    runner = CliRunner()
    options = ["--redis", REDIS_URL, "--prefix", sink.keys.prefix, "--json"]
    result = await asyncio.to_thread(
        runner.invoke, main, ["report", *options, "--period", "2026Q2", "--compare"]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["tables"]["new_business"]["rows"]
    slack = next(row for row in rows if row["label"] == "partner:slack")
    assert slack["values"]["nb.s2.influenced"] == 2
    assert slack["previous"]["nb.s2.influenced"] == 1
    assert slack["change"]["nb.s2.influenced"] == 1
