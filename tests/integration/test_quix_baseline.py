"""The Quix Streams baseline of `partnerpulse bench` (benchmarks/quix_baseline.py).

Not a performance test: it checks that the baseline times its stateful
pattern on Apache Kafka, and that on Tansu, where Quix cannot run, it says
why promptly instead of stalling the bench.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from benchmarks.bench import _generate, _scratch_topic
from benchmarks.quix_baseline import quix_rate
from datagen import SyntheticConfig
from streams.runtime import Endpoints
from streams.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.bench, pytest.mark.timeout(120)]

EVENTS = 3000
PARTITIONS = 4


def scratch(broker: str) -> tuple[str, str]:
    """(bootstrap, topic) of a fresh topic holding `EVENTS` generated lines, unkeyed."""
    endpoints = Endpoints(broker, "redis://unused")
    lines = _generate(SyntheticConfig(seed=3, leads=EVENTS // 9), EVENTS)
    assert len(lines) == EVENTS
    topic = asyncio.run(_scratch_topic(Settings(), endpoints, lines, PARTITIONS))
    return endpoints.bootstrap, topic


@pytest.mark.parametrize(
    "broker", [pytest.param("apache-kafka", marks=pytest.mark.apache_kafka)], indirect=True
)
def test_quix_times_every_event_on_apache_kafka(broker: str) -> None:
    bootstrap, topic = scratch(broker)
    rate = quix_rate(bootstrap, topic, PARTITIONS, EVENTS, timeout=60)
    assert isinstance(rate, float), rate
    assert rate > 0


@pytest.mark.parametrize("broker", ["tansu"], indirect=True)
def test_quix_on_tansu_is_a_prompt_reason(broker: str) -> None:
    bootstrap, topic = scratch(broker)
    started = time.monotonic()
    rate = quix_rate(bootstrap, topic, PARTITIONS, EVENTS, timeout=60)
    # Quix stops at once (Tansu does not report the topic configs it copies into
    # its changelog topic): a reason from the child, not the timeout's.
    assert isinstance(rate, str) and rate.startswith("n/a (exit"), rate
    assert time.monotonic() - started < 30
