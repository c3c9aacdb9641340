"""Who may use the dashboard: a Host/Origin allow-list and an optional access token.

The dashboard shows commercial data, so on a shared network it needs two
defences (docs/security.md, "Dashboard"):

- **DNS rebinding**: a page on ``evil.example`` whose name an attacker later
  points at 127.0.0.1 can read a loopback service from the victim's browser,
  the same origin as far as the browser knows.  The browser still sends
  ``Host: evil.example``, so answering only the allowed names (loopback by
  default) defeats it: any other Host gets ``421 Misdirected Request``, and a
  request whose ``Origin`` names another host gets ``403``.
- **Access token** (`PP_WEB_TOKEN`): when set, every route but ``/healthz``
  needs it, as ``Authorization: Bearer <token>`` (scripts) or the session
  cookie that the login form sets (browsers; the form POSTs the token, so it
  never sits in a URL, a history or an access log).  The cookie holds an HMAC
  of the token, not the token, and is ``HttpOnly; SameSite=Strict``.
  Comparisons are constant-time (`hmac.compare_digest`).
"""

from __future__ import annotations

import hashlib
import hmac
import html
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Middleware

from streams.settings import LOOPBACK_NAMES, Settings, parse_hosts

__all__ = ["OPEN_PATHS", "Access", "access_middleware", "login", "login_form"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

COOKIE: Final = "pp_session"
_LOGIN_PAGE: Final = Path(str(resources.files("streams").joinpath("static", "login.html")))
OPEN_PATHS: Final = frozenset({"/healthz"})
"""Routes that need neither a token nor an allowed Host (a health probe carries neither)."""
_WILDCARD_BINDS: Final = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 (names, not a bind)


@dataclass(frozen=True, slots=True)
class Access:
    """The allow-list and the token; `hosts` containing ``*`` allows any Host."""

    token: str | None = None
    hosts: frozenset[str] = parse_hosts(LOOPBACK_NAMES)

    @classmethod
    def from_settings(cls, settings: Settings, bind_host: str | None = None) -> Access:
        """`PP_WEB_TOKEN` and `PP_WEB_ALLOWED_HOSTS`, plus the address the server binds
        (a browser that reaches it by that address must be let in).

        Without a token only the loopback names may be allowed (ValueError
        otherwise): a dashboard reachable from other machines needs a login,
        whatever the container's port publishing says.
        """
        token = settings.web_token.get_secret_value() if settings.web_token else None
        hosts = settings.web_hosts
        if not token and not hosts <= parse_hosts(LOOPBACK_NAMES):
            raise ValueError(
                "PP_WEB_ALLOWED_HOSTS names hosts beyond loopback: set PP_WEB_TOKEN too "
                "(without a token the dashboard answers on loopback only)"
            )
        return cls(token or None, hosts).binding(bind_host)

    def binding(self, bind_host: str | None) -> Access:
        """This access with a specific bind address added to the allowed hosts."""
        if bind_host is None or bind_host.strip("[]") in _WILDCARD_BINDS:
            return self
        return Access(self.token, self.hosts | {bind_host.strip("[]").lower()})

    def host_allowed(self, authority: str | None) -> bool:
        """Whether a ``Host`` (``name[:port]``) or an Origin's host is allowed."""
        if "*" in self.hosts:
            return True
        return authority is not None and _hostname(authority) in self.hosts

    def session(self) -> str:
        """The cookie value for this token: an HMAC, so the cookie does not reveal it."""
        assert self.token is not None
        return hmac.new(self.token.encode(), b"partnerpulse-dashboard", hashlib.sha256).hexdigest()

    def authorized(self, request: web.Request) -> bool:
        """Whether the request carries the token (bearer) or the session cookie."""
        if self.token is None:
            return True
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), self.token.encode()):
            return True
        cookie = request.cookies.get(COOKIE, "")
        return hmac.compare_digest(cookie.encode(), self.session().encode())


def _hostname(authority: str) -> str:
    """The host name of ``name``, ``name:port``, ``[v6]`` or ``[v6]:port``, lower-cased."""
    text = authority.strip().lower()
    if text.startswith("["):
        return text[1 : text.find("]")] if "]" in text else text
    if text.count(":") == 1:
        text = text.partition(":")[0]
    return text.rstrip(".")


def _origin_host(origin: str) -> str | None:
    """The authority of an ``Origin`` header (``scheme://host[:port]``); None for ``null``."""
    _, sep, authority = origin.partition("://")
    return authority if sep else None


def access_middleware(
    access: Access, unauthorized: Callable[[web.Request], web.Response]
) -> Middleware:
    """Middleware enforcing `access`; `unauthorized` builds the 401 answer (login form
    or JSON)."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS:
            return await handler(request)
        if not access.host_allowed(request.headers.get("Host")):
            raise web.HTTPMisdirectedRequest(text="this dashboard does not answer to that host")
        # `Origin: null` is what a browser sends on a form POST under our
        # `Referrer-Policy: no-referrer` (and from sandboxes): it names no other
        # site, and the Host check above already applies.
        origin = request.headers.get("Origin")
        if origin not in (None, "null") and not access.host_allowed(_origin_host(origin)):
            raise web.HTTPForbidden(text="cross-origin request refused")
        if request.path == "/login" or access.authorized(request):
            return await handler(request)
        return unauthorized(request)

    return check


async def login(request: web.Request, access: Access) -> web.StreamResponse:
    """``POST /login`` (form fields ``token`` and ``next``): the session cookie and a
    redirect to ``next`` (the page that asked for the login).

    A wrong token is a 401 with the form again; ``GET /login`` shows the form,
    or goes straight to the page when already authorized (or no token is set).
    """
    if access.token is None or (request.method == "GET" and access.authorized(request)):
        return _to("/")
    if request.method == "GET":
        return login_form("/")
    form = await request.post()
    given, wanted = form.get("token"), form.get("next")
    target = local_path(wanted if isinstance(wanted, str) else None)
    if not isinstance(given, str) or not hmac.compare_digest(given.encode(), access.token.encode()):
        return login_form(target)
    response = _to(target)
    response.set_cookie(
        COOKIE,
        access.session(),
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        path="/",
    )
    return response


def login_form(target: str) -> web.Response:
    """401 with the login form, which comes back to `target` after signing in."""
    page = _LOGIN_PAGE.read_text(encoding="utf-8")
    page = page.replace("{{next}}", html.escape(local_path(target), quote=True))
    headers = {"WWW-Authenticate": 'Bearer realm="partnerpulse"', "Cache-Control": "no-store"}
    return web.Response(text=page, status=401, content_type="text/html", headers=headers)


def local_path(text: str | None) -> str:
    """`text` when it is a path of this site, else ``/`` (never an open redirect)."""
    if text and text.startswith("/") and not text.startswith("//") and "\\" not in text:
        return text
    return "/"


def _to(path: str) -> web.Response:
    return web.Response(status=303, headers={"Location": path})
