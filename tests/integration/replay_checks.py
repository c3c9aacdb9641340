"""Checks shared by the streaming and chaos tests: the oracle, and comparing with it."""

from __future__ import annotations

import hashlib
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson
import pytest

from datagen import SyntheticConfig, generate
from models.engine import Engine
from models.output import render
from models.subject import MetricKey
from streams.cli.common import engine_config, read_jsonl
from streams.runtime import ReplayRun
from streams.settings import Settings

MAX_BYTES = Settings().max_message_bytes


def write_events(path: Path, config: SyntheticConfig) -> Path:
    path.write_bytes(_generated(config))
    return path


@lru_cache(maxsize=4)
def _generated(config: SyntheticConfig) -> bytes:
    """The file `config` generates (deterministic: its seed), made once per session:
    the tests that run on several stacks use the same file on each."""
    lines = (
        item if isinstance(item, str) else orjson.dumps(item).decode() for item in generate(config)
    )
    return "".join(f"{line}\n" for line in lines).encode()


def recompute(path: Path, model: str = "w-shaped", mapping: str = "contact-role") -> dict[str, Any]:
    config = engine_config(model, mapping)
    engine = Engine(config)
    engine.run(read_jsonl(path, config, MAX_BYTES))
    return render(engine.totals, engine.credits())


_ORACLES: dict[tuple[str, str], dict[str, Any]] = {}


def recompute_once(path: Path, model: str = "w-shaped") -> dict[str, Any]:
    """`recompute`, memoised by the file's content (read-only: the document is
    shared).  The chaos tests ask for it before and after a run, and once per
    stack for the same file; a test that patches the engine calls `recompute`."""
    key = (hashlib.sha256(path.read_bytes()).hexdigest(), model)
    if key not in _ORACLES:
        _ORACLES[key] = recompute(path, model)
    return _ORACLES[key]


def collected(run: ReplayRun, timeout: float = 400) -> dict[str, Any]:
    try:
        totals, credits = run.collect(timeout)
    except TimeoutError:
        print(run.worker_logs())
        raise
    return render(totals, credits)


def assert_same(replayed: dict[str, Any], expected: dict[str, Any]) -> None:
    """Equal to the cent; on failure, name the scopes that differ (not a 10k-line diff)."""
    if replayed == expected:
        return
    bad = {
        scope: {
            k: (replayed["metrics"].get(scope, {}).get(k), v)
            for k, v in expected["metrics"].get(scope, {}).items()
            if replayed["metrics"].get(scope, {}).get(k) != v
        }
        for scope in set(replayed["metrics"]) | set(expected["metrics"])
        if replayed["metrics"].get(scope) != expected["metrics"].get(scope)
    }
    credit_bad = [
        s for s in expected["credits"] if replayed["credits"].get(s) != expected["credits"][s]
    ]
    pytest.fail(
        f"metrics differ (replay, recompute): {dict(list(bad.items())[:10])}; "
        f"credits differ for {len(credit_bad)} subjects, e.g. {credit_bad[:5]}"
    )


def unique(records: list[Any]) -> list[dict[str, Any]]:
    """Decode output messages, dropping re-deliveries (same id)."""
    seen: dict[str, dict[str, Any]] = {}
    for record in records:
        message = orjson.loads(record.value)
        seen.setdefault(message["id"], message)
    return list(seen.values())


def points_of(update: dict[str, Any]) -> dict[MetricKey, dict[str, Any]]:
    """A metric update as the engine names its changes: the running total and, as
    ``<metric>@<day>``, each day of its series that moved (whose deltas add up
    to the total's)."""
    scope, metric, days = update["scope"], update["metric"], update.get("days", {})
    if days:
        assert sum(p["delta"] for p in days.values()) == update["delta"]
    return {(scope, metric): update} | {(scope, f"{metric}@{d}"): p for d, p in days.items()}


def moved(updates: list[dict[str, Any]]) -> dict[MetricKey, tuple[int, int]]:
    """(value, delta) of every total and day that `updates` moved, as the sink's
    reply names its changes (a total that did not move is told for its days only)."""
    return {
        key: (point["value"], point["delta"])
        for update in updates
        for key, point in points_of(update).items()
        if point["delta"]
    }


def kafka_totals(metric_messages: list[Any], credit_messages: list[Any]) -> dict[str, Any]:
    """The SPEC §6 document the Kafka outputs add up to, deduplicated by message id."""
    totals: dict[tuple[str, str], int] = {}
    for update in unique(metric_messages):
        for key, point in points_of(update).items():
            totals[key] = totals.get(key, 0) + point["delta"]
    credits: dict[str, dict[str, Fraction]] = {}
    for delta in unique(credit_messages):
        lines = credits.setdefault(delta["subject"], {})
        lines[delta["touch_id"]] = lines.get(delta["touch_id"], Fraction(0)) + Fraction(
            delta["credit"]
        )
    kept = {s: {t: c for t, c in lines.items() if c} for s, lines in credits.items()}
    return render(totals, {s: lines for s, lines in kept.items() if lines})
