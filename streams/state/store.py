"""Subject state in Redis: its key layout and its reads.

A worker reads the states one batch touches (one pipelined round trip),
the engine settles them, and the sink writes the new states (`HashWrite`,
`SetAdd` in the `SinkBatch`) together with the batch's contributions and
applied offsets, atomically (docs/guarantees.md).  So the state Redis holds
is always exactly the state after the offsets Redis holds: a crash anywhere
leaves nothing to recover and nothing applied twice.

| key | type | content |
|---|---|---|
| ``<prefix>state:lead`` | hash | lead id -> `codec.dump_lead` |
| ``<prefix>state:opportunity`` | hash | opportunity id -> `codec.dump_opportunity` |
| ``<prefix>state:other`` | hash | account/campaign/partner/referral key -> {kind: subject} |
| ``<prefix>state:account`` | hash | account id -> its leads and opportunities (account mapping) |
| ``<prefix>state:registry`` | hash | campaign -> latest registry entry (JSON) |
| ``<prefix>state:campaign:<campaign>`` | set | lead ids that touched the campaign |
| ``<prefix>owners`` | hash | partition number -> token of the worker that owns it |
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any, Final, cast

from sinks.keys import escape
from sinks.redis_sink import HashWrite, RedisSink, StateWrite
from streams.state import codec

KINDS: Final = ("lead", "opportunity", "other", "account")


class StateKeys:
    """Key names of the state layout above, under one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.registry = f"{prefix}state:registry"
        self.owners = f"{prefix}owners"

    def subjects(self, kind: str) -> str:
        return f"{self.prefix}state:{kind}"

    def campaign(self, campaign: str) -> str:
        return f"{self.prefix}state:campaign:{escape(campaign)}"


class StateStore:
    """Reads of subject state; writes go through the sink, with the batch.

    Every read is retried like the sink's calls: a Redis outage stalls the
    worker (back-pressure) instead of failing it.

    A read never overtakes a write in flight (`writing`) of a key it reads.
    """

    def __init__(self, sink: RedisSink, compress: bool = True) -> None:
        self.sink = sink
        self.client = sink.client
        self.keys = StateKeys(sink.keys.prefix)
        self.compress = compress
        self._writing: tuple[frozenset[tuple[str, str]], asyncio.Future[Any]] | None = None

    def writing(self, states: Sequence[StateWrite], landed: asyncio.Future[Any]) -> None:
        """`states` are being written until `landed` is done: reads of their keys
        wait for it.  (The worker applies one batch while it processes the next.)"""
        written = frozenset(
            (w.key, w.field) if isinstance(w, HashWrite) else (w.key, "") for w in states
        )
        self._writing = written, landed

    async def _landed(self, read: Iterable[tuple[str, str]]) -> None:
        """Wait for the write in flight if it writes any of `read` ((key, field), or
        (key, "") for a whole set)."""
        if self._writing is None:
            return
        written, landed = self._writing
        if not landed.done() and not written.isdisjoint(read):
            await asyncio.wait([landed])

    def encode(self, value: bytes) -> bytes:
        """A state value as this store writes it (see `pack`)."""
        return pack(value, self.compress)

    async def load(
        self, wanted: dict[str, set[str]], campaigns: Iterable[str] = ()
    ) -> tuple[dict[str, dict[str, bytes]], dict[str, bytes]]:
        """States of `wanted` (kind -> ids) and registry entries of `campaigns`.

        One round trip; absent ids are left out.
        """
        asked = [(kind, sorted(ids)) for kind, ids in wanted.items() if ids]
        names = sorted(set(campaigns))
        await self._landed((self.keys.subjects(kind), i) for kind, ids in asked for i in ids)

        async def read() -> list[Any]:
            async with self.client.pipeline(transaction=False) as pipe:
                for kind, ids in asked:
                    pipe.hmget(self.keys.subjects(kind), ids)
                if names:
                    pipe.hmget(self.keys.registry, names)
                return await pipe.execute()

        replies = await self.sink.retrying(read)
        states: dict[str, dict[str, bytes]] = {kind: {} for kind in KINDS}
        for (kind, ids), values in zip(asked, replies, strict=False):
            states[kind] = {
                i: codec.decompress(v) for i, v in zip(ids, values, strict=True) if v is not None
            }
        registry = (
            {c: v for c, v in zip(names, replies[-1], strict=True) if v is not None}
            if names
            else {}
        )
        return states, registry

    async def campaign_leads(self, campaigns: Sequence[str]) -> dict[str, set[str]]:
        """Lead ids that ever touched each campaign (for re-settling on a registry change)."""
        await self._landed((self.keys.campaign(c), "") for c in campaigns)

        async def read() -> list[Any]:
            async with self.client.pipeline(transaction=False) as pipe:
                for campaign in campaigns:
                    pipe.smembers(self.keys.campaign(campaign))
                return await pipe.execute()

        replies = await self.sink.retrying(read)
        return {
            campaign: {_text(m) for m in members}
            for campaign, members in zip(campaigns, replies, strict=True)
        }

    async def registry(self) -> dict[str, bytes]:
        """Every registry entry (a worker's start)."""
        raw = await self.sink.retrying(lambda: self.client.hgetall(self.keys.registry))
        return {_text(k): v if isinstance(v, bytes) else v.encode() for k, v in raw.items()}

    async def record_registry(self, entries: dict[str, bytes]) -> None:
        """Write registry entries ahead of their broadcast (only the campaign's owner
        writes it, and re-writing the latest entry is harmless)."""
        if entries:
            await self.sink.retrying(
                lambda: self.client.hset(self.keys.registry, mapping=cast(Any, entries))
            )

    async def claim(self, partitions: Iterable[int], token: str) -> None:
        """Make `token` the owner of `partitions`: the sink refuses other tokens' batches."""
        mapping = {str(p): token for p in partitions}
        if mapping:
            await self.sink.retrying(
                lambda: self.client.hset(self.keys.owners, mapping=cast(Any, mapping))
            )


def pack(value: bytes, compress: bool) -> bytes:
    """A state value as stored: compressed when `compress` (JSON state shrinks two
    to four times, for about 5 µs a value), else as is."""
    return codec.compress(value) if compress else value


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
