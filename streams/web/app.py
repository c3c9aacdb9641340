"""The live dashboard: a read-only HTTP server over the Redis keys the sink writes.

`create_app(redis, prefix)` serves the page (`streams/static/`, the charting
library vendored there so it works offline), a JSON API and a server-sent
events stream.  It only ever reads Redis: there is no route that writes, and
any method other than GET is answered 405 before routing, so the worker's
effectively-once state cannot be disturbed from a browser.

Live updates follow the capped stream ``<prefix>changes`` that `sinks/apply.lua`
appends to (one entry per changing batch, field ``changes``: a JSON list of
``{"scope", "metric", "value", "delta"}`` with *absolute* new values).  Each SSE
client reads it with its own ``XREAD`` from its last entry id, so a reconnecting
browser resumes exactly where it stopped (``Last-Event-ID``); the stream rather
than the pub/sub channel, because pub/sub drops whatever is published while a
client is reconnecting.  When entries a client has not seen may have been
trimmed away, it gets a ``reset`` event and reloads the snapshot.

Every key part built from a request (scope, subject, metric) goes through
`sinks.keys` escaping, exactly as the sink builds them, so a request can only
name keys of the shapes below its prefix.  See docs/api.md.

Who may connect (Host allow-list, optional token) is `streams.web.access`;
the tables the page shows, with their CSV, are `streams.web.tables`.  This
process imports no worker, processing or embedded-broker code: it only reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import re
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, Final

import orjson
from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from models.derived import by_scope, derive
from models.events import to_micros
from models.periods import (
    Bucket,
    Calendar,
    Window,
    bucketed,
    series_point,
    window_totals,
    without_points,
)
from models.report import to_csv
from models.subject import MetricKey
from sinks.keys import escape, glob_escape, unescape_named
from sinks.redis_sink import RedisSink, SinkUnavailableError
from streams.settings import Settings
from streams.web import tables
from streams.web.access import Access, access_middleware, login, login_form

__all__ = ["STATIC_DIR", "Options", "create_app", "serve"]

STATIC_DIR: Final = Path(str(resources.files("streams").joinpath("static")))

MAX_NAME: Final = 512
"""Longest scope, subject or metric a request may name (bytes of the raw text)."""
MAX_LIMIT: Final = 500
"""Most rows one list request returns (leaderboards, subjects)."""
SSE_BLOCK_MS: Final = 5_000
"""How long one XREAD waits; a keep-alive comment goes out when nothing came."""
SSE_BATCH: Final = 200
READ_WAIT: Final = 3.0
"""Seconds the sink's own readers (offsets, credit lines) retry before a 503."""

_ENTRY_ID: Final = re.compile(r"\d{1,20}-\d{1,20}")
_SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

_BUCKETS: Final = ("day", "week", "month", "quarter")


@dataclass(frozen=True, slots=True)
class Options:
    """What the dashboard needs beside Redis: who may connect, the fiscal calendar
    (periods, quarters) and the reporting currency (money's unit in tables)."""

    access: Access = field(default_factory=Access)
    calendar: Calendar = field(default_factory=Calendar)
    currency: str = "USD"

    @classmethod
    def from_settings(cls, settings: Settings, bind_host: str | None = None) -> Options:
        """The options `PP_*` settings give (`bind_host`: the address served on)."""
        return cls(
            Access.from_settings(settings, bind_host),
            Calendar(settings.fiscal_year_start),
            settings.engine.reporting_currency,
        )


TOTALS_TTL: Final = 1.0
"""Seconds one full read of the totals serves the table requests that follow: the
page asks for its eight tables at once, and again after every burst of changes.
The page reloads 1.5 s after a change, later than this, so it never gets a read
older than the change it follows."""

_SINK: Final = web.AppKey("sink", RedisSink)
_TOTALS: Final = web.AppKey[list[tuple[float, asyncio.Task[dict[MetricKey, int]]]]]("totals")
_OPTIONS: Final = web.AppKey("options", Options)
_SSE_TASKS: Final = web.AppKey[set[asyncio.Task[Any]]]("sse_tasks")
_MAX_SSE: Final = web.AppKey("max_sse", int)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(
    redis: Redis,
    prefix: str,
    *,
    options: Options | None = None,
    max_sse_clients: int = 64,
    read_wait: float = READ_WAIT,
) -> web.Application:
    """The dashboard application on `redis` under key `prefix` (e.g. ``pp:``).

    `redis` must use a socket timeout longer than `SSE_BLOCK_MS` (the sink's
    clients use 30 s).  The caller owns it and closes it.
    """
    options = options or Options()
    guard = access_middleware(options.access, _unauthorized)
    app = web.Application(client_max_size=1024, middlewares=[_headers, guard, _read_only])
    app[_SINK] = RedisSink(redis, prefix=prefix, max_wait=read_wait)
    app[_OPTIONS] = options
    app[_TOTALS] = []
    app[_SSE_TASKS] = set()
    app[_MAX_SSE] = max_sse_clients
    routes = {
        "/": _index,
        "/partner/{partner}": _index,
        "/healthz": _healthz,
        "/favicon.ico": _favicon,
        "/login": _login,
        "/api/periods": _periods,
        "/api/table": _table,
        "/api/scopes": _scopes,
        "/api/metrics": _metrics,
        "/api/derived": _derived,
        "/api/series": _series,
        "/api/leaderboard": _leaderboard,
        "/api/subjects": _subjects,
        "/api/credits": _credits,
        "/api/dq": _dq,
        "/api/status": _status,
        "/api/events": _events,
    }
    for path, handler in routes.items():
        app.router.add_get(path, handler, allow_head=False)
    app.router.add_post("/login", _login)
    app.router.add_static("/static/", STATIC_DIR, follow_symlinks=False, append_version=False)
    app.on_shutdown.append(_close_event_streams)
    return app


@contextlib.asynccontextmanager
async def serve(
    redis: Redis,
    prefix: str,
    host: str = "127.0.0.1",
    port: int = 6066,
    options: Options | None = None,
) -> AsyncIterator[str]:
    """Run the dashboard until the block exits; yields its URL.

    Loopback by default: the data is commercial.  `options` None: no token,
    the loopback names (and `host`) allowed, a January fiscal year.  Port 0
    picks a free port (the URL tells which).  aiohttp's defaults cap the
    request line and each header at 8190 bytes and the number of headers at
    128; `create_app` caps bodies at 1 KiB.
    """
    options = options or Options()
    options = Options(options.access.binding(host), options.calendar, options.currency)
    runner = web.AppRunner(create_app(redis, prefix, options=options), shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    try:
        bound = runner.addresses[0][1]
        shown = f"[{host}]" if ":" in host else host
        yield f"http://{shown}:{bound}/"
    finally:
        await runner.cleanup()


# --- middleware -----------------------------------------------------------------


@web.middleware
async def _read_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Only GET exists (and the login form's POST): 405 to anything else before routing."""
    if request.method != "GET" and (request.method, request.path) != ("POST", "/login"):
        raise web.HTTPMethodNotAllowed(request.method, ["GET"])
    return await handler(request)


@web.middleware
async def _headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Security headers on every answer; Redis outages become 503, not 500."""
    try:
        response = await handler(request)
    except (SinkUnavailableError, RedisConnectionError, RedisTimeoutError):
        response = _json({"error": "redis unavailable"}, status=503)
    except web.HTTPException as exc:
        exc.headers.update(_SECURITY_HEADERS)
        raise
    if not response.prepared:
        response.headers.update(_SECURITY_HEADERS)
    return response


# --- handlers -------------------------------------------------------------------


async def _index(request: web.Request) -> web.StreamResponse:
    """The page: the overview, or a partner's (its script reads the path)."""
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


async def _favicon(request: web.Request) -> web.StreamResponse:
    """Browsers ask for /favicon.ico whatever the page links; without it, a 404 on every load."""
    return web.FileResponse(STATIC_DIR / "favicon.svg", headers={"Content-Type": "image/svg+xml"})


async def _healthz(request: web.Request) -> web.Response:
    """Liveness for probes: 200 when Redis answers (503 otherwise); no data, no token."""
    await request.app[_SINK].client.ping()
    return _json({"status": "ok"})


async def _login(request: web.Request) -> web.StreamResponse:
    return await login(request, request.app[_OPTIONS].access)


def _unauthorized(request: web.Request) -> web.Response:
    """401: the login form for a browser (back to this page after it), JSON otherwise."""
    if "text/html" in request.headers.get("Accept", ""):
        return login_form(request.path_qs)
    headers = {"WWW-Authenticate": 'Bearer realm="partnerpulse"', "Cache-Control": "no-store"}
    body = orjson.dumps({"error": "unauthorized: send Authorization: Bearer <PP_WEB_TOKEN>"})
    return web.Response(body=body, status=401, content_type="application/json", headers=headers)


async def _periods(request: web.Request) -> web.Response:
    """The period selector's presets, computed with the fiscal calendar (so the
    browser never re-implements it), each with the period it is compared with."""
    calendar = request.app[_OPTIONS].calendar
    today = datetime.now(UTC).date()
    presets: list[dict[str, Any]] = [
        {"id": "all", "label": "All time", "from": None, "to": None, "previous": None}
    ]
    for key, label, window in _presets(calendar, today):
        before = calendar.previous(window)
        presets.append(
            {
                "id": key,
                "label": label,
                "from": window.first.isoformat(),
                "to": window.last.isoformat(),
                "previous": {"from": before.first.isoformat(), "to": before.last.isoformat()},
            }
        )
    return _json(
        {"today": today.isoformat(), "fiscal_year_start": calendar.start_month, "presets": presets}
    )


def _presets(calendar: Calendar, today: date) -> list[tuple[str, str, Window]]:
    """This quarter, last quarter, quarter to date, year to date, trailing 12 months."""
    quarter = calendar.quarter_of(today)
    last = calendar.previous(quarter)
    fiscal_year, number = calendar.fiscal_quarter(today)
    last_year, last_number = calendar.fiscal_quarter(last.first)
    try:
        year_ago = today.replace(year=today.year - 1)
    except ValueError:  # 29 February
        year_ago = today.replace(year=today.year - 1, day=28)
    return [
        ("this_quarter", f"This quarter ({fiscal_year}Q{number})", quarter),
        ("last_quarter", f"Last quarter ({last_year}Q{last_number})", last),
        ("qtd", "Quarter to date", Window(quarter.first, today)),
        ("ytd", f"Year to date (FY{fiscal_year})", Window(calendar.year(fiscal_year).first, today)),
        ("t12m", "Trailing 12 months", Window(year_ago + timedelta(days=1), today)),
    ]


async def _table(request: web.Request) -> web.StreamResponse:
    """One of the page's tables (`streams.web.tables`) over a window, as JSON or CSV.

    Windowed, each row also carries the previous period's values
    (`Calendar.previous`).  Reads every metrics and series hash (SCAN).
    """
    name = request.query.get("name", "")
    if name not in tables.NAMES:
        raise web.HTTPBadRequest(text=f"name must be one of {', '.join(tables.NAMES)}")
    options = request.app[_OPTIONS]
    window = _window(request, options.calendar)
    totals = await _totals(request.app)
    now = to_micros(datetime.now(UTC))
    table = tables.build(name, totals, window, now)
    partner = request.query.get("partner")
    if partner:
        tables.only_partner(table, _name(partner, "partner"))
    table["currency"] = options.currency
    table["window"] = _window_json(window)
    table["previous_window"] = None
    if window is not None and name not in tables.OWN_PERIODS:
        before = options.calendar.previous(window)
        previous = tables.build(name, totals, before, now)
        tables.with_previous(table, tables.only_partner(previous, partner) if partner else previous)
        table["previous_window"] = _window_json(before)
    if _wants_csv(request):
        return _csv_response(to_csv(table), name)
    return _json(table)


async def _scopes(request: web.Request) -> web.Response:
    """Every scope that has a metrics hash, sorted (``all`` first)."""
    sink = request.app[_SINK]
    scopes = await _scan_scopes(sink)
    return _json({"scopes": scopes})


async def _metrics(request: web.Request) -> web.Response:
    """Metric hashes of the scopes asked for (``scope=`` repeated), or of every scope.

    ``cursor`` is the changes stream's last entry id read *before* the
    hashes: following the stream from there misses nothing, and replaying
    an entry already reflected is harmless (entries carry absolute values).
    """
    sink = request.app[_SINK]
    calendar = request.app[_OPTIONS].calendar
    window = _window(request, calendar)
    asked = [_name(v, "scope") for v in request.query.getall("scope", [])]
    names = [_name(v, "metric") for v in request.query.getall("metric", [])]
    scopes = asked or await _scan_scopes(sink)
    if window is None:
        cursor, hashes = await _read(sink, [sink.keys.metrics(s) for s in scopes])
        metrics = {
            s: {m: _number(v) for m, v in sorted(h.items()) if not names or m in names}
            for s, h in zip(scopes, hashes, strict=True)
        }
        if _wants_csv(request):
            rows = [(s, m, v) for s, h in metrics.items() for m, v in h.items()]
            return _csv_response(_csv(("scope", "metric", "value"), rows), "metrics")
        return _json({"cursor": cursor, "metrics": metrics})
    cursor, points = await _read_points(sink, scopes, names)
    before = calendar.previous(window)
    now, then = (by_scope(without_points(window_totals(points, w))) for w in (window, before))
    if _wants_csv(request):
        changes = [
            (s, m, now.get(s, {}).get(m, 0), then.get(s, {}).get(m, 0))
            for s in scopes
            for m in sorted(set(now.get(s, {})) | set(then.get(s, {})))
        ]
        return _csv_response(_csv(("scope", "metric", "value", "previous"), changes), "metrics")
    return _json(
        {
            "cursor": cursor,
            "window": _window_json(window),
            "metrics": {s: now.get(s, {}) for s in scopes},
            "previous": {
                "window": _window_json(before),
                "metrics": {s: then.get(s, {}) for s in scopes},
            },
        }
    )


async def _read_points(
    sink: RedisSink, scopes: Sequence[str], names: Sequence[str]
) -> tuple[str, dict[MetricKey, int]]:
    """The changes cursor and every daily point of `names` (else of the metrics the
    scopes hold) as ``(scope, "<metric>@<day>") -> value``.

    With `names` given it is one pipelined round trip whatever the number of
    scopes and metrics; without, the scopes' totals are read first to learn
    which metrics they have.
    """
    if names:
        pairs = [(s, m) for s in scopes for m in names]
    else:
        _, hashes = await _read(sink, [sink.keys.metrics(s) for s in scopes])
        pairs = [(s, m) for s, h in zip(scopes, hashes, strict=True) for m in sorted(h)]
    cursor, series = await _read(sink, [sink.keys.series(s, m) for s, m in pairs])
    points = {
        (s, series_point(m, day)): int(v)
        for (s, m), days in zip(pairs, series, strict=True)
        for day, v in days.items()
    }
    return cursor, points


async def _derived(request: web.Request) -> web.Response:
    """Rates and ratios of every scope (`models.derived`, as `report` computes them).

    Goal pace is as of now (wall clock), the moment a dashboard shows.
    """
    totals = await _totals(request.app)
    now = datetime.now(UTC)
    return _json({"as_of": now.isoformat(), "derived": derive(by_scope(totals), to_micros(now))})


async def _series(request: web.Request) -> web.Response:
    """Series ``<prefix>d:<scope>:<metric>`` summed per bucket (first day of each),
    within the window if one is asked for, ordered by day."""
    sink = request.app[_SINK]
    calendar = request.app[_OPTIONS].calendar
    scope = _name(_required(request, "scope"), "scope")
    metric = _name(_required(request, "metric"), "metric")
    bucket = request.query.get("bucket", "day")
    if bucket not in _BUCKETS:
        raise web.HTTPBadRequest(text=f"bucket must be one of {', '.join(_BUCKETS)}")
    window = _window(request, calendar)
    raw = _decode(await sink.client.hgetall(sink.keys.series(scope, metric)))
    size: Bucket = bucket  # type: ignore[assignment]  # checked against _BUCKETS above
    summed = bucketed(((d, int(v)) for d, v in raw.items()), calendar, size, window)
    points = [[day, value] for day, value in summed.items()]
    if _wants_csv(request):
        return _csv_response(_csv((bucket, metric), points), "series")
    return _json(
        {
            "scope": scope,
            "metric": metric,
            "bucket": bucket,
            "window": _window_json(window),
            "points": points,
        }
    )


async def _leaderboard(request: web.Request) -> web.Response:
    """Sorted set ``<prefix>lb:<metric>``: partners by metric, highest first."""
    sink = request.app[_SINK]
    metric = _name(_required(request, "metric"), "metric")
    limit = _limit(request, 20)
    key = f"{sink.keys.prefix}lb:{escape(metric)}"
    rows: Any = await sink.client.zrevrange(key, 0, limit - 1, withscores=True)
    entries = [
        {"member": _member(m), "value": int(score) if float(score).is_integer() else score}
        for m, score in rows
    ]
    return _json({"metric": metric, "entries": entries})


async def _subjects(request: web.Request) -> web.Response:
    """Up to ``limit`` subjects of one kind that have a credit breakdown (unordered);
    with ``partner=<id>``, only those where a touchpoint of that partner has credit."""
    sink = request.app[_SINK]
    kind = request.query.get("kind", "opportunity")
    if kind not in {"opportunity", "lead"}:
        raise web.HTTPBadRequest(text="kind must be opportunity or lead")
    limit = _limit(request, 50)
    partner = request.query.get("partner")
    scope = f"partner:{_name(partner, 'partner')}" if partner else None
    pattern = glob_escape(sink.keys.credit_prefix + kind + ":") + "*"

    async def scan() -> list[str]:
        found: list[str] = []
        chunk: list[str] = []
        async for key in sink.client.scan_iter(match=pattern, count=1000):
            chunk.append(_text(key))
            if scope is None or len(chunk) >= 200:
                found += await _credited(sink, chunk, scope)
                chunk = []
            if len(found) >= limit:
                return found[:limit]
        return (found + await _credited(sink, chunk, scope))[:limit]

    return _json({"kind": kind, "subjects": sorted(await scan())})


async def _credited(sink: RedisSink, keys: list[str], scope: str | None) -> list[str]:
    """The subjects of credit `keys` where `scope` has a touchpoint (None: all of them)."""
    if scope is None or not keys:
        return [sink.keys.subject_of(k) for k in keys]
    _, hashes = await _read(sink, keys)
    return [
        sink.keys.subject_of(key)
        for key, lines in zip(keys, hashes, strict=True)
        if any(scope in orjson.loads(line)["scopes"] for line in lines.values())
    ]


async def _credits(request: web.Request) -> web.Response:
    """One subject's credit breakdown: why each touchpoint (and so each partner) got credit."""
    sink = request.app[_SINK]
    subject = _name(_required(request, "subject"), "subject")
    lines = await sink.read_credit_lines(subject)
    touchpoints: list[dict[str, Any]] = [
        {
            "touch": touch,
            "credit": f"{line.credit.numerator}/{line.credit.denominator}",
            "share": round(float(line.credit), 6),
            "units": line.units,
            "positions": list(line.positions),
            "scopes": list(line.scopes),
            "ts": line.ts,
        }
        for touch, line in sorted(lines.items(), key=lambda kv: (kv[1].ts, kv[0]))
    ]
    if _wants_csv(request):
        head = ("touch", "credit", "share", "units", "positions", "scopes", "ts")
        rows = [
            [tp[h] if not isinstance(tp[h], list) else " ".join(tp[h]) for h in head]
            for tp in touchpoints
        ]
        return _csv_response(_csv(head, rows), "credits")
    return _json({"subject": subject, "touchpoints": touchpoints})


async def _dq(request: web.Request) -> web.Response:
    """Data-quality counters (``dq.*`` of scope ``all``), dead letters by reason included."""
    sink = request.app[_SINK]
    raw = await sink.client.hgetall(sink.keys.metrics("all"))
    counters = {m: _number(v) for m, v in sorted(_decode(raw).items()) if m.startswith("dq.")}
    return _json({"counters": counters})


async def _status(request: web.Request) -> web.Response:
    """Applied offsets per partition and the changes stream's last entry id."""
    sink = request.app[_SINK]
    offsets = await sink.read_offsets()
    cursor = await _last_entry_id(sink)
    return _json(
        {
            "cursor": cursor,
            "applied": {f"{t}|{p}": o for (t, p), o in sorted(offsets.items())},
            "server_time": time.time(),
        }
    )


async def _events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: every changes-stream entry after ``Last-Event-ID`` / ``since``."""
    app = request.app
    sink = app[_SINK]
    tasks = app[_SSE_TASKS]
    if len(tasks) >= app[_MAX_SSE]:
        raise web.HTTPServiceUnavailable(text="too many live clients")
    since = request.headers.get("Last-Event-ID") or request.query.get("since")
    if since is not None and not _ENTRY_ID.fullmatch(since):
        raise web.HTTPBadRequest(text="since / Last-Event-ID must be a stream entry id")
    task = asyncio.current_task()
    assert task is not None
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            **_SECURITY_HEADERS,
        }
    )
    await response.prepare(request)
    tasks.add(task)
    try:
        last = since or await _last_entry_id(sink)
        if since is not None and await _trimmed_past(sink, since):
            await response.write(b"event: reset\ndata: {}\n\n")
            return response
        await response.write(b"retry: 2000\n\n")
        key = sink.keys.changes
        while True:
            reply: Any = await sink.client.xread({key: last}, count=SSE_BATCH, block=SSE_BLOCK_MS)
            if not reply:
                await response.write(b": keep-alive\n\n")
                continue
            for entry_id, fields in reply[0][1]:
                last = _text(entry_id)
                await response.write(_sse(last, _decode(fields).get("changes", "[]")))
    except (ConnectionResetError, asyncio.CancelledError):
        return response
    finally:
        tasks.discard(task)


async def _close_event_streams(app: web.Application) -> None:
    """On shutdown, end the open event streams (they would otherwise block it)."""
    tasks = app[_SSE_TASKS]
    for task in tuple(tasks):
        task.cancel()


# --- helpers --------------------------------------------------------------------


def _sse(entry_id: str, data: str) -> bytes:
    lines = "".join(f"data: {line}\n" for line in data.splitlines() or [""])
    return f"id: {entry_id}\nevent: changes\n{lines}\n".encode()


async def _last_entry_id(sink: RedisSink) -> str:
    """The id of the newest entry of the changes stream; ``0-0`` when it is empty."""
    rows: Any = await sink.client.xrevrange(sink.keys.changes, count=1)
    return _text(rows[0][0]) if rows else "0-0"


async def _trimmed_past(sink: RedisSink, since: str) -> bool:
    """Whether entries after `since` may have been trimmed away before this client read them.

    The stream is only trimmed from its oldest end, so nothing after `since`
    is missing while the oldest entry kept is at or before `since`.  When it
    is newer (or the stream is empty but has grown past `since`), entries in
    between may have existed: True, unless Redis 7's ``entries-added`` shows
    that nothing was ever removed.  A wrong True costs the client one
    snapshot reload, never a missed change.
    """
    try:
        raw: Any = await sink.client.xinfo_stream(sink.keys.changes)
    except ResponseError:  # no stream yet: nothing was ever trimmed
        return False
    info = {_text(k): v for k, v in raw.items()}
    if info.get("entries-added") == info["length"]:
        return False
    first = info.get("first-entry")
    newest = _text(first[0]) if first else _text(info["last-generated-id"])
    return _id_tuple(newest) > _id_tuple(since)


def _id_tuple(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


async def _scan_scopes(sink: RedisSink) -> list[str]:
    async def scan() -> list[str]:
        pattern = sink.keys.metrics_pattern()
        return [sink.keys.scope_of(_text(k)) async for k in sink.client.scan_iter(match=pattern)]

    scopes = await scan()
    return sorted(set(scopes), key=lambda s: (s != "all", s))


async def _totals(app: web.Application) -> dict[MetricKey, int]:
    """Every running total and series point (`RedisSink.read_metrics`: SCAN), shared by
    the requests of the next `TOTALS_TTL` seconds: concurrent ones await the same read."""
    cache = app[_TOTALS]
    now = time.monotonic()
    if (
        not cache
        or now - cache[0][0] > TOTALS_TTL
        or (cache[0][1].done() and cache[0][1].exception() is not None)
    ):
        cache[:] = [(now, asyncio.ensure_future(app[_SINK].read_metrics()))]
    return await asyncio.shield(cache[0][1])


async def _read(sink: RedisSink, keys: Sequence[str]) -> tuple[str, list[dict[str, str]]]:
    """The changes cursor, then every hash of `keys`: one pipelined round trip.

    The cursor is read first in the pipeline (commands run in order), so
    following the stream from it misses nothing that the hashes lack.
    """
    async with sink.client.pipeline(transaction=False) as pipe:
        pipe.xrevrange(sink.keys.changes, count=1)
        for key in keys:
            pipe.hgetall(key)
        rows, *replies = await pipe.execute()
    return (_text(rows[0][0]) if rows else "0-0"), [_decode(r) for r in replies]


def _window(request: web.Request, calendar: Calendar) -> Window | None:
    """``period=2026Q3`` (or a month, a year), or ``from=`` and ``to=`` (inclusive
    ISO days); neither: None (all time)."""
    period, first, last = (request.query.get(k) for k in ("period", "from", "to"))
    try:
        if period:
            return calendar.period(period)
        if first and last:
            return Window(date.fromisoformat(first), date.fromisoformat(last))
    except ValueError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    if first or last:
        raise web.HTTPBadRequest(text="give both from and to (inclusive days), or period")
    return None


def _window_json(window: Window | None) -> dict[str, str] | None:
    if window is None:
        return None
    return {"from": window.first.isoformat(), "to": window.last.isoformat()}


def _wants_csv(request: web.Request) -> bool:
    fmt = request.query.get("format", "json")
    if fmt not in {"json", "csv"}:
        raise web.HTTPBadRequest(text="format must be json or csv")
    return fmt == "csv"


def _csv(head: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(head)
    writer.writerows(rows)
    return out.getvalue()


def _csv_response(text: str, name: str) -> web.Response:
    return web.Response(
        text=text,
        content_type="text/csv",
        charset="utf-8",
        headers={
            "Cache-Control": "no-store",
            "Content-Disposition": f'attachment; filename="partnerpulse-{name}.csv"',
        },
    )


def _required(request: web.Request, name: str) -> str:
    value = request.query.get(name)
    if not value:
        raise web.HTTPBadRequest(text=f"query parameter {name!r} is required")
    return value


def _name(value: str, what: str) -> str:
    if len(value.encode()) > MAX_NAME:
        raise web.HTTPBadRequest(text=f"{what} longer than {MAX_NAME} bytes")
    return value


def _limit(request: web.Request, default: int) -> int:
    try:
        limit = int(request.query.get("limit", default))
    except ValueError:
        raise web.HTTPBadRequest(text="limit must be an integer") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise web.HTTPBadRequest(text=f"limit must be within 1..{MAX_LIMIT}")
    return limit


def _member(raw: bytes | str) -> str:
    """A leaderboard member as the sink wrote it, decoded when it is an escaped name."""
    text = _text(raw)
    try:
        return unescape_named(text)
    except ValueError:
        return text


def _number(value: str) -> int | float | str:
    """Integers as integers; decimal strings (rates) as floats; anything else as text."""
    try:
        return int(value)
    except ValueError:
        pass
    try:
        number = float(value)
    except ValueError:
        return value
    return int(number) if number.is_integer() else number


def _decode(raw: Mapping[Any, Any]) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in raw.items()}


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(body),
        status=status,
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def main() -> None:
    """``python -m streams.web``: the dashboard alone (the compose file's service).

    Reads ``PP_REDIS_URL`` (required), ``PP_REDIS_PASSWORD``, ``PP_KEY_PREFIX``,
    ``PP_WEB_HOST``, ``PP_WEB_PORT``, ``PP_WEB_TOKEN`` and
    ``PP_WEB_ALLOWED_HOSTS``; runs until SIGINT or SIGTERM.
    """
    settings = Settings()
    if settings.redis_url is None:
        raise SystemExit("set PP_REDIS_URL to the Redis the workers write to")
    redis_url = settings.redis_url
    try:
        options = Options.from_settings(settings)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        sink = settings.redis_sink(redis_url)
        try:
            async with serve(
                sink.client, settings.key_prefix, settings.web_host, settings.web_port, options
            ) as url:
                print(f"dashboard: {url}", flush=True)
                await stop.wait()
        finally:
            await sink.close()

    asyncio.run(run())
