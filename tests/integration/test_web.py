"""The dashboard's JSON API and event stream against a real Redis, fed by the real sink.

Expected values come from the engine (`engine_batches`), the sink's own
replies, or keys written here by hand, never from the web code.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from fractions import Fraction
from functools import cache

import aiohttp
import orjson
import pytest

from datagen import SyntheticConfig
from models.subject import Contribution, CreditLine
from tests.integration.engine_batches import Run, engine_run
from tests.integration.replay_checks import moved
from tests.integration.web_client import Served
from tests.integration.web_client import served as serving

pytestmark = pytest.mark.integration


@cache
def stream() -> Run:
    return engine_run(SyntheticConfig(seed=11, leads=150, invalid=0.01, duplicates=0.02), 250)


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    async with serving() as fresh:
        yield fresh


async def test_metrics_scopes_dq_and_credits_equal_the_engine(served: Served) -> None:
    run = stream()
    for batch in run.batches:
        await served.apply(batch)
    expected: dict[str, dict[str, int]] = {}
    series: dict[tuple[str, str], dict[str, int]] = {}
    for (scope, metric), value in run.totals.items():
        name, at, day = metric.partition("@")
        if at:  # a daily series point: /api/series serves it
            series.setdefault((scope, name), {})[day] = value
        elif value:
            expected.setdefault(scope, {})[metric] = value

    body = await served.get("api/metrics")
    assert body["metrics"] == expected
    assert series
    for (scope, metric), points in sorted(series.items())[:20]:
        got = await served.get("api/series", scope=scope, metric=metric)
        assert got["points"] == sorted([day, v] for day, v in points.items() if v)
    assert (await served.get("api/scopes"))["scopes"] == ["all", *sorted(set(expected) - {"all"})]
    some = sorted(expected)[1:4]
    one = await served.get("api/metrics", scope=some)
    assert one["metrics"] == {s: expected[s] for s in some}
    assert (await served.get("api/dq"))["counters"] == {
        m: v for m, v in expected["all"].items() if m.startswith("dq.")
    }
    assert expected["all"]["dq.dead_letters"] > 0

    opportunity = max(
        (s for s in run.credits if s.startswith("opportunity:")),
        key=lambda s: (len(run.credits[s]), s),
    )
    lines = (await served.get("api/credits", subject=opportunity))["touchpoints"]
    assert {line["touch"]: Fraction(line["credit"]) for line in lines} == run.credits[opportunity]
    final = run.final[opportunity].credits
    assert {line["touch"]: line["units"] for line in lines} == {
        t: c.units for t, c in final.items()
    }
    subjects = (await served.get("api/subjects", kind="opportunity", limit=500))["subjects"]
    assert opportunity in subjects
    assert all(s.startswith("opportunity:") for s in subjects)

    applied = (await served.get("api/status"))["applied"]
    assert applied == {"leads|0": run.batches[-1].offsets[("leads", 0)]}


async def test_series_and_leaderboard_read_the_keys_and_tolerate_absence(served: Served) -> None:
    client, prefix = served.sink.client, served.sink.keys.prefix
    assert (await served.get("api/series", scope="partner:slack", metric="nb.cw.attributed_arr"))[
        "points"
    ] == []
    assert (await served.get("api/leaderboard", metric="nb.cw.attributed_arr"))["entries"] == []

    await client.hset(
        f"{prefix}d:partner:a%20b:nb.cw.attributed_arr",
        mapping={"2026-03-02": 700, "2026-03-01": 500},
    )
    series = await served.get("api/series", scope="partner:a b", metric="nb.cw.attributed_arr")
    assert series["points"] == [["2026-03-01", 500], ["2026-03-02", 700]]

    await client.zadd(f"{prefix}lb:nb.cw.attributed_arr", {"slack": 30, "zoom": 50, "stripe": 10})
    board = await served.get("api/leaderboard", metric="nb.cw.attributed_arr", limit=2)
    assert board["entries"] == [{"member": "zoom", "value": 50}, {"member": "slack", "value": 30}]


async def test_keys_from_requests_are_escaped(served: Served) -> None:
    """A scope with separators and glob characters names exactly its own escaped key."""
    weird = "campaign:a b:*?[x]/%"
    line = CreditLine(Fraction(1), 100, ("all", weird), ("ft",), 1)
    contribution = Contribution({(weird, "nb.leads.influenced"): 3}, {"t1": line})
    await served.sink.apply({"lead:x*y": contribution}, [], {})
    await served.sink.client.hset(served.sink.keys.metrics("campaign:a"), "nb.leads.influenced", 9)

    body = await served.get("api/metrics", scope=weird)
    assert body["metrics"] == {weird: {"nb.leads.influenced": 3}}
    assert weird in (await served.get("api/scopes"))["scopes"]
    credits = await served.get("api/credits", subject="lead:x*y")
    assert [tp["touch"] for tp in credits["touchpoints"]] == ["t1"]
    assert (await served.get("api/credits", subject="lead:x"))["touchpoints"] == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "api/metrics"),
        ("PUT", ""),
        ("DELETE", "api/scopes"),
        ("PATCH", "nope"),
        ("HEAD", ""),
    ],
)
async def test_only_get_is_allowed(served: Served, method: str, path: str) -> None:
    async with served.http.request(method, served.url + path, data=b"x") as response:
        assert response.status == 405
        assert response.headers["X-Frame-Options"] == "DENY"
        if method != "HEAD":
            assert response.headers["Allow"] == "GET"


@pytest.mark.parametrize(
    "path",
    [
        "api/series?scope=all",
        "api/leaderboard?metric=x&limit=0",
        "api/leaderboard?metric=x&limit=abc",
        "api/subjects?kind=account",
        f"api/metrics?scope={'x' * 600}",
        "api/events?since=$",
    ],
)
async def test_bad_requests_are_400(served: Served, path: str) -> None:
    async with served.http.get(served.url + path) as response:
        assert response.status == 400


async def test_page_and_vendored_chart_library_are_served_with_security_headers(
    served: Served,
) -> None:
    async with served.http.get(served.url) as page:
        assert page.status == 200
        html = await page.text()
        assert "Content-Security-Policy" in page.headers
        assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert "/static/vendor/uplot/uPlot.iife.min.js" in html
    assert "http://" not in html and "https://" not in html  # nothing from a CDN
    async with served.http.get(served.url + "static/vendor/uplot/uPlot.iife.min.js") as lib:
        assert lib.status == 200 and "uPlot" in await lib.text()
    async with served.http.get(served.url + "static/../web.py") as escape:
        assert escape.status in {403, 404}


async def read_events(response: aiohttp.ClientResponse, count: int) -> list[dict[str, str]]:
    """The next `count` events (comments and `retry:` lines skipped)."""
    events: list[dict[str, str]] = []
    current: dict[str, str] = {}
    while len(events) < count:
        raw = await asyncio.wait_for(response.content.readline(), 20)
        line = raw.decode().rstrip("\n")
        if not line:
            if "event" in current:
                events.append(current)
            current = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            current[name] = current.get(name, "") + value
    return events


async def test_events_follow_the_changes_stream_and_resume(served: Served) -> None:
    run = stream()
    first, second, third = run.batches[:3]
    await served.apply(first)
    cursor = (await served.get("api/metrics"))["cursor"]

    async with served.http.get(served.url + "api/events", params={"since": cursor}) as response:
        assert response.headers["Content-Type"] == "text/event-stream"
        applied = await served.apply(second)
        (event,) = await read_events(response, 1)
    assert event["event"] == "changes"
    assert [event["id"]] == applied.stream_ids
    updates = orjson.loads(event["data"])
    # a total that did not move is told only for the days that did
    assert all("days" in u for u in updates if not u["delta"])
    assert moved(updates) == {(m.scope, m.metric): (m.value, m.delta) for m in applied.metrics}

    later = await served.apply(third)
    headers = {"Last-Event-ID": event["id"]}
    async with served.http.get(served.url + "api/events", headers=headers) as response:
        (resumed,) = await read_events(response, 1)
    assert [resumed["id"]] == later.stream_ids

    await served.sink.client.xtrim(served.sink.keys.changes, maxlen=0)
    async with served.http.get(served.url + "api/events", headers=headers) as response:
        (reset,) = await read_events(response, 1)
    assert reset["event"] == "reset"
