"""Fixtures shared by every test directory."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sinks.redis_sink import RedisSink
from tests.local_redis import scratch_sink


@pytest.fixture
async def sink() -> AsyncIterator[RedisSink]:
    """A Redis sink under a fresh key prefix on the machine's Redis."""
    async with scratch_sink() as fresh:
        yield fresh
