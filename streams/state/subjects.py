"""The worker engine's subject store: subjects loaded from Redis, kept between batches.

`Engine` (models/engine.py) works on the `leads`, `opportunities` and `others`
dicts of its `SubjectStore`.  Here they are a cache in two tiers:

- the *hot* tier is those dicts: live objects, the `hot` most recently used
  subjects (`PP_STATE_HOT`);
- the *cold* tier keeps up to `size` subjects in all (`PP_STATE_CACHE`) as
  bytes: each subject's state exactly as last written to Redis (or read from
  it), and what it published last (`codec.dump_published`): the base the
  sink sends deltas from, and a lead's snapshot as its subscribers have it.
  A cold lead costs about a fifth of a live one (0.9 KB of objects, against 4.4).

Before a batch is ingested, `load` puts in the subjects it touches that are
not hot: decoded from the cold tier (as a state read from Redis is, with what
it published back, so that it behaves as if it had stayed hot), else read from
Redis (else absent, and the engine creates them).  After it is settled,
`writes` encodes the settled subjects' new state for the sink, and `trim` moves
the least recently used hot subjects to the cold tier (with the bytes `writes`
made) and lets the least recently used cold ones go beyond `size`.

The cache is sound because a worker owns its partitions exclusively (the
sink fences every batch by ownership), applies its batches in order, and exits
on any failed batch: while it runs, what it holds is what Redis holds.  The
cold tier keeps that: its bytes are those of the last write (or read) of the
subject, it never holds a subject that is hot, and a subject restored after a
failed settle leaves both tiers.  It is all dropped on every assignment
(`clear`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, NamedTuple

from models.engine import AccountMembers, RegistryEntry, Settled
from models.lead import LeadState
from models.opportunity import OpportunityState
from models.subject import Subject
from sinks.forwarder import partition_of
from sinks.redis_sink import HashWrite, Published, SetAdd, StateWrite
from streams.state import codec
from streams.state.store import KINDS, StateStore

DUMPS: Final[dict[str, Callable[[Any], bytes]]] = {
    "lead": codec.dump_lead,
    "opportunity": codec.dump_opportunity,
    "other": codec.dump_others,
    "account": codec.dump_account,
}
LOADS: Final[dict[str, Callable[[bytes], Any]]] = {
    "lead": codec.load_lead,
    "opportunity": codec.load_opportunity,
    "other": codec.load_others,
    "account": codec.load_account,
}
"""Each kind's state codec (streams/state/codec.py), by `KINDS` name."""


class Cold(NamedTuple):
    """A cold subject: its state as Redis holds it, and what it published last."""

    state: bytes
    """`StateStore.encode` of its state: the value written to (or read from) Redis."""
    published: bytes | None
    """`codec.dump_published` of its subjects (and a lead's snapshot); None for an
    account (it publishes nothing)."""


class CachedSubjects:
    """A `SubjectStore` over Redis state (streams/state/store.py), with a two-tier
    LRU cache (module docstring)."""

    def __init__(self, store: StateStore, size: int, partitions: int, hot: int) -> None:
        self.store = store
        self.size = size
        self.hot = min(hot, size)
        self.partitions = partitions
        self._hot: dict[str, OrderedDict[str, Any]] = {kind: OrderedDict() for kind in KINDS}
        """Kind -> id -> hot subject, least recently used first: ordered dicts, as a
        plain dict finds its first key by stepping over the slots its removals
        left (measured: 6 µs a demotion at 10,000 hot subjects, 0.4 µs this way)."""
        self.leads: dict[str, LeadState] = self._hot["lead"]
        self.opportunities: dict[str, OpportunityState] = self._hot["opportunity"]
        self.others: dict[str, dict[str, Subject]] = self._hot["other"]
        self.accounts: dict[str, AccountMembers] = self._hot["account"]
        self._encoded: dict[str, dict[str, bytes]] = {kind: {} for kind in KINDS}
        """Kind -> id -> the state bytes Redis holds, of hot subjects written (or
        promoted) since they were loaded: what a demotion keeps."""
        self._cold: dict[str, OrderedDict[str, Cold]] = {kind: OrderedDict() for kind in KINDS}
        """Kind -> id -> cold subject, least recently used first."""
        self._members: dict[str, set[str]] = {}
        self._indexed: list[SetAdd] = []
        self.hits = 0
        """Wanted subjects found in the cache, hot or cold, since the worker started
        (operator metric)."""
        self.misses = 0
        """Wanted subjects read from Redis (or new), since the worker started."""
        self.cold_hits = 0
        """Of the hits, those decoded from the cold tier."""

    # --- the SubjectStore protocol -------------------------------------------

    def index_campaign(self, campaign: str, lead_id: str) -> None:
        self._indexed.append(SetAdd(self.store.keys.campaign(campaign), lead_id))

    def campaign_leads(self, campaign: str) -> Iterable[str]:
        """The campaign's leads on the partitions whose registry commands this batch
        carries (`load`'s `registry`), in a stable order."""
        return sorted(self._members.get(campaign, ()))

    def checkpoint(self, kind: str, key: str) -> None:
        """Nothing to keep: Redis holds the state from before the batch."""

    def restore(self, kind: str, key: str) -> None:
        """Let the subject go, with its bytes: it is read again from Redis when next
        touched (its state from before this batch, which does not write it).  It is
        not cold: `load` promoted every subject the batch touches."""
        self._hot[kind].pop(key, None)
        self._encoded[kind].pop(key, None)

    def release(self) -> None:
        """Nothing was kept."""

    # --- one batch ------------------------------------------------------------

    async def load(
        self,
        wanted: Mapping[str, set[str]],
        campaigns: Iterable[str],
        registry: Iterable[tuple[str, int]],
    ) -> dict[str, RegistryEntry]:
        """Make the wanted subjects (kind -> ids) present, and the leads of each
        (campaign, partition) of `registry` (re-settled by its command); return
        the registry entries Redis holds for `campaigns`."""
        self._indexed = []
        self._members = await self._campaign_members(registry)
        wanted = {**wanted, "lead": set(wanted.get("lead", ())).union(*self._members.values())}
        missing: dict[str, set[str]] = {}
        for kind, ids in wanted.items():
            absent = ids - self._hot[kind].keys()
            cold = absent & self._cold[kind].keys()
            for key in sorted(cold):  # sorted: the same order on every run
                self._promote(kind, key)
            missing[kind] = absent - cold
            self.cold_hits += len(cold)
        missed = sum(map(len, missing.values()))
        self.misses += missed
        self.hits += sum(map(len, wanted.values())) - missed
        states, entries = await self.store.load(missing, campaigns)
        for kind, raws in states.items():
            held, load = self._hot[kind], LOADS[kind]
            for key, raw in raws.items():
                held[key] = load(raw)
        return {campaign: codec.load_registry(raw) for campaign, raw in entries.items()}

    def _promote(self, kind: str, key: str) -> None:
        """Decode a cold subject into the hot tier (the most recently used), with
        what it published last as its base (`Subject.sent`)."""
        cold = self._cold[kind].pop(key)
        state = LOADS[kind](codec.decompress(cold.state))
        if cold.published is not None:
            published, snapshot = codec.load_published(cold.published)
            for name, subject in _subjects(kind, state).items():
                subject.sent = published.get(name)
            if isinstance(state, LeadState):
                state.snapshot = snapshot  # as sent: the next settle sends only a change
        self._hot[kind][key] = state
        self._encoded[kind][key] = cold.state

    async def _campaign_members(self, wanted: Iterable[tuple[str, int]]) -> dict[str, set[str]]:
        wanted = set(wanted)
        if not wanted:
            return {}
        members = await self.store.campaign_leads(sorted({c for c, _ in wanted}))
        out: dict[str, set[str]] = {}
        for campaign, part in wanted:
            out.setdefault(campaign, set()).update(
                i for i in members[campaign] if partition_of(i, self.partitions) == part
            )
        return out

    def writes(self, settled: Settled) -> list[StateWrite]:
        """The settled subjects' new state and the batch's campaign index entries;
        they become the most recently used, and their bytes what a demotion keeps."""
        encode, keys = self.store.encode, self.store.keys
        out: list[StateWrite] = list(self._indexed)
        ids = (settled.leads, settled.opportunities, settled.others, settled.accounts)
        for kind, settled_ids in zip(KINDS, ids, strict=True):
            held, encoded, dump, name = (
                self._hot[kind],
                self._encoded[kind],
                DUMPS[kind],
                keys.subjects(kind),
            )
            for key in dict.fromkeys(settled_ids):
                held.move_to_end(key)  # most recently used
                encoded[key] = raw = encode(dump(held[key]))
                out.append(HashWrite(name, key, raw))
        return out

    def trim(self) -> None:
        """Demote the least recently used hot subjects beyond `hot` to the cold tier
        (those whose bytes are not at hand, read but never written, just go), then
        let the least recently used cold ones go beyond `size`: they are read again
        from Redis when next touched."""
        excess = sum(len(self._hot[kind]) for kind in KINDS) - self.hot
        for kind in KINDS:
            held, encoded, cold = self._hot[kind], self._encoded[kind], self._cold[kind]
            while excess > 0 and held:
                key, state = held.popitem(last=False)
                raw = encoded.pop(key, None)
                if raw is not None:
                    cold[key] = Cold(raw, _published(kind, state))
                excess -= 1
        excess = sum(len(self._hot[kind]) + len(self._cold[kind]) for kind in KINDS) - self.size
        for kind in KINDS:
            cold = self._cold[kind]
            while excess > 0 and cold:
                cold.popitem(last=False)
                excess -= 1

    def clear(self) -> None:
        for kind in KINDS:
            self._hot[kind].clear()
            self._encoded[kind].clear()
            self._cold[kind].clear()


def _subjects(kind: str, state: Any) -> dict[str, Subject]:
    """The subjects of one cache entry, by name: a lead or an opportunity is one
    (named ""), an extension-topic key holds several (by kind), an account none."""
    if kind == "other":
        return dict(state)
    return {} if kind == "account" else {"": state}


def _published(kind: str, state: Any) -> bytes | None:
    """What the entry's subjects published last, as the cold tier keeps it (a
    subject whose base is not known is left out, and so comes back unknown)."""
    if kind == "account":
        return None
    return codec.dump_published(
        {
            name: subject.sent
            for name, subject in _subjects(kind, state).items()
            if isinstance(subject.sent, Published)
        },
        state.snapshot if isinstance(state, LeadState) else None,
    )
