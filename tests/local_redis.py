"""The machine's Redis for tests (a real server, never a mock), under throwaway prefixes."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator

from sinks.redis_sink import RedisSink

REDIS_URL = "redis://127.0.0.1:6379/0"


@contextlib.asynccontextmanager
async def scratch_sink() -> AsyncIterator[RedisSink]:
    """A sink on the local Redis under a fresh key prefix; its keys are removed after."""
    sink = RedisSink.from_url(REDIS_URL, prefix=f"pptest-{secrets.token_hex(6)}:", max_wait=10)
    try:
        yield sink
    finally:
        await sink.delete_all()
        await sink.close()
