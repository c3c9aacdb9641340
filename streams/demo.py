"""`partnerpulse demo`: broker, one worker, a steady event feed and the dashboard, live.

The feed never ends: `demo_stream` plays one synthetic world
(`models.synthetic`) after another, each *epoch* a fresh seed whose event time
starts where the previous one ended and whose ids carry an epoch prefix, so
leads, opportunities and events never collide and the metrics keep growing.
Each epoch is already in event-time order (a little shuffled, with a few
duplicates and malformed lines, so the data-quality counters move too).

It runs as an isolated `replay_run` (its own topics, consumer group and Redis
key prefix, removed on exit unless kept), so a demo never mixes with other
data on a shared Redis, and reuses its worker supervision.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import webbrowser
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final

import orjson
from rich.console import Console
from rich.live import Live
from rich.text import Text

from models.synthetic import SyntheticConfig, generate
from streams.runtime import ReplayRun, destination, input_producer, replay_run, sink_for
from streams.settings import Settings
from streams.web import serve

__all__ = ["Progress", "applied_count", "demo_stream", "epoch_events", "run_demo"]

EPOCH_LEADS: Final = 1000
EPOCH_DAYS: Final = 60
START: Final = date(2026, 1, 1)
ID_FIELDS: Final = ("event_id", "lead_id", "opportunity_id", "account_id", "referral_id")
"""Fields naming a subject or event: prefixed per epoch (campaigns and partners are shared)."""
TICK: Final = 0.05


def epoch_events(seed: int, epoch: int) -> list[bytes]:
    """One epoch of the feed: a synthetic world with its ids prefixed ``r<epoch>-``."""
    config = SyntheticConfig(
        seed=seed + epoch,
        leads=EPOCH_LEADS,
        days=EPOCH_DAYS,
        start=START + timedelta(days=EPOCH_DAYS * epoch),
        duplicates=0.01,
        shuffle=0.02,
        invalid=0.002,
    )
    tag = f"r{epoch}-"
    out = []
    for item in generate(config):
        if isinstance(item, str):  # a malformed line: sent as is, to be dead-lettered
            out.append(item.encode())
            continue
        for name in ID_FIELDS:
            if isinstance(item.get(name), str):
                item[name] = tag + str(item[name])
        leads = item.get("lead_ids")
        if isinstance(leads, list):
            item["lead_ids"] = [tag + str(lead) for lead in leads]
        out.append(orjson.dumps(item))
    return out


def demo_stream(seed: int) -> Iterator[bytes]:
    """Epoch after epoch, forever."""
    epoch = 0
    while True:
        yield from epoch_events(seed, epoch)
        epoch += 1


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
    settings: Settings, bootstrap: str, lines: Iterator[bytes], rate: float, progress: Progress
) -> None:
    """Publish `lines` at `rate` per second (as `send` routes them), until cancelled."""
    producer = await input_producer(settings, bootstrap)
    try:
        loop = asyncio.get_running_loop()
        start = loop.time()
        while True:
            due = int((loop.time() - start) * rate) - progress.sent
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
) -> Progress:
    """Run until `duration` seconds passed (0: forever) or SIGINT / SIGTERM; then stop
    everything started here: feed, dashboard, worker, embedded broker and Redis.
    `events` > 0 stops the feed after that many events (the rest keeps running).

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
            lines = demo_stream(seed)
            if events > 0:
                lines = itertools.islice(lines, events)
            return asyncio.run(_live(run, rate, duration, host, port, lines, open_browser, console))
    except KeyboardInterrupt:
        return Progress()
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


async def _live(
    run: ReplayRun,
    rate: float,
    duration: float,
    host: str,
    port: int,
    lines: Iterator[bytes],
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
        async with serve(sink.client, sink.keys.prefix, host, port) as url:
            print(f"dashboard: {url}", flush=True)  # stdout: the one line scripts look for
            if open_browser:
                webbrowser.open(url)
            feeder = asyncio.create_task(
                feed(run.settings, run.endpoints.bootstrap, lines, rate, progress)
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
