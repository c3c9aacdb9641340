"""A dashboard served on a scratch Redis prefix, and a client for it (shared by the web tests)."""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp

from sinks.redis_sink import RedisSink
from streams.web import Options, serve
from tests.integration.engine_batches import Batch
from tests.local_redis import scratch_sink


@dataclass
class Served:
    sink: RedisSink
    url: str
    http: aiohttp.ClientSession

    async def get(self, path: str, **params: Any) -> Any:
        """The JSON body of a 200 answer; a CSV answer as its list of rows."""
        async with self.http.get(self.url + path, params=params) as response:
            assert response.status == 200, await response.text()
            if response.content_type == "text/csv":
                return list(csv.reader(io.StringIO(await response.text())))
            return await response.json()

    async def apply(self, batch: Batch) -> Any:
        return await self.sink.apply(batch.contributions, batch.dead_letters, batch.offsets)


@contextlib.asynccontextmanager
async def served(options: Options | None = None) -> AsyncIterator[Served]:
    """The dashboard on a fresh key prefix of the test Redis, with a client session."""
    async with (
        scratch_sink() as sink,
        serve(sink.client, sink.keys.prefix, port=0, options=options) as url,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
    ):
        yield Served(sink, url, http)
