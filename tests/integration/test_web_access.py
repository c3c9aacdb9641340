"""The dashboard on a shared network: the access token, the Host/Origin allow-list,
`/healthz`, and a dashboard process that imports no worker code."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator

import aiohttp
import pytest
from pydantic import SecretStr

from streams.settings import Settings
from streams.web import Options, serve
from streams.web.access import Access
from tests.local_redis import scratch_sink

pytestmark = pytest.mark.integration

TOKEN = "correct horse battery staple"
ROUTES = [
    "",
    "partner/slack",
    "login",
    "api/scopes",
    "api/metrics",
    "api/metrics?period=2026Q3",
    "api/table?name=nbex",
    "api/series?scope=all&metric=nb.leads.influenced",
    "api/periods",
    "api/dq",
    "api/status",
    "api/events",
    "static/app.js",
    "static/vendor/uplot/uPlot.iife.min.js",
]


async def served(access: Access) -> AsyncIterator[str]:
    async with (
        scratch_sink() as sink,
        serve(sink.client, sink.keys.prefix, port=0, options=Options(access)) as url,
    ):
        yield url


@pytest.fixture
async def locked() -> AsyncIterator[str]:
    async for url in served(Access(TOKEN)):
        yield url


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1
    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(cookie_jar=jar, timeout=timeout) as session:
        yield session


async def status(http: aiohttp.ClientSession, url: str, **kwargs: object) -> int:
    async with http.get(url, allow_redirects=False, **kwargs) as response:  # type: ignore[arg-type]
        return response.status


@pytest.mark.parametrize("path", ROUTES)
async def test_without_the_token_every_route_but_healthz_is_401(
    locked: str, http: aiohttp.ClientSession, path: str
) -> None:
    assert await status(http, locked + path) == 401
    wrong = {"Authorization": "Bearer correct horse battery stapl"}
    assert await status(http, locked + path, headers=wrong) == 401
    assert await status(http, locked + "healthz") == 200


async def test_bearer_token_and_login_cookie_open_the_api(
    locked: str, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert await status(http, locked + "api/scopes", headers=bearer) == 200

    async with http.get(locked, headers={"Accept": "text/html"}) as page:
        assert page.status == 401
        assert 'action="/login"' in await page.text()  # a browser gets the form
    async with http.post(locked + "login", data={"token": "nope"}) as wrong:
        assert wrong.status == 401
    assert await status(http, locked + "api/scopes") == 401
    async with http.post(locked + "login", data={"token": TOKEN}, allow_redirects=False) as ok:
        assert ok.status == 303 and ok.headers["Location"] == "/"
        cookie = ok.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert TOKEN not in cookie
    assert await status(http, locked + "api/scopes") == 200
    assert await status(http, locked) == 200
    assert TOKEN not in caplog.text  # access log and everything else


@pytest.mark.parametrize("host", ["evil.example", "evil.example:6066", "127.0.0.2", "[::2]:80"])
async def test_a_foreign_host_header_is_421_token_or_not(
    locked: str, http: aiohttp.ClientSession, host: str
) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}", "Host": host}
    assert await status(http, locked + "api/scopes", headers=bearer) == 421
    async for url in served(Access(None)):
        assert await status(http, url + "api/scopes", headers={"Host": host}) == 421
        assert await status(http, url + "api/scopes", headers={"Host": "LOCALHOST:1"}) == 200
        assert await status(http, url + "healthz", headers={"Host": host}) == 200
        foreign = {"Origin": f"http://{host}"}
        assert await status(http, url + "api/scopes", headers=foreign) == 403
        assert await status(http, url + "api/scopes", headers={"Origin": url.rstrip("/")}) == 200


async def test_allowed_hosts_come_from_the_settings(http: aiohttp.ClientSession) -> None:
    with pytest.raises(ValueError, match="set PP_WEB_TOKEN"):
        Access.from_settings(Settings(web_allowed_hosts="dash.example.com"))
    with pytest.raises(ValueError, match="set PP_WEB_TOKEN"):
        Access.from_settings(Settings(web_allowed_hosts="*", web_token=SecretStr("")))
    settings = Settings(web_allowed_hosts="dash.example.com, *", web_token=SecretStr(TOKEN))
    assert Access.from_settings(settings).hosts == {"dash.example.com", "*"}
    assert TOKEN not in repr(settings) and TOKEN not in str(settings.model_dump())
    async for url in served(Access.from_settings(settings)):
        headers = {"Host": "anything.example", "Authorization": f"Bearer {TOKEN}"}
        assert await status(http, url + "api/scopes", headers=headers) == 200
    default = Access.from_settings(Settings(), bind_host="10.1.2.3")
    assert default.hosts == {"localhost", "127.0.0.1", "::1", "10.1.2.3"}
    assert default.token is None
    assert Access.from_settings(Settings(), bind_host="0.0.0.0").hosts == Access().hosts


def test_the_dashboard_imports_no_worker_processing_or_embedded_code() -> None:
    probe = (
        "import sys, streams.web, streams.web.app;"
        "print(sorted(m for m in ('streams.worker', 'streams.processing', 'streams.embedded',"
        " 'streams.runtime') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


def test_the_dashboard_refuses_other_hosts_without_a_token() -> None:
    env = {
        "PATH": os.environ["PATH"],
        "PP_REDIS_URL": "redis://127.0.0.1:1/0",
        "PP_WEB_ALLOWED_HOSTS": "dash.example.com",
    }
    result = subprocess.run(
        [sys.executable, "-m", "streams.web"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "set PP_WEB_TOKEN" in result.stderr


async def test_login_returns_to_the_page_that_asked_and_nowhere_else(
    locked: str, http: aiohttp.ClientSession
) -> None:
    page = "partner/a&b?period=ytd"
    async with http.get(locked + page, headers={"Accept": "text/html"}) as response:
        assert response.status == 401
        assert 'name="next" value="/partner/a&amp;b?period=ytd"' in await response.text()
    for wanted, landing in (
        ("/partner/a&b?period=ytd", "/partner/a&b?period=ytd"),
        ("//evil.example/x", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
    ):
        form = {"token": TOKEN, "next": wanted}
        async with http.post(locked + "login", data=form, allow_redirects=False) as response:
            assert (response.status, response.headers["Location"]) == (303, landing)
    async with http.post(locked + "login", data={"token": "x", "next": "/api/dq"}) as wrong:
        assert wrong.status == 401 and 'value="/api/dq"' in await wrong.text()
