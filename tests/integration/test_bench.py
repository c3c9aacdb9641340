"""`partnerpulse bench` runs end to end on tiny sizes and prints sane figures.

Not a performance test: nothing here compares a figure with a target (the
machine is shared and noisy; docs/benchmarks.md has the measured numbers).
It checks that every part of the benchmark ran and reported a plausible
number, so the command cannot rot unnoticed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.bench, pytest.mark.timeout(540)]

PIPELINE_FIGURES = ("raw", "one_worker", "two_workers", "p50_ms", "p99_ms", "recompute")
RUNTIME_FIGURES = ("one_worker", "p50_ms", "p99_ms", "restart_s")


def test_bench_prints_every_figure(tmp_path: Path) -> None:
    # measured on a file of our own (--events-file): its first 8,000 lines
    events = tmp_path / "events.jsonl"
    generate = [sys.executable, "-m", "streams.cli", "generate", "--leads", "1000"]
    generate += ["--seed", "4", "--shuffle", "0.3", "--duplicates", "0.02", "--out", str(events)]
    subprocess.run(generate, check=True, timeout=120)
    lines = [json.loads(line) for line in events.read_text().splitlines()[:8000]]
    leads = {e["lead_id"] for e in lines if e["type"] in ("touch", "lead_created", "mql")}
    command = [sys.executable, "-m", "streams.cli", "bench", "--json", "--events-file", str(events)]
    command += ["--events", "8000", "--partitions", "4", "--rate", "200", "--seconds", "2"]
    # Several batches (2,000 messages at most each): the first one is not timed.
    command += ["--repeat", "1", "--faust-timeout", "60", "--memory-leads", "2000"]
    command += ["--series-scale", "3", "8", "2"]
    # Short group sessions: the embedded broker answers a join after half of it.
    env = {**os.environ, "PP_SESSION_TIMEOUT": "4", "PP_RUNTIME": "aiokafka"}
    done = subprocess.run(command, capture_output=True, env=env, timeout=520, check=False)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    result = json.loads(done.stdout)

    assert result["events"] == 8000
    assert result["leads"] == len(leads)
    assert len(result["runs"]) == 1
    median = result["median"]
    for name in PIPELINE_FIGURES:
        assert isinstance(median[name], float), (name, median[name])
        assert median[name] > 0, name
    assert median["p99_ms"] >= median["p50_ms"]
    for name in ("faust_bare", "faust_table", "quix"):
        # Faust may fail on the embedded broker, Quix does on Tansu; then the reason
        # is shown, never a hang.
        value = median[name]
        assert (isinstance(value, float) and value > 0) or value.startswith("n/a ("), value
    # Both runtimes side by side, on the broker the run used; the configured
    # runtime's figures are the headline ones.
    broker = os.environ.get("PP_EMBEDDED_BROKER", "tansu")
    assert result["broker"] == ("configured" if os.environ.get("PP_BROKER") else broker)
    assert result["runtime"] == "aiokafka"
    runtimes = result["runtimes"]
    assert sorted(runtimes) == ["aiokafka", "faust"]
    for runtime, figures in runtimes.items():
        assert sorted(figures) == sorted(RUNTIME_FIGURES), runtime
        for name, value in figures.items():
            assert isinstance(value, float) and value > 0, (runtime, name, value)
    assert runtimes["aiokafka"]["one_worker"] == median["one_worker"]
    assert runtimes["aiokafka"]["p99_ms"] == median["p99_ms"]
    assert isinstance(result["ratios"]["faust_to_aiokafka"], float)
    assert isinstance(result["ratios"]["two_workers_to_one"], float)
    assert isinstance(result["ratios"]["pipeline_to_raw"], float)
    state = result["state"]
    assert state["leads"] > 0
    assert 0 < state["lead_value_bytes"] <= state["lead_hash_bytes"] <= state["all_state_bytes"]
    assert state["worker_peak_rss"] > 10 * 2**20  # a Python worker: tens of MiB at least
    memory = result["memory"]
    assert memory["leads"] > state["leads"]  # 2,000 leads against the file's ~900
    assert memory["all_state_bytes"] > 0 and memory["worker_peak_rss"] > 10 * 2**20
    assert isinstance(result["memory_rate"], float) and result["memory_rate"] > 0
    assert state["series_bytes"] > 0 and state["metric_bytes"] > 0
    series = result["series"]
    # all, partners, 3 partners, 2 channels: 365 days each (2026); 8 campaigns: a
    # quarter each (90, 91, 92, 92 days, twice); 40 series metrics
    assert series["fields"] == 40 * (7 * 365 + 2 * (90 + 91 + 92 + 92))
    assert series["keys"] == 40 * 15 and series["read_keys"] == 4 * 15
    assert series["bytes"] > series["fields"] and series["read_ms"] > 0
