"""The dashboard in headless Chromium: the numbers it shows are Redis's, and they move live.

Metrics are written through the real write path (`RedisSink.apply`, the Lua
script) under a random key prefix; the page is served by `streams.web.serve`
and driven by Playwright with the system's Chromium (`PP_CHROMIUM` or
`chromium` / `chromium-browser` on PATH; never a downloaded browser).
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
from collections.abc import AsyncIterator
from functools import cache
from pathlib import Path

import pytest
from playwright.async_api import Page, async_playwright

from datagen import SyntheticConfig
from models.derived import by_scope, derive
from sinks.redis_sink import RedisSink
from streams.web import serve
from tests.integration.engine_batches import Run, engine_run
from tests.local_redis import REDIS_URL

pytestmark = pytest.mark.integration

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


async def displayed(page: Page) -> list[dict[str, str]]:
    """Every number of the NB/EX and data-quality tables: scope, metric, raw value, text."""
    result: list[dict[str, str]] = await page.eval_on_selector_all(
        "#nbex [data-metric], #dq [data-metric]",
        """cells => cells.map(c => ({scope: c.dataset.scope, metric: c.dataset.metric,
                                     value: c.dataset.value, text: c.textContent,
                                     testid: c.dataset.testid}))""",
    )
    return result


async def assert_page_equals_redis(page: Page, sink: RedisSink) -> int:
    cells = await displayed(page)
    for cell in cells:
        scope, metric = cell["scope"], cell["metric"]
        assert cell["testid"] == f"{scope}|{metric}"
        stored = await sink.client.hget(sink.keys.metrics(scope), metric)
        value = int(stored or 0) / shown_unit(metric)
        assert float(cell["value"]) == pytest.approx(value, abs=1e-6), cell
        shown = float(re.sub(r"[$,]", "", cell["text"]))
        # half a unit of the last shown digit (plus float noise: 13.85 shows as 13.9)
        assert abs(shown - value) <= (0.5 if metric.endswith("_arr") else 0.05) + 1e-9, cell
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


@pytest.mark.parametrize(
    "embedded", ["tansu", pytest.param("apache-kafka", marks=pytest.mark.apache_kafka)]
)
async def test_page_during_a_demo_run_changes_live_and_equals_redis(
    page: Page, tmp_path: Path, embedded: str
) -> None:
    """`partnerpulse demo` on embedded defaults, its page in Chromium: the numbers
    grow while events flow, and once the bounded feed is applied every number of
    the NB/EX and data-quality tables equals Redis."""
    stderr = tmp_path / "stderr"
    demo = start_demo(stderr, embedded)
    try:
        assert demo.stdout is not None
        line = (await asyncio.to_thread(demo.stdout.readline)).decode()
        match = re.fullmatch(r"dashboard: (http://127\.0\.0\.1:\d+/)\n", line)
        assert match, (line, stderr.read_text())
        prefix = re.search(r"redis key prefix: (\S+)", stderr.read_text())
        assert prefix
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
            deadline = time.monotonic() + 240
            while True:  # the feed stops after 1000 live events; then page and Redis agree
                try:
                    assert await assert_page_equals_redis(page, sink) > 0
                    break
                except AssertionError:
                    assert time.monotonic() < deadline, stderr.read_text()[-2000:]
                    await asyncio.sleep(1)
        finally:
            await sink.close()
    finally:
        await asyncio.to_thread(stop_demo, demo)


# The live feed lasts 20 s (1000 events at 50/s): the page reloads its tables at
# most every 1.5 s, so it shows several values even when the history lands late.
DEMO = ("demo", "--port", "0", "--duration", "420", "--rate", "50", "--events", "1000")


def start_demo(stderr: Path, embedded: str) -> subprocess.Popen[bytes]:
    """The demo on embedded defaults (no PP_* settings but the test Redis, which
    the test reads back) with the `embedded` broker, its URL line on stdout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PP_")}
    env["PP_REDIS_URL"] = REDIS_URL
    return subprocess.Popen(
        [sys.executable, "-m", "streams.cli", *DEMO, "--embedded-broker", embedded],
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr.open("wb"),
    )


def stop_demo(demo: subprocess.Popen[bytes]) -> None:
    demo.send_signal(signal.SIGTERM)
    demo.wait(60)
