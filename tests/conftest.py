"""Fixtures shared by every test directory."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sinks.redis_sink import RedisSink
from tests.integration.brokers import broker, group_by_broker, parametrize_stacks
from tests.local_redis import scratch_sink

__all__ = ["broker", "sink"]  # broker: one Tansu and one Apache Kafka per session


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_stacks(metafunc)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    group_by_broker(items)


@pytest.fixture
async def sink() -> AsyncIterator[RedisSink]:
    """A Redis sink under a fresh key prefix on the machine's Redis."""
    async with scratch_sink() as fresh:
        yield fresh
