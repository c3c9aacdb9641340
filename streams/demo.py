"""`partnerpulse demo`: broker, one worker, a steady event feed and the dashboard, live.

The demo lives in the present, so "this quarter", "quarter to date" and goal
pace show something.  Its feed has two parts:

- the *history*: one synthetic world (`datagen`) from about six
  months ago to the end of the current fiscal quarter, with quarterly goals
  set against what the world achieves, of which only what happened by now is
  sent, at once (ids prefixed ``h-``);
- the *live* feed: one fresh world (*epoch*) after another, ids prefixed
  ``r<epoch>-``, stamped with the wall clock as each event is sent, so it
  arrives in real time.  Its campaigns are its own (renamed where the history
  used the name) and have no goals (their periods would belong to the epoch's
  own calendar); 1 % of its touches land on the history's running campaigns
  instead, so the current quarter's goals move while one watches without pace
  running away in a long session.

Both carry a few duplicates and malformed lines, and the history a little
shuffling, so the data-quality counters move too.

It runs as an isolated `replay_run` (its own topics, consumer group and Redis
key prefix, removed on exit unless kept), so a demo never mixes with other
data on a shared Redis, and reuses its worker supervision.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import signal
import webbrowser
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import orjson
from rich.console import Console
from rich.live import Live
from rich.text import Text

from datagen import SyntheticConfig, generate
from models.config import DEFAULT_NAMING
from models.periods import Calendar
from streams.runtime import ReplayRun, destination, input_producer, replay_run, sink_for
from streams.settings import Settings
from streams.web import Options, serve

__all__ = [
    "HistoryCampaigns",
    "Progress",
    "applied_count",
    "demo_feed",
    "history_events",
    "live_stream",
    "recorded",
    "run_demo",
]

Clock = Callable[[], datetime]
EPOCH_LEADS: Final = 1000
EPOCH_DAYS: Final = 60
HISTORY_DAYS: Final = 183
"""About six months: the whole previous quarter and more, whatever day of the quarter it is."""
RUNNING_DAYS: Final = 14
"""History campaigns touched in their last this many days are running: live touches go there."""
ID_FIELDS: Final = ("event_id", "lead_id", "opportunity_id", "account_id", "referral_id")
"""Fields naming a subject or event: prefixed per world (campaigns and partners are shared)."""
TICK: Final = 0.05
RUNNING_PERCENT: Final = 1
"""Live touches landing on the history's running campaigns, in %: enough to move
their goals while one watches (measured: about +4 % a minute of the current
quarter's influenced leads at the default rate), not so much that pace runs
away in a long session."""
_NAMING: Final = re.compile(DEFAULT_NAMING)


def wall_clock() -> datetime:
    return datetime.now(UTC)


def _renamed(item: dict[str, object] | str, tag: str) -> dict[str, object] | str:
    """`item` with its ids prefixed by `tag` (malformed lines pass through as they are)."""
    if isinstance(item, str):
        return item
    for name in ID_FIELDS:
        if isinstance(item.get(name), str):
            item[name] = tag + str(item[name])
    leads = item.get("lead_ids")
    if isinstance(leads, list):
        item["lead_ids"] = [tag + str(lead) for lead in leads]
    return item


def _encode(item: dict[str, object] | str) -> bytes:
    return item.encode() if isinstance(item, str) else orjson.dumps(item)


def history_events(seed: int, now: datetime, calendar: Calendar) -> list[dict[str, object] | str]:
    """What happened in the last `HISTORY_DAYS` days up to `now` (inclusive).

    The world runs on to the end of the current fiscal quarter, so that its
    goals are set against whole quarters (`goals_from_outcomes`); only what
    happened by `now` is kept, so current-quarter goals are part way there.
    """
    start = now.date() - timedelta(days=HISTORY_DAYS)
    days = (calendar.quarter_of(now.date()).last - start).days + 1
    config = SyntheticConfig(
        seed=seed,
        leads=round(days * EPOCH_LEADS / EPOCH_DAYS),
        days=days,
        start=start,
        duplicates=0.01,
        shuffle=0.02,
        invalid=0.002,
        fiscal_start_month=calendar.start_month,
        goals_from_outcomes=True,
    )
    return [
        _renamed(item, "h-")
        for item in generate(config)
        if isinstance(item, str) or datetime.fromisoformat(str(item["occurred_at"])) <= now
    ]


@dataclass(frozen=True, slots=True)
class HistoryCampaigns:
    """The history's campaigns, as the live feed needs them (names in lower case)."""

    known: frozenset[str]
    """Every campaign the history named: live campaigns never take these names."""
    running: Mapping[str | None, list[str]]
    """Those touched in the history's last `RUNNING_DAYS` days, by the partner in their
    name (None: none or off-convention), each list sorted."""

    @classmethod
    def of(cls, history: Iterable[dict[str, object] | str]) -> HistoryCampaigns:
        events = [i for i in history if isinstance(i, dict) and "campaign" in i]
        touches = [(_moment(t), _campaign(t)) for t in events if t["type"] == "touch"]
        since = max((at for at, _ in touches), default=None)
        running: dict[str | None, set[str]] = {}
        for at, name in touches:
            if since is not None and at >= since - timedelta(days=RUNNING_DAYS):
                running.setdefault(_partner_in(name), set()).add(name)
        return cls(
            frozenset(_campaign(e) for e in events),
            {partner: sorted(names) for partner, names in running.items()},
        )

    def pick(self, name: str) -> str:
        """The running campaign a live touch of `name` lands on: one of the same
        partner's when it has one, chosen by the name (stable across epochs)."""
        pool = self.running.get(_partner_in(name)) or sorted(
            n for names in self.running.values() for n in names
        )
        return pool[zlib.crc32(name.encode()) % len(pool)] if pool else name


def _moment(event: Mapping[str, object]) -> datetime:
    return datetime.fromisoformat(str(event["occurred_at"]))


def _campaign(event: Mapping[str, object]) -> str:
    return str(event["campaign"]).strip().lower()


def _partner_in(name: str) -> str | None:
    match = _NAMING.match(name)
    return match["partner"] if match and match["partner"] != "none" else None


def _live_item(item: dict[str, object], history: HistoryCampaigns) -> dict[str, object]:
    """A live epoch's event as the demo sends it (before its stamp).

    The epoch's campaigns are its own: a name the history already used gets a
    ``-live`` suffix (so the history's registry entries, goals and stats stay
    in force), and they have no goal (its periods would belong to the epoch's
    own calendar, not the wall clock); `RUNNING_PERCENT` % of touches land on
    the history's running campaigns instead.
    """
    if "campaign" in item:
        name = str(item["campaign"])
        item["campaign"] = f"{name}-live" if _campaign(item) in history.known else name
    if item["type"] == "campaign":
        item.pop("goal", None)
    if (
        item["type"] == "touch"
        and zlib.crc32(str(item["event_id"]).encode()) % 100 < RUNNING_PERCENT
    ):
        item["campaign"] = history.pick(_campaign(item))
    return item


def live_stream(seed: int, clock: Clock, history: HistoryCampaigns) -> Iterator[bytes]:
    """Epoch after epoch, forever, each event stamped with `clock()` as it is taken
    (`_live_item` says what changes); a duplicate repeats its first delivery."""
    for epoch in itertools.count():
        sent: dict[object, bytes] = {}
        config = SyntheticConfig(
            seed=seed + epoch,
            leads=EPOCH_LEADS,
            days=EPOCH_DAYS,
            start=clock().date(),
            duplicates=0.01,
            invalid=0.002,
        )
        for raw in generate(config):
            item = _renamed(raw, f"r{epoch}-")
            if isinstance(item, str):
                yield item.encode()
            elif item["event_id"] in sent:
                yield sent[item["event_id"]]
            else:
                live = _live_item(item, history)
                live["occurred_at"] = clock().isoformat()
                yield sent.setdefault(item["event_id"], orjson.dumps(live))


def demo_feed(
    seed: int, clock: Clock = wall_clock, calendar: Calendar | None = None
) -> tuple[list[bytes], Iterator[bytes]]:
    """The history up to `clock()` (to send at once) and the live stream after it."""
    history = history_events(seed, clock(), calendar or Calendar())
    live = live_stream(seed + 1, clock, HistoryCampaigns.of(history))
    return [_encode(item) for item in history], live


@dataclass
class Progress:
    sent: int = 0
    """Messages the broker acknowledged."""
    applied: int = 0
    """Messages of the input topics the sink has applied (from its offsets)."""
    restarts: int = 0
    """Times the worker exited asking for a restart (and was restarted)."""

    @property
    def lag(self) -> int:
        return max(0, self.sent - self.applied)

    def line(self, url: str) -> str:
        return (
            f"{url}  events in {self.sent:,}  applied {self.applied:,}  lag {self.lag:,}"
            f"  worker restarts {self.restarts}  (Ctrl-C to stop)"
        )


def applied_count(offsets: Mapping[tuple[str, int], int], topics: Iterable[str]) -> int:
    """Messages applied of `topics`: the sink stores the highest applied offset per partition."""
    wanted = set(topics)
    return sum(offset + 1 for (topic, _), offset in offsets.items() if topic in wanted)


async def feed(
    settings: Settings,
    bootstrap: str,
    lines: Iterator[bytes],
    rate: float,
    progress: Progress,
    backlog: int = 0,
) -> None:
    """Publish `lines` (as `send` routes them), the first `backlog` at once and the
    rest at `rate` per second, until cancelled."""
    producer = await input_producer(settings, bootstrap)
    try:
        loop = asyncio.get_running_loop()
        start = loop.time()
        while True:
            due = backlog + int((loop.time() - start) * rate) - progress.sent
            pending = []
            for raw in _take(lines, min(due, 10_000)):
                topic, key = destination(raw, settings)
                pending.append(await producer.send(topic, value=raw, key=key))
            await asyncio.gather(*pending)  # a failed delivery stops the demo, loudly
            progress.sent += len(pending)
            await asyncio.sleep(TICK)
    finally:
        await producer.stop()


def _take(lines: Iterator[bytes], n: int) -> Iterator[bytes]:
    """Up to `n` more lines (fewer once a bounded feed is used up)."""
    for _, raw in zip(range(n), lines, strict=False):
        yield raw


def run_demo(
    settings: Settings,
    *,
    rate: float,
    duration: float,
    host: str,
    port: int,
    seed: int,
    keep: bool,
    open_browser: bool,
    console: Console,
    events: int = 0,
    events_file: Path | None = None,
) -> Progress:
    """Run until `duration` seconds passed (0: forever) or SIGINT / SIGTERM; then stop
    everything started here: feed, dashboard, worker, embedded broker and Redis.
    `events` > 0 stops the feed after the history and that many live events (the
    rest keeps running); `events_file` receives every line fed (`recorded`).

    SIGTERM is turned into KeyboardInterrupt for the whole run, so that
    whenever it arrives (also while the broker is starting) the context
    managers clean up instead of the process dying with its children orphaned.
    """
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with replay_run(settings) as run:
            run.delete_keys = not keep
            console.print(f"redis key prefix: {run.settings.key_prefix}", highlight=False)
            console.print(f"worker logs: {run.logs}", highlight=False)
            run.start_worker()
            history, live = demo_feed(seed, calendar=Calendar(settings.fiscal_year_start))
            console.print(f"history: {len(history):,} events up to now", highlight=False)
            if events > 0:
                live = itertools.islice(live, events)
            lines = recorded(itertools.chain(history, live), events_file)
            return asyncio.run(
                _live(run, rate, duration, host, port, lines, len(history), open_browser, console)
            )
    except KeyboardInterrupt:
        return Progress()
    finally:
        signal.signal(signal.SIGTERM, previous)


def recorded(lines: Iterator[bytes], path: Path | None) -> Iterator[bytes]:
    """`lines`, each also written to `path` (when given) as it is taken to be sent.

    The live feed is stamped with the wall clock, so no seed regenerates it:
    this file is the only copy of exactly what a demo fed, in order (malformed
    lines and duplicates included), for `recompute` to check the dashboard
    against.  Flushed line by line, so a reader sees whole lines only.
    """
    if path is None:
        yield from lines
        return
    with path.open("wb") as out:
        for raw in lines:
            out.write(raw + b"\n")
            out.flush()
            yield raw


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


async def _live(
    run: ReplayRun,
    rate: float,
    duration: float,
    host: str,
    port: int,
    lines: Iterator[bytes],
    backlog: int,
    open_browser: bool,
    console: Console,
) -> Progress:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    progress = Progress()
    sink = sink_for(run.settings, run.endpoints.redis_url, max_wait=10)
    try:
        options = Options.from_settings(run.settings, host)
        async with serve(sink.client, sink.keys.prefix, host, port, options) as url:
            print(f"dashboard: {url}", flush=True)  # stdout: the one line scripts look for
            if open_browser:
                webbrowser.open(url)
            feeder = asyncio.create_task(
                feed(run.settings, run.endpoints.bootstrap, lines, rate, progress, backlog)
            )
            deadline = loop.time() + duration if duration > 0 else None
            with Live(console=console, auto_refresh=False, transient=False) as live:
                shown = 0.0
                while not stop.is_set() and not feeder.done():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 1.0)
                    progress.applied = applied_count(
                        await sink.read_offsets(), run.settings.input_topics
                    )
                    progress.restarts = run.restarts
                    if console.is_terminal:
                        live.update(Text(progress.line(url)), refresh=True)
                    elif loop.time() - shown >= 5:  # logs: one line every 5 s
                        console.print(progress.line(url), highlight=False, soft_wrap=True)
                        shown = loop.time()
                    if deadline is not None and loop.time() >= deadline:
                        break
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder  # re-raises what stopped a failed feed
        console.print(progress.line("stopped:"), highlight=False, soft_wrap=True)
        return progress
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await sink.close()
