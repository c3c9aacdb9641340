"""Reading a window of daily series from Redis in one round trip (SPEC §4.1).

A series lives in hash `<prefix>d:<scope>:<metric>`, field = `YYYY-MM-DD`
(written by `sinks/apply.lua`).  A window of every requested scope and
metric is one pipeline of `HMGET key day1 ... dayN`: one network round trip
however many keys, and only the window's days travel (a quarter is 92 of a
year's 365).  A read-only Lua script summing in Redis was measured too: the
reply is smaller, but the script holds Redis as long as the whole read takes
(over 100 ms for a quarter of 765 series), stalling every worker's batch,
where the pipeline's HMGETs interleave with them (docs/benchmarks.md).
`partnerpulse bench` times it at a year of 50 partners, 500 campaigns and 20
channels.  The dashboard does not use it yet: it reads whole series
(streams/web/app.py, `_read_points`, `_series`) and cuts the window itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from models.periods import Window
from models.subject import MetricKey
from sinks.redis_sink import RedisSink


def window_days(window: Window) -> list[str]:
    """Every day of `window`, as series fields."""
    return [(window.first + timedelta(days=n)).isoformat() for n in range(window.days)]


async def read_window(
    sink: RedisSink, scopes: Sequence[str], metrics: Sequence[str], window: Window
) -> dict[MetricKey, int]:
    """(scope, metric) → the sum of its days in `window`, zeros left out; one round trip."""
    pairs = [(scope, metric) for scope in scopes for metric in metrics]
    days = window_days(window)

    async def fetch() -> list[list[bytes | str | None]]:
        async with sink.client.pipeline(transaction=False) as pipe:
            for scope, metric in pairs:
                pipe.hmget(sink.keys.series(scope, metric), days)
            replies: list[list[bytes | str | None]] = await pipe.execute()
            return replies

    replies = await sink.retrying(fetch)
    out: dict[MetricKey, int] = {}
    for pair, values in zip(pairs, replies, strict=True):
        total = sum(int(v) for v in values if v is not None)
        if total:
            out[pair] = total
    return out
