"""The pages' resources, the partner page's routes and the CSV of the credit explorer."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator
from fractions import Fraction

import aiohttp
import pytest

from models.contrib import Contribution, CreditLine
from sinks.redis_sink import RedisSink
from streams.web import serve
from tests.local_redis import scratch_sink

pytestmark = pytest.mark.integration


@pytest.fixture
async def site() -> AsyncIterator[tuple[RedisSink, str, aiohttp.ClientSession]]:
    async with (
        scratch_sink() as sink,
        serve(sink.client, sink.keys.prefix, port=0) as url,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http,
    ):
        yield sink, url, http


@pytest.mark.parametrize("page", ["", "partner/slack", "partner/a%20b"])
async def test_every_resource_a_page_loads_exists(
    site: tuple[RedisSink, str, aiohttp.ClientSession], page: str
) -> None:
    _, url, http = site
    async with http.get(url + page) as response:
        assert response.status == 200
        html = await response.text()
    linked = re.findall(r'(?:href|src)="(/[^"]*)"', html)
    assert "/static/app.js" in linked and "/static/favicon.svg" in linked
    for path in [*linked, "/favicon.ico"]:  # browsers ask for /favicon.ico by themselves
        async with http.get(url + path.lstrip("/")) as resource:
            assert resource.status == 200, path


async def test_credits_as_csv_and_subjects_of_one_partner(
    site: tuple[RedisSink, str, aiohttp.ClientSession],
) -> None:
    sink, url, http = site
    slack = ("all", "campaign:c1", "partner:slack")
    zoom = ("all", "campaign:c2", "partner:zoom")
    subjects = {
        "opportunity:o1": Contribution(
            {},
            {
                "t1": CreditLine(Fraction(1, 3), 1000, slack, ("ft",), 5),
                "t2": CreditLine(Fraction(2, 3), 2000, zoom, ("lc", "oc"), 9),
            },
        ),
        "opportunity:o2": Contribution({}, {"t3": CreditLine(Fraction(1), 700, zoom, ("ft",), 1)}),
    }
    await sink.apply(subjects, [], {})
    async with http.get(url + "api/credits?subject=opportunity:o1&format=csv") as response:
        assert response.content_type == "text/csv"
        assert "attachment" in response.headers["Content-Disposition"]
        rows = list(csv.reader(io.StringIO(await response.text())))
    assert rows == [
        ["touch", "credit", "share", "units", "positions", "scopes", "ts"],
        ["t1", "1/3", "0.333333", "1000", "ft", "all campaign:c1 partner:slack", "5"],
        ["t2", "2/3", "0.666667", "2000", "lc oc", "all campaign:c2 partner:zoom", "9"],
    ]
    for partner, expected in (
        ("slack", ["opportunity:o1"]),
        ("zoom", ["opportunity:o1", "opportunity:o2"]),
        ("x", []),
    ):
        async with http.get(url + f"api/subjects?kind=opportunity&partner={partner}") as response:
            assert (await response.json())["subjects"] == expected
