"""The dashboard at `/`: static files shipped in the package (gridnode/api/static), and the
login that turns a token into the HttpOnly cookie the page (and its WebSocket) authenticate
with. Nothing is loaded from elsewhere: the node may be offline, and the page's
Content-Security-Policy allows only the node itself."""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING

from aiohttp import web

from gridnode.api.auth import COOKIE, Principal, TokenError, decode
from gridnode.api.models import Login, Session
from gridnode.api.problems import Problem, no_token_secret

if TYPE_CHECKING:
    from gridnode.api.server import Call, Reply

FILES = {"index.html": "text/html", "dashboard.css": "text/css",
         "dashboard.js": "text/javascript"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


@functools.cache
def _read(name: str) -> bytes:
    return resources.files("gridnode.api").joinpath("static", name).read_bytes()


def _file(name: str) -> web.Response:
    return web.Response(body=_read(name), headers={
        "Content-Type": f"{FILES[name]}; charset=utf-8", "Content-Security-Policy": CSP,
        "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"})


async def index(call: Call) -> web.StreamResponse:
    """The dashboard page (no token needed to load it; its data needs one)."""
    return _file("index.html")


async def stylesheet(call: Call) -> web.StreamResponse:
    """The dashboard's stylesheet."""
    return _file("dashboard.css")


async def script(call: Call) -> web.StreamResponse:
    """The dashboard's script."""
    return _file("dashboard.js")


async def login(call: Call) -> web.StreamResponse:
    """Check a token and keep it in an HttpOnly cookie for the dashboard, until it expires."""
    origin = call.request.headers.get("Origin")
    if origin is not None and origin.split("://", 1)[-1] != call.request.host:
        raise Problem(403, "cross-origin", "Forbidden", "log in from the node's own page")
    body: Login = call.body
    secret = call.ctx.secret
    if secret is None:
        raise no_token_secret()
    try:
        who = decode(secret, body.token)
    except TokenError as exc:
        raise Problem(401, "unauthorized", "Unauthorized", str(exc),
                      headers={"WWW-Authenticate": 'Bearer realm="gridnode"'}) from None
    resp = web.Response(text=_session(who).model_dump_json(), content_type="application/json")
    resp.set_cookie(COOKIE, body.token, max_age=max(0, who.exp - int(time.time())), path="/",
                    httponly=True, samesite="Strict", secure=call.request.secure)
    return resp


def _session(who: Principal) -> Session:
    return Session(authenticated=True, sub=who.sub, role=str(who.role),
                   expires_at=datetime.fromtimestamp(who.exp, UTC))


async def session(call: Call) -> Reply:
    """Who the dashboard's cookie says is logged in (not authenticated: log in first)."""
    from gridnode.api.server import Reply

    token = call.request.cookies.get(COOKIE)
    secret = call.ctx.secret
    if not token or secret is None:
        return Reply(Session(authenticated=False))
    try:
        return Reply(_session(decode(secret, token, via_cookie=True)))
    except TokenError:
        return Reply(Session(authenticated=False))


async def logout(call: Call) -> web.StreamResponse:
    """Forget the dashboard's cookie."""
    resp = web.Response(status=204)
    resp.del_cookie(COOKIE, path="/")
    return resp
