"""Topic administration: the pipeline's topics, created and checked at start-up.

Every process that writes or reads the pipeline's topics (`worker`, `send`,
`replay`, `demo`) calls `ensure_topics` first.  It creates what is missing
with the configured layout and refuses to start on a topic whose partition
count differs from `PP_PARTITIONS`: the worker relies on every topic having
the same partition count (a subject's events, internal messages and state
belong to one partition number), so a topic created earlier with another
count would mis-partition silently.

Layout (docs/deployment.md): `PP_PARTITIONS` partitions, `PP_REPLICATION_FACTOR`
replicas (default ``min(3, brokers in the cluster)``) and
``min.insync.replicas`` = `PP_MIN_INSYNC_REPLICAS` (default 2 with three or
more replicas, else 1), so ``acks=all`` writes survive the loss of a broker
on a production cluster and still work on a single local broker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# aiokafka ships no py.typed marker; its admin objects are used as ``Any``.
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]

from streams.processing import TOPICS
from streams.settings import Settings

__all__ = [
    "TopicLayout",
    "TopicLayoutError",
    "create_topics",
    "ensure_topics",
    "pipeline_topics",
    "topic_partition_count",
]

#: Kafka error code for TOPIC_ALREADY_EXISTS; creating topics is idempotent.
_TOPIC_ALREADY_EXISTS = 36


class TopicLayoutError(RuntimeError):
    """A topic exists with a partition count other than the configured one."""


@dataclass(frozen=True)
class TopicLayout:
    """How the pipeline's topics are created: partitions, replicas, min ISR."""

    partitions: int
    replication_factor: int
    min_insync_replicas: int

    @classmethod
    def of(cls, settings: Settings, brokers: int) -> TopicLayout:
        """The configured layout, defaults filled in for a cluster of `brokers`."""
        replicas = settings.replication_factor or min(3, max(1, brokers))
        min_isr = settings.min_insync_replicas or (2 if replicas >= 3 else 1)
        if min_isr > replicas:
            raise ValueError(
                f"PP_MIN_INSYNC_REPLICAS={min_isr} exceeds the replication factor {replicas}"
            )
        return cls(settings.partitions, replicas, min_isr)

    @property
    def configs(self) -> dict[str, str]:
        return {"min.insync.replicas": str(self.min_insync_replicas)}


def pipeline_topics(settings: Settings) -> dict[str, int]:
    """Every topic the pipeline uses, with the partition count it needs."""
    return {settings.topic(name): settings.partitions for name in TOPICS}


def _admin(bootstrap: str, timeout: float, security: Mapping[str, Any] | None) -> Any:
    return AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000), **(security or {})
    )


async def ensure_topics(
    settings: Settings, bootstrap: str, *, timeout: float = 30.0
) -> TopicLayout:
    """Create the pipeline's missing topics with the configured layout; check the others.

    Raises `TopicLayoutError` naming every topic whose partition count is not
    `PP_PARTITIONS` (fewer: some partitions would never be read together
    with their subjects' state; more: keys would land on partitions the
    co-partitioned topics do not have).  Existing topics' replication is
    left as it is (an operator may have chosen it).
    """
    security = settings.aiokafka_security()
    admin = _admin(bootstrap, timeout, security)
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
        layout = TopicLayout.of(settings, len(cluster["brokers"]))
    finally:
        await admin.close()
    topics = pipeline_topics(settings)
    await create_topics(
        bootstrap,
        topics,
        replication_factor=layout.replication_factor,
        configs=dict.fromkeys(topics, layout.configs),
        timeout=timeout,
        security=security,
    )
    counts = await _led_partition_counts(bootstrap, list(topics), timeout, security)
    wrong = [
        f"{topic} has {counts.get(topic, 0)} partitions, PP_PARTITIONS is {wanted}"
        for topic, wanted in topics.items()
        if counts.get(topic) != wanted
    ]
    if wrong:
        raise TopicLayoutError(
            "topics exist with another partition count: "
            + "; ".join(wrong)
            + " (every topic of the pipeline needs PP_PARTITIONS partitions: set it to "
            "the existing count, or use a new PP_TOPIC_PREFIX; docs/deployment.md)"
        )
    return layout


async def create_topics(
    bootstrap: str,
    topics: Mapping[str, int],
    *,
    replication_factor: int = 1,
    configs: Mapping[str, Mapping[str, str]] | None = None,
    timeout: float = 10.0,
    security: Mapping[str, Any] | None = None,
) -> None:
    """Create ``{name: partitions}`` topics; already-existing topics are fine.

    `security`: aiokafka's security arguments (`Settings.aiokafka_security`),
    so topics can be created on a SASL/SSL cluster too.  Explicit creation,
    because brokers that auto-create topics (Tansu; Kafka unless disabled)
    do it with their own default partition count and replication.
    """
    configs = configs or {}
    admin = _admin(bootstrap, timeout, security)
    await admin.start()
    try:
        response = await admin.create_topics(
            [
                NewTopic(
                    name, partitions, replication_factor, topic_configs=dict(configs.get(name, {}))
                )
                for name, partitions in topics.items()
            ],
            timeout_ms=int(timeout * 1000),
        )
        failures = [
            f"{topic}: [{code}] {message}"
            for topic, code, message in response.topic_errors
            if code not in (0, _TOPIC_ALREADY_EXISTS)
        ]
        if failures:
            raise RuntimeError("topic creation failed: " + "; ".join(failures))
    finally:
        await admin.close()


async def topic_partition_counts(
    bootstrap: str,
    topics: list[str],
    timeout: float = 10.0,
    security: Mapping[str, Any] | None = None,
) -> dict[str, int]:
    """``{topic: partitions}`` for the topics the broker describes without error."""
    described = await _describe(bootstrap, topics, timeout, security)
    return {topic: len(entry["partitions"]) for topic, entry in described.items()}


async def _led_partition_counts(
    bootstrap: str, topics: list[str], timeout: float, security: Mapping[str, Any] | None
) -> dict[str, int]:
    """`topic_partition_counts`, once every partition of `topics` has a leader.

    Apache Kafka answers CreateTopics before the new partitions' leaders are
    known to every broker; producing at once is refused (NOT_LEADER) and
    retried by the client with a warning per partition.  Waiting here keeps
    start-up quiet.  (Tansu has leaders at once.)
    """
    deadline = time.monotonic() + timeout
    while True:
        described = await _describe(bootstrap, topics, timeout, security)
        led = all(p["leader"] >= 0 for entry in described.values() for p in entry["partitions"])
        if (led and len(described) == len(topics)) or time.monotonic() > deadline:
            return {topic: len(entry["partitions"]) for topic, entry in described.items()}
        await asyncio.sleep(0.1)


async def _describe(
    bootstrap: str, topics: list[str], timeout: float, security: Mapping[str, Any] | None
) -> dict[str, dict[str, Any]]:
    """Metadata of the `topics` the broker describes without error."""
    admin = _admin(bootstrap, timeout, security)
    await admin.start()
    try:
        described: list[dict[str, Any]] = await admin.describe_topics(topics)
    finally:
        await admin.close()
    return {entry["topic"]: entry for entry in described if entry["error_code"] == 0}


async def topic_partition_count(bootstrap: str, topic: str, timeout: float = 10.0) -> int:
    """How many partitions `topic` has (0 if the broker reports an error).

    Note: asking for metadata of an unknown topic makes Tansu auto-create it.
    """
    return (await topic_partition_counts(bootstrap, [topic], timeout)).get(topic, 0)
