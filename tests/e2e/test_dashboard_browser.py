"""The dashboard in headless Chromium: the numbers it shows are Redis's, and they move live.

Metrics are written through the real write path (`RedisSink.apply`, the Lua
script) under a random key prefix; the page is served by `streams.web.serve`
and driven by Playwright with the system's Chromium (`PP_CHROMIUM` or
`chromium` / `chromium-browser` on PATH; never a downloaded browser).  The
demo's page, for a period chosen in its selector, shows what the batch
oracle `recompute --from --to` gives over the very events the demo fed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
from playwright.async_api import Page, async_playwright

from datagen import SyntheticConfig
from models.derived import by_scope, derive
from models.events import INPUT_TOPICS
from sinks.redis_sink import RedisSink
from streams.web import serve
from tests.integration.engine_batches import Run, engine_run
from tests.local_redis import REDIS_URL

pytestmark = pytest.mark.integration

T = TypeVar("T")
Quarter = tuple[date, date]
"""First and last day (inclusive, UTC)."""

NBEX = {
    f"{business}.{name}"
    for business in ("nb", "ex")
    for name in (
        "s2.influenced",
        "s2.influenced_arr",
        "s2.attributed_arr",
        "cw.influenced",
        "cw.influenced_arr",
        "cw.attributed_arr",
    )
} | {"nb.leads.influenced", "nb.mqls.influenced", "nb.leads.attributed"}
DQ = {"dq.dead_letters", "dq.campaign_name_invalid", "dq.duplicates_ignored", "dq.late_events"}


def shown_unit(metric: str) -> float:
    """What one displayed unit is in Redis's units: the page shows ARR in dollars
    (Redis: cents) and attributed leads in conversions (Redis: millionths)."""
    if metric.endswith("_arr"):
        return 100
    return 1_000_000 if metric == "nb.leads.attributed" else 1


def chromium() -> str | None:
    return (
        os.environ.get("PP_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )


@cache
def stream() -> Run:
    return engine_run(SyntheticConfig(seed=21, leads=300, invalid=0.01, duplicates=0.02), 400)


@contextlib.asynccontextmanager
async def browser_page(width: int, height: int) -> AsyncIterator[Page]:
    """A page of the system's headless Chromium (skips the test without one)."""
    binary = chromium()
    if binary is None:
        pytest.skip("no Chromium: apt-get install -y chromium (or set PP_CHROMIUM)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=binary, headless=True, args=["--no-sandbox"]
        )
        try:
            context = await browser.new_context(
                viewport={"width": width, "height": height}, accept_downloads=True
            )
            yield await context.new_page()
        finally:
            await browser.close()


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    async with browser_page(1400, 1000) as fresh:
        yield fresh


async def displayed(
    page: Page, tables: str = "#nbex [data-metric], #dq [data-metric]"
) -> list[dict[str, str]]:
    """Every number of `tables` (default: NB/EX and data quality): scope, metric,
    raw value, text."""
    result: list[dict[str, str]] = await page.eval_on_selector_all(
        tables,
        # text: the value's own span (a windowed cell also shows its change)
        """cells => cells.map(c => ({scope: c.dataset.scope, metric: c.dataset.metric,
                                     value: c.dataset.value, testid: c.dataset.testid,
                                     text: (c.querySelector(".v") || c).textContent}))""",
    )
    return result


def assert_shows(cell: Mapping[str, str], value: float) -> None:
    """A count or money cell holds `value` (display units) and its text shows it rounded."""
    assert cell["testid"] == f"{cell['scope']}|{cell['metric']}"
    assert float(cell["value"]) == pytest.approx(value, abs=1e-6), cell
    shown = float(re.sub(r"[$,]", "", cell["text"]))
    # half a unit of the last shown digit (plus float noise: 13.85 shows as 13.9)
    assert abs(shown - value) <= (0.5 if cell["metric"].endswith("_arr") else 0.05) + 1e-9, cell


async def assert_page_equals_redis(page: Page, sink: RedisSink) -> int:
    cells = await displayed(page)
    for cell in cells:
        stored = await sink.client.hget(sink.keys.metrics(cell["scope"]), cell["metric"])
        assert_shows(cell, int(stored or 0) / shown_unit(cell["metric"]))
    return len(cells)


async def test_page_shows_redis_numbers_and_follows_changes_live(
    sink: RedisSink, page: Page
) -> None:
    run = stream()
    head, tail = run.batches[:-1], run.batches[-1]
    for batch in head:
        await sink.apply(batch.contributions, batch.dead_letters, batch.offsets)
    async with serve(sink.client, sink.keys.prefix, port=0) as url:
        await page.goto(url)
        await page.wait_for_selector('[data-testid="live-status"].live', timeout=15_000)
        metrics = await sink.read_metrics()
        in_redis = sorted({scope for scope, _ in metrics if scope.startswith("partner:")})
        assert in_redis
        rows = await page.eval_on_selector_all(
            '#nbex tr[data-testid^="row|"]', "rows => rows.map(r => r.dataset.testid)"
        )
        # `all`, the deduplicated any-partner row, then each partner
        assert rows == ["row|all", "row|partners", *(f"row|{s}" for s in in_redis)]
        dq_extra = {m for s, m in metrics if s == "all" and m.startswith("dq.")} - DQ
        assert dq_extra  # dead letters by reason
        count = await assert_page_equals_redis(page, sink)
        assert count == len(rows) * len(NBEX) + len(DQ) + len(dq_extra)

        # Integrations and the campaign funnel show Redis's numbers too, and
        # the campaign rates are the server's derived ones.
        derived = derive(by_scope(metrics), 0)
        shown_campaigns = sorted(
            (s for s, m in metrics if s.startswith("campaign:") and m == "nb.leads.influenced"),
            key=lambda s: -metrics[(s, "nb.leads.influenced")],
        )[:20]  # the page lists the top 20 by influenced leads
        campaign = next(c for c in shown_campaigns if "campaigns.ctr" in derived.get(c, {}))
        for section, scope, metric in (
            ("#performance", "partner:slack", "integrations.installs"),
            ("#campaigns", campaign, "campaigns.impressions"),
            ("#campaigns", campaign, "nb.leads.influenced"),
        ):
            cell = page.locator(f'{section} [data-testid="{scope}|{metric}"]')
            assert await cell.get_attribute("data-value") == str(metrics[(scope, metric)])
        # the rates arrive from /api/derived after the metrics: wait for a value
        ctr = page.locator(
            f'#campaigns [data-testid="{campaign}|campaigns.ctr"]:not([data-value=""])'
        )
        await ctr.wait_for(timeout=15_000)
        value = await ctr.get_attribute("data-value")
        assert value and float(value) == derived[campaign]["campaigns.ctr"]

        await page.evaluate("window.__notReloaded = true")
        applied = await sink.apply(tail.contributions, tail.dead_letters, tail.offsets)
        shown = [
            m
            for m in applied.metrics
            if (m.metric in NBEX and (m.scope == "all" or m.scope.startswith("partner:")))
            or (m.scope == "all" and m.metric.startswith("dq."))
        ]
        assert shown, "the last batch changes no displayed number"
        for change in shown:
            await page.wait_for_function(
                """([id, v]) => [...document.querySelectorAll(`[data-testid="${id}"]`)]
                     .some(c => Math.abs(parseFloat(c.dataset.value || "0") - v) < 1e-6)""",
                arg=[f"{change.scope}|{change.metric}", change.value / shown_unit(change.metric)],
                timeout=15_000,
            )
        assert await page.evaluate("window.__notReloaded") is True
        await assert_page_equals_redis(page, sink)


async def test_a_late_answer_for_the_period_left_does_not_overwrite_the_new_one(
    sink: RedisSink, page: Page
) -> None:
    """Reloads overlap: a live change reloads February, the user picks All time
    meanwhile, and February's answer arrives last.  The page keeps All time."""
    run = stream()
    head, tail = run.batches[:-1], run.batches[-1]
    for batch in head:
        await sink.apply(batch.contributions, batch.dead_letters, batch.offsets)
    async with serve(sink.client, sink.keys.prefix, port=0) as url:
        await page.goto(f"{url}?from=2026-02-01&to=2026-02-28")
        note = page.locator('[data-testid="window-note"]')
        await note.filter(has_text="2026-02-01 to 2026-02-28 (UTC days), compared with").wait_for(
            timeout=15_000
        )
        await page.wait_for_selector('[data-testid="live-status"].live', timeout=15_000)
        asked, release = asyncio.Event(), asyncio.Event()

        async def hold_february(route: Any) -> None:
            if "from=" in route.request.url:
                asked.set()
                await release.wait()
            await route.continue_()

        await page.route("**/api/table?name=nbex*", hold_february)
        await sink.apply(tail.contributions, tail.dead_letters, tail.offsets)
        await asyncio.wait_for(asked.wait(), 15)  # the live reload of February, held
        await page.locator('[data-testid="period"]').select_option("all")
        await eventually(lambda: assert_page_equals_redis(page, sink), 15)
        async with page.expect_response(lambda r: "from=" in r.url) as late:
            release.set()
        await (await late.value).finished()
        await page.wait_for_timeout(1_000)  # what the page does with it, if anything
        assert await note.text_content() == "running totals"
        assert await assert_page_equals_redis(page, sink) > 0


@pytest.mark.parametrize(
    "embedded", ["tansu", pytest.param("apache-kafka", marks=pytest.mark.apache_kafka)]
)
async def test_page_during_a_demo_run_changes_live_equals_redis_and_recompute(
    page: Page, tmp_path: Path, embedded: str
) -> None:
    """`partnerpulse demo` on embedded defaults, its page in Chromium: the numbers
    grow while events flow; once the bounded feed is applied every number of
    the NB/EX and data-quality tables equals Redis, and for last quarter (its
    preset) and this quarter (a custom range), chosen in the period selector,
    every number of the NB/EX and partner scorecard tables equals `recompute
    --from --to` over the events the demo fed (its `--events-file`; on Tansu).

    One demo run serves both checks: the demo is the expensive part.
    """
    stderr, events = tmp_path / "stderr", tmp_path / "events.jsonl"
    demo = start_demo(stderr, embedded, events)
    try:
        assert demo.stdout is not None
        line = (await asyncio.to_thread(demo.stdout.readline)).decode()
        match = re.fullmatch(r"dashboard: (http://127\.0\.0\.1:\d+/)\n", line)
        assert match, (line, stderr.read_text())
        prefix = re.search(r"redis key prefix: (\S+)", stderr.read_text())
        history = re.search(r"history: ([\d,]+) events", stderr.read_text())
        assert prefix and history
        await page.goto(match.group(1))
        await page.wait_for_selector('[data-testid="live-status"].live', timeout=30_000)
        leads = page.locator('#nbex [data-testid="all|nb.leads.influenced"]')

        async def shown() -> int:
            return int(await leads.get_attribute("data-value") or 0) if await leads.count() else 0

        seen: list[int] = []
        deadline = (
            time.monotonic() + 240
        )  # the history (~30k events) lands first; slow on a loaded box
        while len(set(seen)) < 3:  # three different values, without a reload
            assert time.monotonic() < deadline, (seen, stderr.read_text()[-2000:])
            if (value := await shown()) > 0:
                seen.append(value)
            await asyncio.sleep(0.5)
        assert seen == sorted(seen)

        sink = RedisSink.from_url(REDIS_URL, prefix=prefix.group(1), max_wait=10)
        try:
            fed = int(history.group(1).replace(",", "")) + LIVE_EVENTS
            await wait_until_applied(sink, events, fed)
            this = quarter_of(datetime.now(UTC).date())
            last = quarter_of(this[0] - timedelta(days=1))
            # The windows do not depend on the broker: checked once, on the default
            # one (CI time).  The oracle runs while the page reloads on the last changes.
            oracles = (
                asyncio.gather(recompute(events, last), recompute(events, this))
                if embedded == "tansu"
                else None
            )
            try:
                assert await eventually(lambda: assert_page_equals_redis(page, sink), 60) > 0
            finally:
                expected = await oracles if oracles else None
        finally:
            await sink.close()
        if expected is not None:
            await assert_quarters_equal_recompute(page, last, this, expected)
    finally:
        await asyncio.to_thread(stop_demo, demo)


async def wait_until_applied(sink: RedisSink, events: Path, fed: int) -> None:
    """Until the demo has fed and recorded all its `fed` lines (the history and the
    bounded live feed) and the worker has applied every one: the sink's offsets
    of the input topics (the demo's own, ``<prefix>.<topic>``; the worker's
    internal topics have offsets there too) count the messages applied."""
    deadline = time.monotonic() + 240
    while True:
        recorded = (await asyncio.to_thread(events.read_bytes)).count(b"\n")
        offsets = await sink.read_offsets()
        applied = sum(
            offset + 1
            for (topic, _), offset in offsets.items()
            if topic.rpartition(".")[2] in INPUT_TOPICS
        )
        if recorded == applied == fed:
            return
        assert recorded <= fed and applied <= fed, (recorded, applied, fed)
        assert time.monotonic() < deadline, (recorded, applied, fed)
        await asyncio.sleep(1)


async def eventually(check: Callable[[], Awaitable[T]], seconds: float) -> T:
    """`check()`'s result once it passes, tried every half second for `seconds`
    (then its last failure): the page redraws its tables a moment after the data
    is there."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return await check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


def quarter_of(day: date) -> Quarter:
    """The calendar quarter of `day`: the fiscal quarter of the demo, whose
    fiscal year starts in January (the default, SPEC §4.1)."""
    month = 3 * ((day.month - 1) // 3) + 1
    following = date(day.year + month // 10, (month + 2) % 12 + 1, 1)
    return date(day.year, month, 1), following - timedelta(days=1)


async def assert_quarters_equal_recompute(
    page: Page, last: Quarter, this: Quarter, oracles: Sequence[Mapping[str, Any]]
) -> None:
    """Last quarter, chosen with its preset, and this quarter, entered as a custom
    range, each equal its `recompute --from --to` document (`oracles`, in that order).

    The demo's history covers the whole last quarter (its 183 days); this
    quarter holds the rest of the history and the live feed (stamped now).
    """
    assert all(oracle["metrics"]["all"]["nb.leads.influenced"] > 0 for oracle in oracles)
    period = page.locator('[data-testid="period"]')
    await period.select_option("last_quarter")
    label = await period.locator("option:checked").text_content()
    assert label == f"Last quarter ({last[0].year}Q{(last[0].month + 2) // 3})"
    assert page.url.endswith("/?period=last_quarter")
    await assert_window_equals(page, last, oracles[0])

    await period.select_option("custom")
    await page.fill('[data-testid="custom-from"]', this[0].isoformat())
    await page.fill('[data-testid="custom-to"]', this[1].isoformat())
    await page.click("#custom-apply")
    assert page.url.endswith(f"/?from={this[0]}&to={this[1]}")
    await assert_window_equals(page, this, oracles[1])


async def recompute(events: Path, window: Quarter) -> dict[str, Any]:
    """The batch oracle's document for `window`, as the console script prints it."""
    first, last = (day.isoformat() for day in window)
    oracle = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "streams.cli", "recompute", str(events), "--json"),
        *("--from", first, "--to", last),
        env=demo_env(),
        stdout=subprocess.PIPE,
    )
    out, _ = await oracle.communicate()
    assert oracle.returncode == 0
    document: dict[str, Any] = orjson.loads(out)
    return document


async def assert_window_equals(page: Page, window: Quarter, oracle: Mapping[str, Any]) -> None:
    """Once the page says it shows `window`, every number of its NB/EX, pipeline and
    performance tables equals `oracle` (recompute's windowed document)."""
    note = page.locator('[data-testid="window-note"]')
    await note.filter(has_text=f"{window[0]} to {window[1]} (UTC days)").wait_for(timeout=15_000)

    async def check() -> None:
        rows = await page.eval_on_selector_all(
            '#nbex tr[data-testid^="row|"]', "rows => rows.map(r => r.dataset.testid.slice(4))"
        )
        partners = {s for s in oracle["metrics"] if s.startswith("partner:")}
        assert rows[:2] == ["all", "partners"] and partners <= set(rows[2:]), rows
        cells = await displayed(page, "#nbex [data-metric]")
        assert len(cells) == len(rows) * len(NBEX)
        cells += await displayed(page, "#pipeline [data-metric], #performance [data-metric]")
        assert_cells_equal(cells, oracle)

    await eventually(check, 60)


LEVELS = {"integrations.active"}
"""Scorecard columns that are levels: no series, shown as of now in any window."""
PERFORMANCE_RATES = {
    "perf.partner.win_rate",
    "perf.win_rate_lift",
    "perf.partner.cycle_days_avg",
    "perf.cycle_days_delta",
    "nps",
}


def assert_cells_equal(cells: list[dict[str, str]], oracle: Mapping[str, Any]) -> None:
    """Each cell equals the oracle's window sum (in the page's units: money in
    dollars); a metric without a series is unknown (empty) in a window."""
    metrics: dict[str, dict[str, float]] = oracle["metrics"]
    series = {metric for scope in oracle["series"].values() for metric in scope}
    for cell in cells:
        scope, metric = cell["scope"], cell["metric"]
        if metric in PERFORMANCE_RATES:
            rate = performance_rate(metrics, scope, metric)
            if rate is None:  # no closed deal (no answer): no rate
                assert cell["value"] == "", cell
            else:
                assert float(cell["value"]) == pytest.approx(rate, abs=1e-9), cell
        elif metric in series:
            value = metrics.get(scope, {}).get(metric, 0)
            assert_shows(cell, value / 100 if metric.endswith("_arr") else value)
        elif metric not in LEVELS:
            assert cell["value"] == "", cell


def performance_rate(
    metrics: Mapping[str, Mapping[str, float]], scope: str, metric: str
) -> float | None:
    """SPEC §4 partner performance over the window's sums, by hand: the win rate
    (won ÷ closed) or days to close (cycle days ÷ closed) of `scope`'s
    partner-involved deals, or its difference to those of `all`'s other deals;
    NPS, 100 x (promoters - detractors) ÷ the window's answers."""
    if metric == "nps":
        answers = metrics.get(scope, {})
        responses = answers.get("nps.responses", 0)
        net = answers.get("nps.promoters", 0) - answers.get("nps.detractors", 0)
        return 100 * net / responses if responses else None

    def of(scope: str, side: str) -> float | None:
        values = metrics.get(scope, {})
        closed = values.get(f"perf.{side}.closed", 0)
        numerator = values.get(f"perf.{side}.{'won' if 'win_rate' in metric else 'cycle_days'}", 0)
        return numerator / closed if closed else None

    mine = of(scope, "partner")
    if metric.startswith("perf.partner."):
        return mine
    other = of("all", "other")
    return None if mine is None or other is None else mine - other


LIVE_EVENTS = 1000
# The live feed lasts 20 s (1000 events at 50/s): the page reloads its tables at
# most every 1.5 s, so it shows several values even when the history lands late.
DEMO = ("demo", "--port", "0", "--duration", "420", "--rate", "50", "--events", str(LIVE_EVENTS))


def demo_env() -> dict[str, str]:
    """Embedded defaults: no PP_* settings but the test Redis, which the test reads back."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PP_")}
    env["PP_REDIS_URL"] = REDIS_URL
    return env


def start_demo(stderr: Path, embedded: str, events: Path) -> subprocess.Popen[bytes]:
    """The demo on embedded defaults with the `embedded` broker, its URL line on
    stdout, recording what it feeds to `events`."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streams.cli",
            *DEMO,
            "--embedded-broker",
            embedded,
            "--events-file",
            str(events),
        ],
        env=demo_env(),
        stdout=subprocess.PIPE,
        stderr=stderr.open("wb"),
    )


def stop_demo(demo: subprocess.Popen[bytes]) -> None:
    demo.send_signal(signal.SIGTERM)
    demo.wait(60)
