"""Fuzzing `parse_event`: whatever the bytes, a typed event or a known rejection.

Two sources of input, over 100,000 in all:

- a seeded byte- and token-level mutator over real events from the synthetic
  generator (bit flips, splices, truncations, JSON-breaking bytes, values
  swapped for hostile ones), which reaches deep into the validators cheaply;
- hypothesis for structured inputs: real events with fields replaced by wrong
  types, huge or unicode strings and nested garbage, fields dropped or added.

Every accepted event is also ingested by one `Engine` and settled, so an
event the parser lets through cannot crash the pipeline downstream either.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import cache

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from datagen import SyntheticConfig, generate
from models.engine import Engine
from models.events import BaseEvent, Event, route
from models.parse import DEFAULT_MAX_BYTES, Rejection, parse_event

# The stable codes of SPEC §1's dead letters, as documented on `Rejection`.
REASONS = frozenset(
    {
        "oversize",
        "invalid_json",
        "not_an_object",
        "missing_type",
        "unknown_type",
        "missing_field",
        "invalid_field",
        "unknown_currency",
    }
)
MUTATED_INPUTS = 150_000

# Values that break a field's type, size, encoding or nesting assumptions.
HOSTILE: list[object] = [
    None,
    True,
    0,
    -1,
    2**63,
    -(2**200),
    1e308,
    -0.0,
    "",
    " ",
    "\t\n",
    "x" * 129,
    "y" * 5000,
    "ü" * 300,
    "🚀" * 200,
    "\x00",
    "\ud800",
    "NaN",
    "Infinity",
    "1e400",
    "2026-02-30T00:00:00+00:00",
    "2026-03-01T10:00:00",
    "2026-03-01T10:00:00+24:00",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "usd",
    "XXX",
    "S9",
    "closed_won",
    "new_business",
    [],
    [None],
    ["l1"] * 201,
    {},
    {"type": "touch"},
    [[[[[[[[[[]]]]]]]]]],
    {"a": {"b": {"c": {"d": [1, "2", None]}}}},
]

# Bytes that end strings, open and close structures, escape, or are not UTF-8.
SPECIAL = [b'"', b"{", b"}", b"[", b"]", b",", b":", b"\\", b"\x00", b"\xff", b"\xc3", b"9", b" "]


@cache
def corpus() -> tuple[bytes, ...]:
    """Real events of every type, serialised as the generator writes them."""
    items = generate(SyntheticConfig(seed=42, leads=400, duplicates=0.02, invalid=0.02))
    return tuple(i.encode() if isinstance(i, str) else orjson.dumps(i) for i in items)


@cache
def objects() -> tuple[dict[str, object], ...]:
    """The valid events of the corpus, one per type first, as dicts to mutate."""
    valid = [orjson.loads(raw) for raw in corpus() if not isinstance(parse_event(raw), Rejection)]
    by_type = {event["type"]: event for event in valid}
    return (*by_type.values(), *valid[:: max(1, len(valid) // 200)])


def check(raw: bytes) -> Event | Rejection:
    """`parse_event(raw)`, asserting the parser's contract on the result."""
    result = parse_event(raw)
    if isinstance(result, Rejection):
        assert result.reason in REASONS, result
        assert result.raw == raw
        assert isinstance(result.detail, str) and len(result.detail) <= 300
        assert result.field is None or isinstance(result.field, str)
        if len(raw) > DEFAULT_MAX_BYTES:
            assert result.reason == "oversize"
        return result
    assert isinstance(result, BaseEvent)
    assert len(raw) <= DEFAULT_MAX_BYTES
    assert 1 <= len(result.event_id) <= 128
    assert isinstance(result.occurred_at, datetime) and result.occurred_at.utcoffset() is not None
    assert isinstance(result.ts, int)
    topic, key = route(result)
    assert topic and key
    assert json.loads(raw)["type"] == getattr(result, "type")  # noqa: B009
    return result


# --- the seeded mutator ---------------------------------------------------------


def _flip(rng: random.Random, raw: bytes) -> bytes:
    i = rng.randrange(len(raw))
    return raw[:i] + bytes([raw[i] ^ (1 << rng.randrange(8))]) + raw[i + 1 :]


def _insert(rng: random.Random, raw: bytes) -> bytes:
    i = rng.randrange(len(raw) + 1)
    return raw[:i] + rng.choice(SPECIAL) * rng.randint(1, 3) + raw[i:]


def _delete(rng: random.Random, raw: bytes) -> bytes:
    i = rng.randrange(len(raw))
    return raw[:i] + raw[i + rng.randint(1, 8) :]


def _truncate(rng: random.Random, raw: bytes) -> bytes:
    return raw[: rng.randrange(len(raw))]


def _splice(rng: random.Random, raw: bytes) -> bytes:
    other = rng.choice(corpus())
    return raw[: rng.randrange(len(raw))] + other[rng.randrange(len(other)) :]


def _duplicate(rng: random.Random, raw: bytes) -> bytes:
    i, j = sorted((rng.randrange(len(raw)), rng.randrange(len(raw))))
    return raw[:j] + raw[i:j] * rng.randint(1, 50) + raw[j:]


def _swap_value(rng: random.Random, raw: bytes) -> bytes:
    """Replace one field's value (or the type) with a hostile one, keeping valid JSON."""
    event = dict(rng.choice(objects()))
    event[rng.choice([*event, "type", "currency", "extra"])] = rng.choice(HOSTILE)
    return json.dumps(event).encode()


def _drop_field(rng: random.Random, raw: bytes) -> bytes:
    event = dict(rng.choice(objects()))
    del event[rng.choice(list(event))]
    return orjson.dumps(event)


def _change_type(rng: random.Random, raw: bytes) -> bytes:
    """A real event under another type's name: right JSON, wrong shape."""
    event = dict(rng.choice(objects()))
    event["type"] = rng.choice(objects())["type"]
    return orjson.dumps(event)


MUTATORS: list[Callable[[random.Random, bytes], bytes]] = [
    _flip,
    _insert,
    _delete,
    _truncate,
    _splice,
    _duplicate,
    _swap_value,
    _drop_field,
    _change_type,
]


def mutated(seed: int, count: int) -> Iterator[bytes]:
    """`count` inputs, each a real event with one to three stacked mutations."""
    rng = random.Random(seed)
    events = corpus()
    for _ in range(count):
        raw = rng.choice(events)
        for _ in range(rng.randint(1, 3)):
            raw = rng.choice(MUTATORS)(rng, raw) if raw else b"{"
        yield raw


def test_mutated_real_events_never_escape_the_contract() -> None:
    engine = Engine()
    reasons: dict[str, int] = {}
    accepted = 0
    started = time.perf_counter()
    for raw in mutated(seed=20260601, count=MUTATED_INPUTS):
        result = check(raw)
        if isinstance(result, Rejection):
            reasons[result.reason] = reasons.get(result.reason, 0) + 1
        else:
            accepted += 1
            engine.ingest(result)
    engine.settle()
    elapsed = time.perf_counter() - started
    # The mutator reaches every validation path, and keeps some events valid.
    assert set(reasons) == REASONS, reasons
    assert accepted > MUTATED_INPUTS // 20
    assert elapsed < 60, f"{MUTATED_INPUTS} inputs took {elapsed:.1f} s"


def test_oversize_mutations_are_rejected_before_decoding() -> None:
    # 64 KiB + 1 of anything, valid JSON or not, is `oversize`, never a parse error.
    for raw in mutated(seed=7, count=200):
        big = raw + b" " * (DEFAULT_MAX_BYTES + 1 - len(raw))
        result = parse_event(big)
        assert isinstance(result, Rejection) and result.reason == "oversize"


# --- hypothesis: structured inputs ----------------------------------------------

json_leaf = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()
    | st.text(min_size=1, max_size=8).map(lambda t: t * 700)  # huge, cheaply
    | st.sampled_from([v for v in HOSTILE if isinstance(v, str)])
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=20,
)


@st.composite
def valid_ish(draw: st.DrawFn) -> dict[str, object]:
    """A real event with some fields replaced, dropped or added."""
    event = dict(draw(st.sampled_from(objects())))
    fields = sorted(event)
    for name in draw(st.lists(st.sampled_from([*fields, "type", "currency", "x"]), max_size=3)):
        event[name] = draw(json_value)
    for name in draw(st.lists(st.sampled_from(fields), max_size=2)):
        event.pop(name, None)
    return event


@settings(max_examples=1500, deadline=None)
@given(valid_ish())
def test_valid_ish_events_give_an_event_or_a_known_reason(event: dict[str, object]) -> None:
    check(json.dumps(event).encode())


@settings(max_examples=500, deadline=None)
@given(json_value)
def test_arbitrary_json_documents_give_a_known_reason_or_an_event(value: object) -> None:
    check(json.dumps(value).encode())


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from(objects()), st.text(min_size=1), st.integers(0, 3))
def test_unicode_and_nesting_in_every_string_field(
    event: dict[str, object], text: str, depth: int
) -> None:
    value: object = text
    for _ in range(depth):
        value = [value]
    for name in event:
        check(json.dumps({**event, name: value}, ensure_ascii=bool(depth % 2)).encode())
