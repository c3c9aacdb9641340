"""The overview and a partner page in headless Chromium at 1280 x 800: nothing wider
than the viewport, no failed request, the CSV of a table equals its JSON, and a
partner page shows the API's numbers for the period chosen in its selector.

Redis holds the engine's metrics for a synthetic stream (through the real
sink) plus hand-written daily series points for partner `slack`, so windows
have values; expectations come from the API or from those points, never
from the page's code.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page
from pypdf import PdfReader

from models.subject import Contribution
from streams.web import Options
from streams.web.access import Access
from tests.e2e.test_dashboard_browser import browser_page, shown_unit, stream
from tests.integration.web_client import Served, served

pytestmark = pytest.mark.integration

SLACK_DAYS = {
    "nb.leads.influenced@2024-02-10": 3,
    "nb.leads.influenced@2024-05-20": 4,
    "nb.leads.influenced@2023-11-02": 6,  # previous period of 2024-01-01..2024-06-30
    "nb.cw.attributed_arr@2024-03-03": 1_234_567,
    "nb.cw.attributed_arr@2023-10-10": 500_000,
    "ex.s2.influenced@2024-06-30": 2,
}
WINDOW = ("2024-01-01", "2024-06-30")
"""182 days before the generated stream starts (2026: every metric has series
now, so only these points fall here); the previous period is the 182 days
before: 2023-07-02 .. 2023-12-31."""


@pytest.fixture
async def site() -> AsyncIterator[Served]:
    async with served() as fresh:
        for batch in stream().batches:
            await fresh.apply(batch)
        points = {("partner:slack", m): v for m, v in SLACK_DAYS.items()}
        await fresh.sink.apply({"lead:handwritten": Contribution(points, {})}, [], {})
        yield fresh


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    async with browser_page(1280, 800) as fresh:
        yield fresh


TOO_WIDE = """() => {
  const width = document.documentElement.clientWidth;
  const out = [];
  for (const e of document.querySelectorAll("body *")) {
    const r = e.getBoundingClientRect();
    if (!r.width) continue;
    const clip = e.parentElement && e.parentElement.closest(".scroll, [data-testid=series-chart]");
    const box = clip ? clip.getBoundingClientRect() : r;
    if (box.right > width + 0.5 || box.left < -0.5) out.push(`${e.tagName}#${e.id}.${e.className}`);
  }
  if (document.documentElement.scrollWidth > width) out.push("page scrolls sideways");
  return out;
}"""


async def loaded(page: Page, url: str) -> None:
    await page.goto(url)
    await page.wait_for_selector('[data-testid="live-status"].live', timeout=15_000)
    await page.wait_for_load_state("networkidle")


@pytest.mark.parametrize(
    "path",
    [
        "",
        "?period=ytd",
        f"?from={WINDOW[0]}&to={WINDOW[1]}",
        "partner/slack",
        f"partner/slack?from={WINDOW[0]}&to={WINDOW[1]}",
        "partner/nobody",
    ],
)
async def test_pages_fit_1280_pixels_and_every_request_succeeds(
    site: Served, page: Page, path: str
) -> None:
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    await loaded(page, site.url + path)
    assert failed == []
    assert await page.evaluate(TOO_WIDE) == []
    assert "cents" not in (await page.inner_text("main")).lower()


def csv_of(table: dict[str, Any]) -> list[list[str]]:
    """The rows a table's CSV must have: label, its values, then the previous period's."""
    keys = [c["key"] for c in table["columns"]]
    out = []
    for row in table["rows"]:
        values = [row["values"][k] for k in keys]
        if "previous" in row:
            values += [row["previous"].get(k) for k in keys]
        out.append([row["label"], *("" if v is None else str(v) for v in values)])
    return out


async def test_every_table_downloads_as_the_csv_of_its_json(site: Served, page: Page) -> None:
    await loaded(page, site.url + f"?from={WINDOW[0]}&to={WINDOW[1]}")
    links = page.locator('[data-testid="csv"]')
    count = await links.count()
    assert count >= 6  # nbex, pipeline, performance, campaigns, goals, cohorts, depth, dq
    names = []
    for i in range(count):
        link = links.nth(i)
        href = await link.get_attribute("href")
        assert href and href.endswith("&format=csv")
        async with page.expect_download() as info:
            await link.click()
        download = await info.value
        text = Path(await download.path()).read_text(encoding="utf-8")  # noqa: ASYNC240 (small file)
        lines = list(csv.reader(io.StringIO(text)))
        params = dict(p.split("=", 1) for p in href.split("?", 1)[1].split("&"))
        del params["format"]
        table = await site.get("api/table", **params)
        assert lines[1:] == csv_of(table), params["name"]
        assert len(lines[0]) == 1 + len(table["columns"]) * (2 if table["previous_window"] else 1)
        names.append(params["name"])
    assert {"nbex", "campaigns", "dq"} <= set(names)


async def test_the_nbex_table_on_the_page_is_its_json(site: Served, page: Page) -> None:
    await loaded(page, site.url + f"?from={WINDOW[0]}&to={WINDOW[1]}")
    table = await site.get("api/table", name="nbex", **{"from": WINDOW[0], "to": WINDOW[1]})
    for row in table["rows"]:
        for column in table["columns"]:
            cell = page.locator(f'#nbex [data-testid="{row["key"]}|{column["key"]}"]')
            value = row["values"][column["key"]]
            assert await cell.get_attribute("data-value") == ("" if value is None else _js(value))
    slack = next(r for r in table["rows"] if r["key"] == "partner:slack")
    assert slack["values"]["nb.leads.influenced"] == 7  # 3 + 4, written above
    assert slack["previous"]["nb.leads.influenced"] == 6


def _js(value: float) -> str:
    """How JavaScript's String() writes a JSON number."""
    return str(int(value)) if float(value).is_integer() else repr(value)


async def test_partner_page_shows_the_apis_numbers_for_the_chosen_period(
    site: Served, page: Page
) -> None:
    await loaded(page, site.url + "partner/slack")
    await page.select_option('[data-testid="period"]', "custom")
    await page.fill('[data-testid="custom-from"]', WINDOW[0])
    await page.fill('[data-testid="custom-to"]', WINDOW[1])
    await page.click("#custom-apply")
    await page.wait_for_selector('[data-testid="previous|partner:slack|nb.leads.influenced"]')
    assert page.url.endswith(f"partner/slack?from={WINDOW[0]}&to={WINDOW[1]}")

    window = {"from": WINDOW[0], "to": WINDOW[1]}
    raw = await site.get("api/metrics", scope="partner:slack", **window)
    now, before = raw["metrics"]["partner:slack"], raw["previous"]["metrics"]["partner:slack"]
    assert (now["nb.leads.influenced"], now["nb.cw.attributed_arr"], now["ex.s2.influenced"]) == (
        7,
        1_234_567,
        2,
    )
    assert (before["nb.leads.influenced"], before["nb.cw.attributed_arr"]) == (6, 500_000)
    for metric in ("nb.leads.influenced", "nb.cw.attributed_arr", "ex.s2.influenced"):
        for prefix, values in (("", now), ("previous|", before)):
            cell = page.locator(f'#funnel [data-testid="{prefix}partner:slack|{metric}"]')
            shown = float(await cell.get_attribute("data-value") or "nan")
            assert shown == pytest.approx(values.get(metric, 0) / shown_unit(metric)), metric
    text = await page.inner_text('#funnel [data-testid="partner:slack|nb.cw.attributed_arr"]')
    assert text.startswith("$12,346")  # $12,345.67 in whole dollars

    table = await site.get("api/table", name="performance", partner="slack", **window)
    (row,) = table["rows"]
    for key, value in row["values"].items():
        cell = page.locator(f'#performance [data-testid="partner:slack|{key}"]')
        assert await cell.get_attribute("data-value") == ("" if value is None else _js(value))


async def test_a_partner_page_prints_on_one_clean_page(site: Served, page: Page) -> None:
    await loaded(page, site.url + f"partner/slack?from={WINDOW[0]}&to={WINDOW[1]}")
    await page.emulate_media(media="print")
    for hidden in ("#period", "#live", '[data-testid="csv"]', "#subject"):
        assert not await page.locator(hidden).first.is_visible(), hidden
    pdf = await page.pdf(format="A4", landscape=True, print_background=True)
    (printed,) = PdfReader(io.BytesIO(pdf)).pages  # one page
    text = printed.extract_text()
    # one partner's scorecard: its name, its funnel for the period, no other partner's page
    assert "Partner: slack" in text, text[:500]
    for heading in (
        "Funnel: New Business and Expansion",
        "Two-sided value and pipeline",
        "Win rate, integrations and NPS",
        "Top campaigns",
        "Goals and pace",
    ):
        assert heading in text, heading
    assert "New Business · Won attr. ARR $12,346 $5,000" in text  # the hand-written days
    assert "Partner: " + "zoom" not in text


async def test_signing_in_with_the_token_opens_the_page_that_asked(page: Page) -> None:
    token = "s3cret-for-the-browser"
    async with served(Options(Access(token))) as locked:
        response = await page.goto(locked.url + "partner/slack?period=ytd")
        assert response is not None and response.status == 401
        await page.fill('input[name="token"]', "wrong")
        async with page.expect_navigation():
            await page.click('button[type="submit"]')
        assert page.url == locked.url + "login"  # the form again, after a 401
        assert await page.locator('[data-testid="login-form"]').is_visible()
        await page.fill('input[name="token"]', token)
        await page.click('button[type="submit"]')
        await page.wait_for_selector('[data-testid="live-status"].live', timeout=15_000)
        assert page.url == locked.url + "partner/slack?period=ytd"
        assert await page.inner_text('[data-testid="page-title"]') == "Partner: slack"
        cookies = await page.context.cookies()
        assert [c["name"] for c in cookies] == ["pp_session"] and cookies[0]["httpOnly"]
        assert token not in cookies[0]["value"]
