"""The Redis sink of the streaming path: effectively once by construction.

The worker hands over a `SinkBatch`: per settled subject its *absolute*
current `Contribution`, plus the batch's dead letters, subject state and
offsets.  `RedisSink.execute` sends one Lua script call (`apply.lua`) per
batch; the script diffs each contribution against the one Redis holds from the
subject's previous publication and applies only the difference.  Re-sending a
contribution is therefore a no-op, so a crash and replay at any point neither
loses nor double-counts, and retrying a call whose outcome is unknown is
always safe.  A caller that knows what Redis holds for a subject (its base)
sends the difference instead, summed over the call's subjects, and the script
refuses the call if a base is wrong (docs/decisions.md, ADR 5).  See
docs/guarantees.md.

All keys of a batch are touched by one script, so this does not work on Redis
Cluster (it would need every key in one hash slot); a single Redis, or a
primary with replicas / Sentinel, is supported.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import partial
from importlib import resources
from typing import Any, Final, Self, TypeVar
from urllib.parse import urlsplit, urlunsplit

import orjson
from redis import exceptions as rexc
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from models.subject import (
    EMPTY,
    Contribution,
    CreditDelta,
    CreditLine,
    MetricKey,
    diff,
    merge,
)
from sinks.keys import DEFAULT_PREFIX, Keys, escape_named, unescape_named

__all__ = [
    "NOTHING",
    "DeadLetter",
    "Fence",
    "FencedError",
    "HashWrite",
    "MetricUpdate",
    "Prepared",
    "Published",
    "RedisSink",
    "SetAdd",
    "SinkBatch",
    "SinkResult",
    "SinkUnavailableError",
    "StateWrite",
    "credit_deltas",
    "metric_updates",
    "published",
    "redact_url",
]

log = logging.getLogger(__name__)

LUA_SOURCE: Final = resources.files("sinks").joinpath("apply.lua").read_text(encoding="utf-8")

MAX_EXACT: Final = 2**53
"""Lua numbers are doubles: every value and delta must stay below this in magnitude."""

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A rejected message, identified by where it was read from."""

    topic: str
    partition: int
    offset: int
    reason: str
    error: str = ""
    """For `processing_error`: the exception's type and message (never a stack)."""

    @property
    def source(self) -> str:
        """``topic|partition|offset``: the dead letter's identity (counted once)."""
        return f"{self.topic}|{self.partition}|{self.offset}"


@dataclass(frozen=True, slots=True)
class HashWrite:
    """Subject state: ``HSET key field value``."""

    key: str
    field: str
    value: bytes


@dataclass(frozen=True, slots=True)
class SetAdd:
    """A state index entry: ``SADD key member``."""

    key: str
    member: str


StateWrite = HashWrite | SetAdd
"""A write of subject state, applied with the batch (after its contributions)."""


@dataclass(frozen=True, slots=True)
class Fence:
    """Who may write a batch: `token` must own each of `partitions` in hash `key`."""

    key: str
    token: str
    partitions: frozenset[int]


@dataclass(frozen=True, slots=True)
class Published:
    """A contribution as the script stores it: its metrics text (what
    ``pp:contrib:<subject>`` holds, "" for none) and its credit lines (touch id,
    line JSON; sorted).  All a sender needs of a base: the script checks the
    text's digest, and the deltas come from its rows.  A worker keeps this
    instead of the contribution's objects, so a base is never encoded twice
    and a cached subject's is a fraction of their size."""

    metrics: str
    lines: tuple[tuple[str, str], ...]


def published(contribution: Contribution) -> Published:
    """`contribution` as the script stores it."""
    return Published(
        _metrics_json(contribution),
        tuple((touch, _line_json(line)) for touch, line in sorted(contribution.credits.items())),
    )


NOTHING: Final = Published("", ())
"""What a subject that never published has in Redis (`published(EMPTY)`)."""


@dataclass(slots=True)
class SinkBatch:
    """Everything one batch writes to Redis, in one atomic, fenced, idempotent call.

    `contributions` are absolute (subject -> its current contribution): the
    script publishes their difference to what Redis holds.  `causes` names the
    event behind each subject's credit changes (in the outbox).  `bases`
    (subject -> what the sender knows Redis holds for it, `NOTHING` for a
    subject never published) lets the sink send summed metric deltas
    instead of having the script diff; the script checks each base's digest
    before writing anything and refuses the call (`STALE`) if one is wrong.
    `dead_letters` are counted once per source offset.  `states` are written
    after every contribution.  `first` and `last` are the batch's first and
    last offset per (topic, partition): the applied offsets are raised to
    `last`; with `first`, a batch that does not follow the applied offsets is
    refused and one already applied changes nothing (bases need it).  With a
    `fence`, every call first checks that the sender still owns the
    partitions.
    """

    contributions: dict[str, Contribution] = field(default_factory=dict)
    causes: dict[str, str] = field(default_factory=dict)
    bases: dict[str, Published] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    states: list[StateWrite] = field(default_factory=list)
    first: dict[tuple[str, int], int] = field(default_factory=dict)
    last: dict[tuple[str, int], int] = field(default_factory=dict)
    fence: Fence | None = None
    encoded: dict[str, Published] = field(default_factory=dict)
    """`published` of contributions, where `publish` made it already."""

    def publish(
        self, subject: str, new: Contribution, base: Published | None, cause: str
    ) -> Published:
        """Send `subject`'s new contribution, unless it equals its known `base`
        (None: not known, always sent; the script diffs).  Returns it as Redis
        will hold it: the subject's next base."""
        encoded = published(new)
        if base is not None:
            if base == encoded:
                return base
            self.bases[subject] = base
        self.contributions[subject] = new
        self.encoded[subject] = encoded
        self.causes[subject] = cause
        return encoded


@dataclass(frozen=True, slots=True)
class MetricUpdate:
    """A changed running total (`partnerpulse.metrics`)."""

    scope: str
    metric: str
    value: int
    delta: int


@dataclass(slots=True)
class SinkResult:
    """What one `apply` changed in Redis (empty when it was a replay)."""

    metrics: list[MetricUpdate] = field(default_factory=list)
    credits: list[CreditDelta] = field(default_factory=list)
    dead_letters: int = 0
    """Dead letters counted now (not seen before)."""
    stream_ids: list[str] = field(default_factory=list)
    """Entries added to the changes stream (one per script call that changed a metric)."""
    outbox_ids: list[str] = field(default_factory=list)
    """Entries added to the outbox (one per script call that changed a metric or credit)."""
    calls: int = 0


@dataclass(frozen=True, slots=True)
class Prepared:
    """One batch's script calls, encoded (`RedisSink.prepare`)."""

    calls: list[tuple[bytes, list[bytes]]]
    """(JSON argument, binary state values) per script call."""
    decode: bool


class FencedError(Exception):
    """The sink refused a batch: its partitions have another owner, its offsets
    do not follow the applied ones, or Redis does not hold a base it was given.
    The worker's view is stale; it must not go on."""


class SinkUnavailableError(Exception):
    """Redis did not answer within `max_wait` (the last error is the `__cause__`)."""


def redact_url(url: str) -> str:
    """`url` without user name and password, safe to log."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port is not None else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _retryable(exc: BaseException) -> bool:
    """Errors after which the script has certainly or possibly not run, and may run again.

    Connection loss and timeouts (the call may or may not have been applied:
    re-applying is a no-op), a server still loading its data, a replica
    refusing writes during a failover, OOM (refused before the first write),
    and BUSY (another script is running).  Bad credentials or permissions are
    not retried: they do not heal by waiting.
    """
    if isinstance(exc, rexc.AuthenticationError | rexc.AuthorizationError):
        return False
    if isinstance(exc, rexc.ConnectionError | rexc.TimeoutError | TimeoutError | ConnectionError):
        return True
    if isinstance(exc, rexc.ReadOnlyError | rexc.OutOfMemoryError):
        return True
    return isinstance(exc, rexc.ResponseError) and str(exc).startswith("BUSY")


class RedisSink:
    """Applies absolute per-subject contributions to Redis, effectively once.

    `max_wait` bounds how long one call keeps retrying while Redis is
    unavailable (None: forever, which is the back-pressure of the streaming
    path: the worker does not go on until Redis answers).
    """

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        max_wait: float | None = None,
        backoff: tuple[float, float] = (0.1, 5.0),
        stream_maxlen: int = 10_000,
        max_subjects_per_call: int = 1_000,
        target: str = "redis",
    ) -> None:
        if max_subjects_per_call < 1:
            raise ValueError("max_subjects_per_call must be >= 1")
        self.client = client
        self.keys = Keys(prefix)
        self.max_wait = max_wait
        self.backoff = backoff
        self.stream_maxlen = stream_maxlen
        self.max_subjects_per_call = max_subjects_per_call
        self.target = target
        self._script = client.register_script(LUA_SOURCE)

    @classmethod
    def from_url(
        cls,
        url: str,
        password: str | None = None,
        ssl: bool | None = None,
        *,
        socket_timeout: float = 30.0,
        connect_timeout: float = 5.0,
        client_options: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Self:
        """A sink on `url` (``redis://`` or ``rediss://``); reads no environment.

        `password` is used when the URL carries none.  `ssl`: None follows the
        scheme, True forces TLS (``redis://`` becomes ``rediss://``), False
        refuses a ``rediss://`` URL.  `client_options` go to the redis-py
        client (`Settings.redis_client_options`: password, TLS files);
        `options` go to `RedisSink`.
        """
        scheme = urlsplit(url).scheme
        if ssl is True and scheme == "redis":
            url = "rediss" + url[len("redis") :]
        elif ssl is False and scheme == "rediss":
            raise ValueError("ssl=False but the URL asks for TLS (rediss://)")
        kwargs: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": connect_timeout,
            # Retrying is ours (with back-off and max_wait), not the client's.
            "retry": Retry(NoBackoff(), 0),
        }
        if password is not None:
            kwargs["password"] = password
        kwargs.update(client_options or {})
        client = Redis.from_url(url, **kwargs)
        return cls(client, target=redact_url(url), **options)

    async def close(self) -> None:
        await self.client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- writing ------------------------------------------------------------

    async def apply(
        self,
        contributions: Mapping[str, Contribution],
        dead_letters: Sequence[DeadLetter] = (),
        offsets: Mapping[tuple[str, int], int] | None = None,
    ) -> SinkResult:
        """Publish absolute contributions, count dead letters and raise applied
        offsets, unfenced: the shortcut for a batch of only these pieces."""
        batch = SinkBatch(dict(contributions), dead_letters=list(dead_letters))
        batch.last.update(offsets or {})
        return await self.execute(self.prepare(batch))

    def prepare(self, batch: SinkBatch, *, decode: bool = True) -> Prepared:
        """Encode one batch's script calls (`execute` runs them); see `SinkBatch`.

        `decode` False leaves the result empty: the script then sends no
        change lists back (the worker does not use them; the outbox carries
        the changes).  One script call per `max_subjects_per_call` subjects
        (one for any ordinary batch), the dead letters, offsets and state
        writes in the last; each call is atomic and idempotent, so a crash
        between calls is repaired by re-sending the batch.  Everything is
        encoded here, so the caller may change its objects while `execute` is
        under way (the worker processes the next batch meanwhile).
        """
        if batch.bases and not batch.first:
            raise ValueError("bases need first offsets: a repeated call must be recognised")
        contributions, causes, bases = batch.contributions, batch.causes, batch.bases
        known = batch.encoded
        encoded = [
            _encode_subject(
                s, known.get(s) or published(contributions[s]), causes.get(s, ""), bases.get(s)
            )
            for s in sorted(contributions)
        ]
        dlq = [[d.source, d.reason] for d in batch.dead_letters]
        offs = [[_tp(tp), _exact(off)] for tp, off in batch.last.items()]
        checks: dict[str, Any] = {}
        if batch.fence is not None:
            fence = batch.fence
            checks["f"] = [fence.key, fence.token, sorted(fence.partitions)]
        if batch.first:
            checks["x"] = [
                [_tp(tp), _exact(off), batch.last[tp]] for tp, off in batch.first.items()
            ]
        step = self.max_subjects_per_call
        chunks = [encoded[i : i + step] for i in range(0, len(encoded), step)] or [[]]
        calls: list[tuple[bytes, list[bytes]]] = []
        for i, chunk in enumerate(chunks):
            net: dict[MetricKey, int] = {}
            for _, deltas in chunk:
                merge(net, deltas)
            call: dict[str, Any] = {"s": [entry for entry, _ in chunk], "d": [], "o": [], **checks}
            if net:
                call["n"] = sorted(
                    (scope, metric, _exact(v)) for (scope, metric), v in net.items() if v
                )
            if not decode:
                call["q"] = 1
            values: list[bytes] = []
            if i == len(chunks) - 1:
                # values are ARGV[4], ARGV[5], ...: binary-safe, outside the JSON
                st, values = _state_entries(batch.states)
                call.update(d=dlq, o=offs, st=st)
            calls.append((orjson.dumps(call), values))
        return Prepared(calls, decode)

    async def execute(self, prepared: Prepared) -> SinkResult:
        """Run `prepare`'s script calls in order, each retried until it succeeds."""
        result = SinkResult()
        for payload, values in prepared.calls:
            reply = await self.retrying(partial(self._call, payload, values))
            if prepared.decode:
                _collect(result, reply)
        return result

    async def _call(self, payload: bytes, values: Sequence[bytes] = ()) -> Any:
        try:
            return await self._script(args=[self.keys.prefix, payload, self.stream_maxlen, *values])
        except rexc.ResponseError as exc:
            if str(exc).startswith(("FENCED", "OFFSETS", "STALE")):
                raise FencedError(str(exc)) from exc
            raise

    async def retrying(self, fn: Callable[[], Awaitable[_T]]) -> _T:
        """`fn()` until it succeeds, with capped exponential back-off (see `max_wait`).

        For any call on `client` that is safe to repeat: the worker's state
        reads go through it too, so an outage stalls them the same way.
        """
        first, cap = self.backoff
        delay, start, attempt = first, time.monotonic(), 0
        while True:
            attempt += 1
            try:
                return await fn()
            except Exception as exc:
                if not _retryable(exc):
                    raise
                waited = time.monotonic() - start
                if self.max_wait is not None and waited >= self.max_wait:
                    raise SinkUnavailableError(
                        f"{self.target} unavailable after {attempt} attempts in {waited:.1f} s"
                    ) from exc
                pause = delay if self.max_wait is None else min(delay, self.max_wait - waited)
                log.warning(
                    "%s unavailable (%s: %s), attempt %d; retrying in %.1f s",
                    self.target,
                    type(exc).__name__,
                    exc,
                    attempt,
                    pause,
                )
                await asyncio.sleep(pause)
                delay = min(delay * 2, cap)

    # --- reading back -------------------------------------------------------

    async def read_metrics(self) -> dict[MetricKey, int]:
        """Every running total: (scope, metric) -> value, daily series points
        included as (scope, "<metric>@<day>") like the engine's."""
        hashes = await self.retrying(lambda: self._read_hashes(self.keys.metrics_pattern()))
        series = await self.retrying(lambda: self._read_hashes(self.keys.series_pattern()))
        out = {
            (self.keys.scope_of(key), metric): int(value)
            for key, fields in hashes.items()
            for metric, value in fields.items()
        }
        for key, fields in series.items():
            scope, metric = self.keys.series_of(key)
            out.update({(scope, f"{metric}@{day}"): int(value) for day, value in fields.items()})
        return out

    async def read_leaderboard(self, metric: str, top: int = 10) -> list[tuple[str, int]]:
        """The partners with the highest `metric`, highest first."""
        board = self.keys.leaderboard(metric)
        raw: list[Any] = await self.retrying(
            lambda: self.client.zrevrange(board, 0, top - 1, withscores=True)
        )
        return [(_text(member), int(score)) for member, score in raw]

    async def read_credits(self) -> dict[str, dict[str, Fraction]]:
        """Subject -> touch id -> credit, for every subject with credit."""
        hashes = await self.retrying(lambda: self._read_hashes(self.keys.credit_pattern()))
        return {
            self.keys.subject_of(key): {
                touch: _fraction(orjson.loads(line)["credit"]) for touch, line in fields.items()
            }
            for key, fields in hashes.items()
            if fields
        }

    async def read_credit_lines(self, subject: str) -> dict[str, CreditLine]:
        """One subject's credit breakdown, as published."""
        raw = await self.retrying(lambda: self.client.hgetall(self.keys.credit(subject)))
        return {_text(t): _parse_line(_text(line)) for t, line in raw.items()}

    async def read_offsets(self) -> dict[tuple[str, int], int]:
        """(topic, partition) -> highest applied offset, for "wait until applied"."""
        raw = await self.retrying(lambda: self.client.hgetall(self.keys.offsets))
        out: dict[tuple[str, int], int] = {}
        for name, value in raw.items():
            topic, _, partition = _text(name).rpartition("|")
            out[(topic, int(partition))] = int(value)
        return out

    async def outbox_length(self) -> int:
        """Outbox entries not yet forwarded to Kafka."""
        return int(await self.retrying(lambda: self.client.xlen(self.keys.outbox)))

    async def delete_all(self) -> int:
        """Remove every key under this sink's prefix (a finished replay run's)."""
        keys = [k async for k in self.client.scan_iter(match=self.keys.all_pattern(), count=1000)]
        for i in range(0, len(keys), 500):
            await self.client.unlink(*keys[i : i + 500])
        return len(keys)

    async def _read_hashes(self, pattern: str) -> dict[str, dict[str, str]]:
        keys = [_text(k) async for k in self.client.scan_iter(match=pattern, count=1000)]
        out: dict[str, dict[str, str]] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            async with self.client.pipeline(transaction=False) as pipe:
                for key in chunk:
                    pipe.hgetall(key)
                replies = await pipe.execute()
            for key, raw in zip(chunk, replies, strict=True):
                out[key] = {_text(f): _text(v) for f, v in raw.items()}
        return out


# --- encoding -----------------------------------------------------------------


def _state_entries(states: Sequence[StateWrite]) -> tuple[list[list[Any]], list[bytes]]:
    """The script's state writes (``["h", key, field, ARGV index]`` or ``["s", key,
    member]``) and the values they refer to, passed as ARGV[4], ARGV[5], ...
    (binary-safe, outside the JSON)."""
    entries: list[list[Any]] = []
    values: list[bytes] = []
    for write in states:
        if isinstance(write, HashWrite):
            values.append(write.value)
            entries.append(["h", write.key, write.field, len(values) + 3])
        else:
            entries.append(["s", write.key, write.member])
    return entries, values


def _tp(tp: tuple[str, int]) -> str:
    return f"{tp[0]}|{tp[1]}"


def _exact(value: int) -> int:
    if not -MAX_EXACT < value < MAX_EXACT:
        raise ValueError(f"{value} is too large for the Redis sink (|value| < 2**53)")
    return value


def _encode_subject(
    subject: str, new: Published, cause: str, base: Published | None = None
) -> tuple[list[Any], dict[tuple[str, str], int]]:
    """The script's entry for one subject, and the metric deltas it leaves to the
    call's sum, by (escaped scope, metric): none without a `base` (the script
    diffs).

    The entry is [subject key part, metrics JSON text, [[touch id, line JSON
    text], ...], cause], and with a base its metrics digest as a fifth item; the
    metrics, and the lines, are then false where they equal the base's.
    """
    if base is None:
        return [escape_named(subject), new.metrics, new.lines, cause], {}
    deltas = _row_deltas(new.metrics, base.metrics)
    digest = hashlib.sha1(base.metrics.encode()).hexdigest()  # noqa: S324
    entry = [
        escape_named(subject),
        new.metrics if deltas else False,
        new.lines if new.lines != base.lines else False,
        cause,
        digest,
    ]
    return entry, deltas


def _row_deltas(new: str, old: str) -> dict[tuple[str, str], int]:
    """`new` minus `old`, two metrics texts, by (escaped scope, metric); no zeros."""
    deltas: dict[tuple[str, str], int] = {(s, m): v for s, m, v in _rows(new)}
    for scope, metric, value in _rows(old):
        key = (scope, metric)
        delta = deltas.get(key, 0) - value
        if delta:
            deltas[key] = delta
        else:
            del deltas[key]
    return deltas


def _rows(metrics: str) -> list[list[Any]]:
    return orjson.loads(metrics) if metrics else []


def _metrics_json(contribution: Contribution) -> str:
    """The metrics as the script stores them (``pp:contrib:<subject>``); "" for none."""
    rows = _metric_rows(contribution.metrics)
    return orjson.dumps(rows).decode() if rows else ""


def _metric_rows(metrics: Mapping[MetricKey, int]) -> list[tuple[str, str, int]]:
    """(encoded scope, metric, value) of the non-zero `metrics`, sorted: one text per
    set of metrics, whatever the dict's order."""
    return sorted(
        (escape_named(scope), metric, _exact(value))
        for (scope, metric), value in metrics.items()
        if value
    )


def _line_json(line: CreditLine) -> str:
    credit = line.credit
    return orjson.dumps(
        {
            "credit": f"{credit.numerator}/{credit.denominator}",
            "units": _exact(line.units),
            "positions": list(line.positions),
            "scopes": list(line.scopes),
            "ts": line.ts,
        }
    ).decode()


def _fraction(text: str) -> Fraction:
    num, _, den = text.partition("/")
    return Fraction(int(num), int(den or "1"))


def _parse_line(text: str) -> CreditLine:
    raw = orjson.loads(text)
    return CreditLine(
        _fraction(raw["credit"]),
        int(raw["units"]),
        tuple(raw["scopes"]),
        tuple(raw["positions"]),
        int(raw["ts"]),
    )


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _collect(result: SinkResult, reply: Any) -> None:
    """Fold one script reply into `result`; credit deltas are computed here, exactly."""
    changes, credit_changes, counted, entry, outbox = reply
    result.calls += 1
    result.dead_letters += int(counted)
    if entry:
        result.stream_ids.append(_text(entry))
    if outbox:
        result.outbox_ids.append(_text(outbox))
    result.metrics.extend(metric_updates(changes))
    result.credits.extend(credit_deltas(credit_changes))


# --- decoding the script's changes (its reply, and the outbox entries) ------------


def metric_updates(changes: Iterable[Sequence[Any]]) -> list[MetricUpdate]:
    """The script's metric changes ``[scope (encoded), metric, value, delta]``, decoded."""
    return [
        MetricUpdate(unescape_named(_text(scope)), _text(metric), int(value), int(delta))
        for scope, metric, value, delta in changes
    ]


def credit_deltas(credit_changes: Iterable[Sequence[Any]]) -> list[CreditDelta]:
    """Exact credit deltas of the script's credit changes.

    Each change is ``[subject (encoded), touch id, old line, new line, cause]``,
    a line being its JSON text or None/False when absent (None in a script
    reply, false in an outbox entry), the cause the event id behind the
    change.  The deltas are `models.subject.diff`'s: one delta when the
    line's scopes stayed, else a retraction of the old line and the new line.
    """
    out: list[CreditDelta] = []
    for esc_subject, touch_id, old, new, cause in credit_changes:
        subject, touch = unescape_named(_text(esc_subject)), _text(touch_id)
        before = Contribution({}, {touch: _parse_line(_text(old))}) if old else EMPTY
        after = Contribution({}, {touch: _parse_line(_text(new))}) if new else EMPTY
        out.extend(diff(subject, before, after, _text(cause)).credits)
    return out
