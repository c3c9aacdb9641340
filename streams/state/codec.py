"""Bytes for subject state and internal messages: compact JSON, never pickle.

State lives in Redis and internal messages in Kafka, where anyone with write
access could plant a pickle; JSON arrays keep state small (≤ 1 KiB a lead)
and safe.  Derived data (contributions, snapshots) is not stored: settling
recomputes it, and the Redis sink diffs against what it published.  What a
cached subject published is kept in the worker's memory alone, in `marshal`
(`dump_published`): no other process can write those bytes.
"""

from __future__ import annotations

import marshal
import sys
import zlib
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final, get_args

import orjson
import zstandard

from models.attribution import Touchpoint
from models.engine import GROUP, AccountMembers, RegistryEntry
from models.events import OtherEvent
from models.groups import GroupState
from models.lead import LeadSnapshot, LeadState, Milestone, TouchRecord
from models.opportunity import Amount, Created, OpportunityState
from models.parse import parse_event
from models.subject import NO_REPEATS, Contribution, Subject
from sinks.redis_sink import Published

ZLIB_HEADER: Final = b"x"
"""The first byte of a zlib stream (deflate, default window)."""
ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
"""The first bytes of a Zstandard frame.  JSON starts with neither."""
_ZSTD = zstandard.ZstdCompressor(level=1)
_UNZSTD = zstandard.ZstdDecompressor()

UNKNOWN = Contribution({}, {})
"""The contribution of a state read back: not stored, so not known (`EMPTY` is
what a subject that never published holds)."""


def compress(value: bytes) -> bytes:
    """`value` in Zstandard at level 1: as small as zlib at level 1 on our JSON (a
    lead's 612 bytes become about 290), in a fifth of its time (5 µs, not 25).

    Copied once: the binding returns its worst-case buffer shrunk in place, and a
    worker keeps these bytes (its cache's cold tier), where kept as made they
    cost four times their size in RSS (measured: 146 MiB for 31 MiB of output)."""
    return bytes(memoryview(_ZSTD.compress(value)))


def decompress(stored: bytes) -> bytes:
    """Whatever `compress` made, a zlib stream (what earlier versions stored), or
    uncompressed JSON as is: a deployment can change its setting, or its version,
    on data already stored."""
    if stored[:4] == ZSTD_MAGIC:
        return _UNZSTD.decompress(stored)
    return zlib.decompress(stored) if stored[:1] == ZLIB_HEADER else stored


def _tuples(value: object) -> list[Any]:
    """orjson leaves NamedTuples to us: store them as plain arrays."""
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(type(value).__name__)


def _dumps(value: object) -> bytes:
    return orjson.dumps(value, default=_tuples)


def _subject(state: Subject) -> list[Any]:
    return [state.key, state.seen, state.newest, sorted(state.repeats), state.late, state.cause]


def _restore(state: Subject, head: list[Any]) -> None:
    state.seen, state.newest, state.late, state.cause = head[1], head[2], head[4], head[5]
    state.repeats = frozenset(head[3]) if head[3] else NO_REPEATS
    state.contribution = UNKNOWN


def _milestone(raw: list[Any] | None) -> Milestone | None:
    return Milestone(*raw) if raw is not None else None


def dump_lead(state: LeadState) -> bytes:
    return _dumps(
        [
            _subject(state),
            list(state.touches.values()),
            state.created,
            state.mql,
            state.touch_account,
            state.version,
            state.subscribers,
        ]
    )


def load_lead(raw: bytes) -> LeadState:
    """A lead as the worker caches it: names interned, and each event id one object
    (in `seen`, the touches' keys and records) instead of three."""
    head, touches, created, mql, touch_account, version, subscribers = orjson.loads(raw)
    state = LeadState(head[0])
    _restore(state, head)
    records = [
        TouchRecord(ts, touch_id, sys.intern(campaign), sys.intern(action), *map(_name, rest))
        for ts, touch_id, campaign, action, *rest in touches
    ]
    state.touches = {record.touch_id: record for record in records}
    ids = {touch_id: touch_id for touch_id in state.touches}
    state.seen = {ids.get(i, i): position for i, position in state.seen.items()}
    state.created = _milestone(created)
    state.mql = _milestone(mql)
    state.touch_account = _milestone(touch_account)
    state.version = version
    state.subscribers = subscribers
    return state


def dump_snapshot(snapshot: LeadSnapshot) -> list[Any]:
    return [
        snapshot.lead_id,
        snapshot.account_id,
        [_point(p) for p in snapshot.touchpoints],
        _point(snapshot.lc) if snapshot.lc else None,
    ]


def load_snapshot(raw: list[Any]) -> LeadSnapshot:
    lead_id, account_id, points, lc = raw
    return LeadSnapshot(
        lead_id,
        _name(account_id),
        tuple(_load_point(p) for p in points),
        _load_point(lc) if lc else None,
    )


def _load_point(raw: list[Any]) -> Touchpoint:
    ts, touch_id, lead_id, campaign, partner, channel = raw
    return Touchpoint(ts, touch_id, lead_id, sys.intern(campaign), _name(partner), _name(channel))


def _name(value: str | None) -> str | None:
    """A name (campaign, partner, channel, account) as one shared object."""
    return None if value is None else sys.intern(value)


def _point(point: Touchpoint) -> list[Any]:
    return [point.ts, point.touch_id, point.lead_id, point.campaign, point.partner, point.channel]


def dump_opportunity(state: OpportunityState) -> bytes:
    return _dumps(
        [
            _subject(state),
            state.created,
            sorted(state.contacts),
            [state.amount.ts, state.amount.event_id, str(state.amount.arr)]
            if state.amount
            else None,
            state.qualified,
            state.won,
            state.lost,
            {lead: [version, dump_snapshot(snap)] for lead, (version, snap) in state.leads.items()},
        ]
    )


def load_opportunity(raw: bytes) -> OpportunityState:
    head, created, contacts, amount, qualified, won, lost, leads = orjson.loads(raw)
    state = OpportunityState(head[0])
    _restore(state, head)
    state.created = Created(*created) if created else None
    state.contacts = set(contacts)
    state.amount = Amount(amount[0], amount[1], Decimal(amount[2])) if amount else None
    state.qualified, state.won, state.lost = (_moment(m) for m in (qualified, won, lost))
    state.leads = {lead: (version, load_snapshot(snap)) for lead, (version, snap) in leads.items()}
    return state


def _moment(stored: list[Any] | None) -> tuple[int, str] | None:
    """An `(ts, event_id)` pair stored as a JSON list, back as the tuple it compares as."""
    return None if stored is None else (stored[0], stored[1])


def dump_subject(state: Subject) -> bytes:
    return _dumps(_subject(state))


def load_subject(raw: bytes) -> Subject:
    head = orjson.loads(raw)
    state = Subject(head[0])
    _restore(state, head)
    return state


def dump_group(state: GroupState) -> bytes:
    """A group keeps its events whole (their metrics are recomputed from all of them),
    each as a row of field values: no field names, trailing absent fields left out."""
    return _dumps([state.key, state.family, [_event_row(e) for e in state.events.values()]])


def load_group(raw: bytes) -> GroupState:
    key, family, rows = orjson.loads(raw)
    state = GroupState(key, family=family)
    state.contribution = UNKNOWN
    for row in rows:
        fields = _FIELDS[row[0]]
        # validated like any input: Redis is not trusted more than Kafka
        event = parse_event(_dumps(dict(zip(fields, row, strict=False))), max_bytes=sys.maxsize)
        if not isinstance(event, OtherEvent):
            raise ValueError(f"stored group event does not parse: {event}")
        state.ingest(event)
    return state


def dump_others(subjects: dict[str, Subject]) -> bytes:
    """The subjects of one extension-topic key: {kind: its stored form as text}."""
    return _dumps(
        {
            kind: (
                dump_group(subject) if isinstance(subject, GroupState) else dump_subject(subject)
            ).decode()
            for kind, subject in subjects.items()
        }
    )


def load_others(raw: bytes) -> dict[str, Subject]:
    """Inverse of `dump_others` (kinds `<topic>` and `group:<family>`)."""
    return {
        kind: (load_group if kind.startswith(GROUP) else load_subject)(value.encode())
        for kind, value in orjson.loads(raw).items()
    }


def dump_account(members: AccountMembers) -> bytes:
    return _dumps([sorted(members.leads), sorted(members.opportunities)])


def load_account(raw: bytes) -> AccountMembers:
    leads, opportunities = orjson.loads(raw)
    return AccountMembers(set(leads), set(opportunities))


def dump_registry(entry: RegistryEntry) -> bytes:
    return _dumps({"ts": entry.ts, "event_id": entry.event_id, "partner": entry.partner})


def load_registry(raw: bytes | dict[str, Any]) -> RegistryEntry:
    """A registry entry as stored, or as carried by a registry command."""
    fields = orjson.loads(raw) if isinstance(raw, bytes) else raw
    return RegistryEntry(int(fields["ts"]), str(fields["event_id"]), fields["partner"])


def dump_published(sent: Mapping[str, Published], snapshot: LeadSnapshot | None) -> bytes:
    """What the subjects of one cache entry published last (name -> `Subject.sent`,
    and a lead's snapshot), as the cache's cold tier keeps it
    (streams/state/subjects.py): compressed `marshal` rows of the sink's texts
    (measured: a lead's 1,620 bytes become 506).

    `marshal`, not JSON: these bytes never leave the worker's memory (unlike
    state, nothing else can write them), and it reads the texts back at C speed."""
    rows = {name: (published.metrics, published.lines) for name, published in sent.items()}
    return compress(marshal.dumps((rows, dump_snapshot(snapshot) if snapshot else None)))


def load_published(raw: bytes) -> tuple[dict[str, Published], LeadSnapshot | None]:
    """Inverse of `dump_published`."""
    rows, snapshot = marshal.loads(decompress(raw))  # noqa: S302 - made by this process
    sent = {name: Published(metrics, lines) for name, (metrics, lines) in rows.items()}
    return sent, load_snapshot(snapshot) if snapshot else None


def _event_row(event: OtherEvent) -> list[Any]:
    row = list(event.model_dump(mode="json", exclude={"type"}).values())
    while row and row[-1] is None:
        row.pop()
    return [event.type, *row]


_FIELDS: dict[str, tuple[str, ...]] = {
    get_args(model.model_fields["type"].annotation)[0]: (
        "type",
        *(name for name in model.model_fields if name != "type"),
    )
    for model in get_args(OtherEvent)
}
"""Event type -> the field names of its stored row (`type`, then the model's field order)."""
