"""The pages' resources, the partner page's routes and the CSV of the credit explorer."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator
from fractions import Fraction

import pytest

from models.subject import Contribution, CreditLine
from tests.integration.web_client import Served, served

pytestmark = pytest.mark.integration


@pytest.fixture
async def site() -> AsyncIterator[Served]:
    async with served() as fresh:
        yield fresh


@pytest.mark.parametrize("page", ["", "partner/slack", "partner/a%20b"])
async def test_every_resource_a_page_loads_exists(site: Served, page: str) -> None:
    url, http = site.url, site.http
    async with http.get(url + page) as response:
        assert response.status == 200
        html = await response.text()
    linked = re.findall(r'(?:href|src)="(/[^"]*)"', html)
    assert "/static/app.js" in linked and "/static/favicon.svg" in linked
    for path in [*linked, "/favicon.ico"]:  # browsers ask for /favicon.ico by themselves
        async with http.get(url + path.lstrip("/")) as resource:
            assert resource.status == 200, path


async def test_credits_as_csv_and_subjects_of_one_partner(
    site: Served,
) -> None:
    sink, url, http = site.sink, site.url, site.http
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
