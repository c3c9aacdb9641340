"""Windows and periods in the dashboard API: `/api/metrics?from=&to=` / `period=`,
`/api/series?bucket=`, `/api/table` with the previous period, and their CSV.

Redis is seeded through the real sink (`RedisSink.apply`) with contributions
that carry `<metric>@YYYY-MM-DD` series points, the layout the engine writes;
every expectation below is summed by hand from those points.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from models.derived import goal_member
from models.periods import Calendar
from models.subject import Contribution
from streams.web import Options
from tests.integration.web_client import Served
from tests.integration.web_client import served as served_with

pytestmark = pytest.mark.integration

SLACK = {
    "nb.leads.influenced@2026-06-30": 4,  # Q2
    "nb.leads.influenced@2026-07-01": 1,  # Q3 ...
    "nb.leads.influenced@2026-08-15": 2,
    "nb.leads.influenced@2026-09-30": 3,
    "nb.leads.influenced@2026-10-01": 5,  # Q4
    "nb.cw.attributed_arr@2026-04-02": 150_000,
    "nb.cw.attributed_arr@2026-09-01": 250_050,
}
ZOOM = {"nb.leads.influenced@2026-07-20": 7, "nb.cw.attributed_arr@2026-08-03": 99}


def contribution(scope: str, points: dict[str, int]) -> Contribution:
    """The points, as the engine publishes them (the sink derives the totals)."""
    return Contribution({(scope, m): v for m, v in points.items()}, {})


async def serving(calendar: Calendar) -> AsyncIterator[Served]:
    async with served_with(Options(calendar=calendar)) as site:
        subjects = {
            "lead:s": contribution("partner:slack", SLACK),
            "lead:z": contribution("partner:zoom", ZOOM),
        }
        await site.sink.apply(subjects, [], {})
        yield site


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    async for s in serving(Calendar()):
        yield s


@pytest.fixture
async def february() -> AsyncIterator[Served]:
    async for s in serving(Calendar(2)):
        yield s


async def test_windowed_metrics_sum_the_days_and_give_the_previous_period(served: Served) -> None:
    scopes = ["partner:slack", "partner:zoom"]
    metrics = ["nb.leads.influenced", "nb.cw.attributed_arr"]
    body = await served.get("api/metrics", period="2026Q3", scope=scopes, metric=metrics)
    assert body["window"] == {"from": "2026-07-01", "to": "2026-09-30"}
    assert body["metrics"] == {
        "partner:slack": {"nb.leads.influenced": 6, "nb.cw.attributed_arr": 250_050},
        "partner:zoom": {"nb.leads.influenced": 7, "nb.cw.attributed_arr": 99},
    }
    assert body["previous"] == {
        "window": {"from": "2026-04-01", "to": "2026-06-30"},
        "metrics": {
            "partner:slack": {"nb.leads.influenced": 4, "nb.cw.attributed_arr": 150_000},
            "partner:zoom": {},
        },
    }
    days = await served.get(
        "api/metrics", scope="partner:slack", **{"from": "2026-08-15", "to": "2026-10-01"}
    )
    assert days["metrics"] == {
        "partner:slack": {"nb.leads.influenced": 10, "nb.cw.attributed_arr": 250_050}
    }
    assert days["previous"]["window"] == {"from": "2026-06-28", "to": "2026-08-14"}  # 48 days
    assert days["previous"]["metrics"]["partner:slack"] == {"nb.leads.influenced": 5}
    rows = await served.get("api/metrics", period="2026Q3", scope="partner:zoom", format="csv")
    assert rows == [
        ["scope", "metric", "value", "previous"],
        ["partner:zoom", "nb.cw.attributed_arr", "99", "0"],
        ["partner:zoom", "nb.leads.influenced", "7", "0"],
    ]


async def test_a_february_fiscal_year_moves_the_quarters(february: Served) -> None:
    body = await february.get("api/metrics", period="2026Q3", scope="partner:slack")
    assert body["window"] == {"from": "2026-08-01", "to": "2026-10-31"}
    assert body["metrics"]["partner:slack"] == {
        "nb.leads.influenced": 10,
        "nb.cw.attributed_arr": 250_050,
    }
    series = await february.get(
        "api/series", scope="partner:slack", metric="nb.leads.influenced", bucket="quarter"
    )
    # fiscal quarters starting May, August, November (2026Q2 = May-July)
    assert series["points"] == [["2026-05-01", 5], ["2026-08-01", 10]]


async def test_reading_a_quarter_of_every_nbex_metric_of_every_partner_is_one_round_trip(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    trips: list[str] = []
    command, execute = Redis.execute_command, Pipeline.execute

    async def counted_command(self: Redis, *args: Any, **options: Any) -> Any:
        if not isinstance(self, Pipeline):
            trips.append(str(args[0]))
        return await command(self, *args, **options)  # type: ignore[no-untyped-call]

    async def counted_execute(self: Pipeline, *args: Any, **options: Any) -> Any:
        trips.append("pipeline")
        return await execute(self, *args, **options)

    monkeypatch.setattr(Redis, "execute_command", counted_command)
    monkeypatch.setattr(Pipeline, "execute", counted_execute)
    partners = [f"partner:p{i}" for i in range(40)] + ["partner:slack"]
    nbex = [f"nb.{s}" for s in ("leads.influenced", "mqls.influenced")] + [
        f"{b}.{s}.{k}"
        for b in ("nb", "ex")
        for s in ("s2", "cw")
        for k in ("influenced", "influenced_arr", "attributed_arr")
    ]
    body = await served.get("api/metrics", period="2026Q3", scope=partners, metric=nbex)
    assert trips == ["pipeline"]
    assert body["metrics"]["partner:slack"] == {
        "nb.leads.influenced": 6,
        "nb.cw.attributed_arr": 250_050,
    }
    assert body["metrics"]["partner:p7"] == {}


async def test_series_by_bucket_within_a_window(served: Served) -> None:
    def get(**params: str) -> Any:
        return served.get(
            "api/series", scope="partner:slack", metric="nb.leads.influenced", **params
        )

    assert (await get())["points"] == [
        ["2026-06-30", 4],
        ["2026-07-01", 1],
        ["2026-08-15", 2],
        ["2026-09-30", 3],
        ["2026-10-01", 5],
    ]
    months = await get(bucket="month", period="2026")
    assert months["points"] == [
        ["2026-06-01", 4],
        ["2026-07-01", 1],
        ["2026-08-01", 2],
        ["2026-09-01", 3],
        ["2026-10-01", 5],
    ]
    # weeks start on Monday: 2026-06-29 is a Monday, so 06-30 and 07-01 share a week
    weeks = await get(bucket="week", **{"from": "2026-06-01", "to": "2026-08-31"})
    assert weeks["points"] == [["2026-06-29", 5], ["2026-08-10", 2]]
    assert (await get(bucket="quarter"))["points"] == [
        ["2026-04-01", 4],
        ["2026-07-01", 6],
        ["2026-10-01", 5],
    ]
    assert await get(bucket="quarter", format="csv") == [
        ["quarter", "nb.leads.influenced"],
        ["2026-04-01", "4"],
        ["2026-07-01", "6"],
        ["2026-10-01", "5"],
    ]


@pytest.mark.parametrize(
    "query",
    [
        "api/series?scope=all&metric=x&bucket=year",
        "api/metrics?period=2026Q5",
        "api/metrics?from=2026-01-01",
        "api/metrics?from=2026-02-01&to=2026-01-01",
        "api/metrics?from=yesterday&to=today",
        "api/table?name=nope",
        "api/table?name=nbex&format=xlsx",
    ],
)
async def test_bad_windows_are_400(served: Served, query: str) -> None:
    async with served.http.get(served.url + query) as response:
        assert response.status == 400


async def test_the_nbex_table_in_a_window_with_its_previous_period_and_csv(served: Served) -> None:
    table = await served.get("api/table", name="nbex", period="2026Q3")
    assert table["window"] == {"from": "2026-07-01", "to": "2026-09-30"}
    assert table["previous_window"] == {"from": "2026-04-01", "to": "2026-06-30"}
    rows = {row["key"]: row for row in table["rows"]}
    assert list(rows) == ["all", "partner:slack", "partner:zoom"]
    slack = rows["partner:slack"]
    assert slack["values"]["nb.leads.influenced"] == 6
    assert slack["values"]["nb.cw.attributed_arr"] == 2500.5  # dollars, not cents
    assert slack["previous"]["nb.cw.attributed_arr"] == 1500
    assert slack["values"]["nb.mqls.influenced"] is None  # no series for it: unknown in a window
    assert rows["partner:zoom"]["values"]["nb.cw.attributed_arr"] == 0.99

    lines = await served.get("api/table", name="nbex", period="2026Q3", format="csv")
    labels = [c["label"] for c in table["columns"]]
    assert len(lines[0]) == 1 + 2 * len(labels)
    assert lines[0][labels.index("Won attr. ARR") + 1] == "New Business Won attr. ARR (USD)"
    keys = [c["key"] for c in table["columns"]]
    for line, row in zip(lines[1:], table["rows"], strict=True):
        expected = [row["values"][k] for k in keys] + [row["previous"][k] for k in keys]
        assert line == [row["label"], *("" if v is None else str(v) for v in expected)]

    everything = await served.get("api/table", name="nbex")
    assert everything["window"] is None and "previous" not in everything["rows"][0]
    slack_all = next(r for r in everything["rows"] if r["key"] == "partner:slack")
    assert slack_all["values"]["nb.leads.influenced"] == 15
    assert slack_all["values"]["nb.mqls.influenced"] == 0


async def test_periods_are_the_fiscal_calendar_around_today(february: Served) -> None:
    body = await february.get("api/periods")
    today = date.fromisoformat(body["today"])
    presets = {p["id"]: p for p in body["presets"]}
    assert list(presets) == ["all", "this_quarter", "last_quarter", "qtd", "ytd", "t12m"]
    this, last = presets["this_quarter"], presets["last_quarter"]
    first = date.fromisoformat(this["from"])
    assert first.day == 1 and (first.month - 2) % 3 == 0  # Feb, May, Aug, Nov
    assert first <= today <= date.fromisoformat(this["to"])
    assert date.fromisoformat(last["to"]) == first - timedelta(days=1)
    assert this["previous"] == {"from": last["from"], "to": last["to"]}
    assert presets["qtd"]["from"] == this["from"] and presets["qtd"]["to"] == body["today"]
    ytd = date.fromisoformat(presets["ytd"]["from"])
    assert ytd.month == 2 and ytd.day == 1 and ytd <= today
    assert presets["t12m"]["to"] == body["today"]


async def test_goals_and_data_quality_do_not_depend_on_the_window(served: Served) -> None:
    registry = Contribution(
        {
            ("all", "dq.late_events"): 3,
            ("campaign:c", "goal.target:nb.leads.influenced"): 10,
            ("campaign:c", goal_member("nb.leads.influenced", "c")): 10,
            ("campaign:c", "nb.leads.influenced"): 4,
        },
        {},
    )
    await served.sink.apply({"campaign:c": registry}, [], {})
    for params in ({}, {"period": "2026Q3"}):
        dq = await served.get("api/table", name="dq", **params)
        assert dq["previous_window"] is None
        rows = {row["key"]: row["values"]["value"] for row in dq["rows"]}
        assert rows["dq.late_events"] == 3 and rows["dq.dead_letters"] == 0
        goals = await served.get("api/table", name="goals", **params)
        (goal,) = goals["rows"]  # no period: shown in every window, over the running total
        assert goal["values"]["period"] == "no period (running total)"
        assert (goal["values"]["actual"], goal["values"]["goal.attainment"]) == (4, 0.4)
