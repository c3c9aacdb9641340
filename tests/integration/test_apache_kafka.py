"""The Apache Kafka launcher (streams/apache_kafka.py) and topic administration (streams/admin.py).

Topic administration runs on both brokers (the `broker` fixture); the
launcher's own checks start their own Apache Kafka.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]
from aiokafka.admin.config_resource import (  # type: ignore[import-untyped]
    ConfigResource,
    ConfigResourceType,
)

from streams.admin import (
    TopicLayout,
    TopicLayoutError,
    create_topics,
    ensure_topics,
    topic_partition_count,
)
from streams.apache_kafka import (
    KAFKA_VERSION,
    QUICK,
    KafkaCluster,
    cluster_settings,
    kafka_cache_dir,
    kafka_libs,
)
from streams.embedded import kafka_metadata_brokers
from streams.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def fresh_settings(**overrides: Any) -> Settings:
    return Settings(topic_prefix=f"admin-{uuid.uuid4().hex[:8]}.", **overrides)


def test_an_existing_topic_with_fewer_partitions_stops_start_up(broker: str) -> None:
    settings = fresh_settings(partitions=4)
    bootstrap = broker.removeprefix("kafka://").replace(";", ",")
    asyncio.run(create_topics(bootstrap, {settings.topic("leads"): 2}))
    with pytest.raises(TopicLayoutError, match=r"leads has 2 partitions, PP_PARTITIONS is 4"):
        asyncio.run(ensure_topics(settings, bootstrap))


def test_ensure_topics_creates_every_topic_and_accepts_them_again(broker: str) -> None:
    settings = fresh_settings(partitions=3)
    bootstrap = broker.removeprefix("kafka://").replace(";", ",")
    first = asyncio.run(ensure_topics(settings, bootstrap))
    assert first == TopicLayout(partitions=3, replication_factor=1, min_insync_replicas=1)
    assert asyncio.run(ensure_topics(settings, bootstrap)) == first  # idempotent


@pytest.mark.parametrize(
    ("brokers", "configured", "expected"),
    [
        (1, {}, (1, 1)),
        (2, {}, (2, 1)),
        (3, {}, (3, 2)),
        (5, {}, (3, 2)),
        (5, {"replication_factor": 5, "min_insync_replicas": 3}, (5, 3)),
    ],
)
def test_layout_defaults_follow_the_cluster_size(
    brokers: int, configured: dict[str, int], expected: tuple[int, int]
) -> None:
    layout = TopicLayout.of(Settings(**configured), brokers)
    assert (layout.replication_factor, layout.min_insync_replicas) == expected


def test_min_insync_above_the_replication_factor_is_refused() -> None:
    with pytest.raises(ValueError, match="exceeds the replication factor 1"):
        TopicLayout.of(Settings(min_insync_replicas=2), 1)


@pytest.mark.apache_kafka
def test_three_brokers_get_replication_three_and_min_isr_two() -> None:
    """The production layout: what ensure_topics creates on a 3-node cluster."""
    with KafkaCluster(brokers=3) as kafka:
        assert len(kafka.bootstrap.split(",")) == 3
        settings = fresh_settings(partitions=2)
        layout = asyncio.run(ensure_topics(settings, kafka.bootstrap))
        assert (layout.replication_factor, layout.min_insync_replicas) == (3, 2)
        topic = settings.topic("leads")
        replicas, min_isr = asyncio.run(describe(kafka.bootstrap, topic))
        assert replicas == [3, 3]
        assert min_isr == "2"


async def describe(bootstrap: str, topic: str) -> tuple[list[int], str]:
    """Replicas per partition and the topic's min.insync.replicas, as the broker reports.

    Just after the topic was created, the node asked may not have its partitions
    in its metadata yet (KRaft propagates them): asked again until it has."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + 30
        while True:
            [described] = await admin.describe_topics([topic])
            if described["partitions"] or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        configs = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        await admin.close()
    replicas = [len(p["replicas"]) for p in described["partitions"]]
    entries = configs[0].to_object()["resources"][0]["config_entries"]
    values = {entry["config_names"]: entry["config_value"] for entry in entries}
    return replicas, values["min.insync.replicas"]


@pytest.mark.apache_kafka
def test_a_cold_cache_is_resolved_with_maven(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty cache folder: the jars come from Maven, once, and a node starts on them."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    libs = kafka_libs()
    assert libs == tmp_path / "partnerpulse" / f"kafka-{KAFKA_VERSION}" / "libs"
    assert libs == kafka_cache_dir() / "libs"
    assert (libs / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file()
    assert (libs / f"kafka-clients-{KAFKA_VERSION}.jar").is_file()
    assert [p.name for p in libs.parent.iterdir()] == ["libs"]  # no temporary folder left
    with KafkaCluster() as kafka:
        host, port = kafka.bootstrap.split(":")
        assert kafka.url == f"kafka://127.0.0.1:{port}"
        assert [(h, p) for _, h, p in kafka_metadata_brokers(host, int(port))] == [
            ("127.0.0.1", int(port))
        ]


@pytest.mark.apache_kafka
def test_a_killed_node_restarts_on_its_data_and_stop_ends_its_jvm() -> None:
    with KafkaCluster() as kafka:
        asyncio.run(create_topics(kafka.bootstrap, {"survives-a-kill": 3}))
        first = kafka.pid(0)
        kafka.kill(0)
        assert kafka.pid(0) is None
        kafka.restart(0)
        second = kafka.pid(0)
        assert asyncio.run(topic_partition_count(kafka.bootstrap, "survives-a-kill")) == 3
    for pid in (first, second):
        assert pid is not None
        assert not Path(f"/proc/{pid}").exists()


def test_compose_runs_the_tested_kafka_release_and_settings() -> None:
    """docker-compose.yml's Kafka is the release and the settings the tests run."""
    compose = yaml.safe_load((Path(__file__).parents[2] / "docker-compose.yml").read_text())
    kafka = compose["services"]["kafka"]
    assert kafka["image"] == f"apache/kafka:{KAFKA_VERSION}"
    env = kafka["environment"]
    for key, value in cluster_settings(1).items():
        assert env["KAFKA_" + key.upper().replace(".", "_")] == value, key
    assert not set(QUICK) & {k.removeprefix("KAFKA_").lower().replace("_", ".") for k in env}
