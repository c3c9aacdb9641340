"""A transactional outbox forwarder in its own process, for the chaos tests to SIGKILL.

    python -m tests.chaos.forwarder_process REDIS_URL PREFIX BOOTSTRAP METRICS CREDITS TXN_ID

Small steps (5 entries per transaction) and a 2 s lease, so kills land inside
transactions and a successor takes over quickly; a pause after every commit
widens the window between a commit and the deletion of its entries, so kills
land there too (the successor must skip those entries).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from redis.asyncio import Redis

from sinks.forwarder import Message, TransactionalForwarder, TransactionalOutput


class SlowToDelete(TransactionalOutput):
    """Commits, then waits a little before the caller deletes the entries."""

    async def publish(self, messages: Sequence[Message], last_entry: str) -> None:
        await super().publish(messages, last_entry)
        await asyncio.sleep(0.15)


async def main(
    redis_url: str, prefix: str, bootstrap: str, metrics: str, credits: str, txn: str
) -> None:
    client = Redis.from_url(redis_url)
    forwarder = TransactionalForwarder(
        client,
        SlowToDelete(bootstrap, txn, metrics),
        consumer=f"chaos-{id(client)}",
        prefix=prefix,
        metrics_topic=metrics,
        credits_topic=credits,
        count=5,
        block=0.2,
        lease=2.0,
    )
    await forwarder.run(asyncio.Event())  # until killed


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:7]))
