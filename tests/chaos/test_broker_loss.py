"""What a Kafka cluster can do to us: a broker SIGKILLed mid-stream, then restarted.

Three Apache Kafka nodes on loopback; the pipeline creates its topics with
its production defaults on such a cluster (replication factor 3,
``min.insync.replicas`` 2), and writes with ``acks=all``.  One broker dies
while two workers are half way through; partition leadership and the group
coordinator move to the survivors, and the dead broker comes back on its own
data and catches up.  Redis must still equal `recompute` to the cent, and the
Kafka outputs and dead letters must be complete.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from datagen import SyntheticConfig
from streams.admin import TopicLayout
from streams.apache_kafka import KafkaCluster
from streams.runtime import replay_run
from tests.chaos.test_chaos import CHAOS, applied, check, wait_for
from tests.integration.replay_checks import recompute_once, write_events
from tests.integration.test_apache_kafka import describe

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.integration,
    pytest.mark.apache_kafka,
    pytest.mark.timeout(600),
]


def test_a_broker_killed_mid_stream_and_restarted(tmp_path: Path) -> None:
    events = write_events(
        tmp_path / "events.jsonl",
        SyntheticConfig(seed=41, leads=6000, duplicates=0.03, shuffle=0.5, invalid=0.005),
    )
    total = sum(1 for line in events.open() if line.strip())
    bad = recompute_once(events)["metrics"]["all"]["dq.dead_letters"]
    victim = random.Random(41).randrange(3)
    with KafkaCluster(brokers=3) as kafka, replay_run(CHAOS, partitions=4, broker=kafka.url) as run:
        run.send(events)
        replicas, min_isr = asyncio.run(describe(kafka.bootstrap, run.settings.topic("leads")))
        assert (replicas, min_isr) == ([3] * 4, "2")
        assert TopicLayout.of(run.settings, 3).min_insync_replicas == 2
        run.start_worker()
        run.start_worker()
        wait_for(run, total // 4)
        kafka.kill(victim)
        at_kill = applied(run)
        assert at_kill < total, "the kill should land mid-stream"
        # the pipeline goes on without the broker (leaders and the group
        # coordinator move once the controller fences it, within seconds)
        wait_for(run, at_kill + 2000, timeout=90)
        kafka.restart(victim)
        check(run, events, bad)
