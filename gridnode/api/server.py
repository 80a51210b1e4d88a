"""The local HTTP API as a daemon subsystem: aiohttp.web on `[api] bind:port`.

Every route is a `Route` row (method, path, roles, request and response models), which is also
what the OpenAPI document is generated from. One wrapper does for every route what must never be
forgotten: authenticate and rate-limit, cap and parse the body, validate it and the query
against their models, bound the time, and for a POST run the handler inside one store write
transaction that also stores the Idempotency-Key answer. Reads use the API's own read-only
connection, so API load never waits on (nor delays) the writer; writes go through the store's
single writer. Every error is an RFC 9457 problem document (gridnode.api.problems).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError

from gridnode.api.auth import COOKIE, Principal, RateLimiter, Role, Secret, TokenError, decode
from gridnode.api.auth import load_secret as _load_secret
from gridnode.api.problems import (
    FieldProblem,
    Problem,
    from_validation,
    invalid,
    no_token_secret,
    pointer,
)
from gridnode.config import GridnodeConfig
from gridnode.config.api import NO_SECRET
from gridnode.log import get_logger
from gridnode.store import Store, StoreError, WriteTx, idempotency
from gridnode.store.readonly import ReadOnlyStore

log = get_logger(__name__)

SHUTDOWN_S = 2.0                 # open connections get this long once the daemon stops
IDEMPOTENCY_KEEP_MS = 7 * 86400 * 1000
IDEMPOTENCY_PURGE_EVERY_S = 3600.0
MAX_KEY_LEN = 255

Handler = Callable[["Call"], Awaitable["Reply | web.StreamResponse"]]


@dataclass(frozen=True)
class Reply:
    model: BaseModel
    status: int | None = None        # None: the route's `ok`


@dataclass(frozen=True)
class Route:
    """One endpoint; `roles` None means no token is needed."""

    method: str
    path: str
    handler: Handler
    summary: str
    roles: frozenset[Role] | None
    ok: int = 200
    response: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    body_optional: bool = False
    query: type[BaseModel] | None = None
    writes: bool = False            # runs in a write transaction; Idempotency-Key honoured
    errors: tuple[int, ...] = ()
    websocket: bool = False
    description: str = ""
    media_type: str = "application/json"    # of the success answer


READ = frozenset(Role)
WRITE = frozenset({Role.OPERATOR, Role.USER})
OPERATOR = frozenset({Role.OPERATOR})


@dataclass
class ApiContext:
    """What the handlers share: the configuration, the store, the other subsystems."""

    config: GridnodeConfig
    store: Store
    secret: Secret | None
    subsystems: Sequence[Any]               # the daemon's other subsystems (pipeline, meters)
    limiter: RateLimiter
    reader: ReadOnlyStore | None = None     # opened by ApiServer.run
    started_at: float = field(default_factory=time.monotonic)
    problems: Counter[str] = field(default_factory=Counter)   # answered problems by code
    websockets: set[web.WebSocketResponse] = field(default_factory=set)
    hub: Any = None                         # gridnode.api.ws.EventHub
    metrics: Any = None                     # gridnode.api.metrics.Metrics

    @property
    def db(self) -> ReadOnlyStore:
        if self.reader is None:
            raise Problem(503, "starting", "Starting", "the API is not serving yet")
        return self.reader

    def subsystem(self, name: str) -> Any | None:
        return next((s for s in self.subsystems if getattr(s, "name", None) == name), None)


@dataclass
class Call:
    """One request as a handler sees it: validated body and query, who asks, and (for a POST)
    the write transaction it runs in."""

    request: web.Request
    ctx: ApiContext
    route: Route
    principal: Principal | None
    body: Any = None
    query: Any = None
    tx: WriteTx | None = None
    after_commit: list[Callable[[], None]] = field(default_factory=list)

    @property
    def who(self) -> Principal:
        assert self.principal is not None, "the route needs a token"
        return self.principal

    @property
    def write(self) -> WriteTx:
        assert self.tx is not None, "only a writing route has a transaction"
        return self.tx

    def int_param(self, name: str) -> int:
        return int(self.request.match_info[name])


# -- the wrapper every route goes through -----------------------------------------------------

def wrap(ctx: ApiContext, route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        principal = authenticate(ctx, route, request)
        call = Call(request, ctx, route, principal)
        if route.query is not None:
            call.query = _validate(route.query, dict(request.query), "query", status=422)
        if route.websocket:                      # long-lived: no request timeout
            return _respond(route, await route.handler(call))
        async with asyncio.timeout(ctx.config.api.request_timeout_s):
            raw = await _read_json(ctx, route, request)
            if route.body is not None:
                if raw is None and route.body_optional:
                    raw = {}
                call.body = _validate(route.body, raw, None, status=422)
            if route.writes:
                return await _in_write(call, raw)
            reply = await route.handler(call)
        return _respond(route, reply)
    handle.__name__ = route.handler.__name__
    return handle


def authenticate(ctx: ApiContext, route: Route, request: web.Request) -> Principal | None:
    if route.roles is None:
        return None
    if ctx.secret is None:
        raise no_token_secret()
    token, via_cookie = _token(request)
    try:
        if token is None:
            raise TokenError("no token: send 'Authorization: Bearer <token>' (gridnode token "
                             "issue makes one)")
        principal = decode(ctx.secret, token, via_cookie)
    except TokenError as exc:
        _limit(ctx, f"addr:{request.remote}")
        raise Problem(401, "unauthorized", "Unauthorized", str(exc),
                      headers={"WWW-Authenticate": 'Bearer realm="gridnode"'}) from None
    _limit(ctx, f"sub:{principal.sub}")
    if principal.role not in route.roles:
        raise Problem(403, "forbidden", "Forbidden",
                      f"the {principal.role} role may not {route.summary[0].lower()}"
                      f"{route.summary[1:].rstrip('.')} (allowed: "
                      f"{', '.join(sorted(route.roles))})")
    if via_cookie and (route.writes or route.websocket):
        origin = request.headers.get("Origin")
        if origin is not None and origin.split("://", 1)[-1] != request.host:
            raise Problem(403, "cross-origin", "Forbidden",
                          "a token in a cookie is accepted only from the node's own pages")
    return principal


def _token(request: web.Request) -> tuple[str | None, bool]:
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return "", False        # malformed: refused, never silently anonymous
        return value.strip(), False
    cookie = request.cookies.get(COOKIE)
    return (cookie, True) if cookie else (None, False)


def _limit(ctx: ApiContext, key: str) -> None:
    wait = ctx.limiter.take(key)
    if wait > 0:
        raise Problem(429, "rate-limited", "Too many requests",
                      f"more than {ctx.config.api.rate_per_s:g} requests per second (burst "
                      f"{ctx.config.api.rate_burst}); retry in {math.ceil(wait)} s",
                      headers={"Retry-After": str(max(1, math.ceil(wait)))})


async def _read_json(ctx: ApiContext, route: Route, request: web.Request) -> Any:
    """The request's JSON body (None when it has none); 413, 415 or 400 when it is unusable."""
    limit = ctx.config.api.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    if not request.can_read_body:
        if route.body is not None and not route.body_optional:
            raise Problem(400, "no-body", "Missing body", "this request needs a JSON body")
        return None
    if route.body is None:
        raise Problem(400, "unexpected-body", "Unexpected body", "this request takes no body")
    if request.content_type != "application/json":
        raise Problem(415, "unsupported-media-type", "Unsupported media type",
                      f"the body must be application/json, not {request.content_type or 'untyped'}")
    try:
        data = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(limit) from None
    if not data.strip() and route.body_optional:
        return None
    try:
        return json.loads(data, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        where = (f" at line {exc.lineno} column {exc.colno}"
                 if isinstance(exc, json.JSONDecodeError) else "")
        raise Problem(400, "malformed-json", "Malformed JSON",
                      f"the body is not valid JSON{where}",
                      errors=[FieldProblem(pointer="", detail=f"not valid JSON{where}",
                                           allowed="one JSON object (UTF-8)")]) from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _too_large(limit: int) -> Problem:
    return Problem(413, "body-too-large", "Body too large",
                   f"the body exceeds {limit} bytes ([api] max_body_bytes)")


def _validate(model: type[BaseModel], raw: Any, where: str | None, *, status: int) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        errors = from_validation(exc, (where,) if where else ())
        raise invalid(errors, f"invalid {where or 'body'}", status=status) from None


def _respond(route: Route, reply: Reply | web.StreamResponse) -> web.StreamResponse:
    if isinstance(reply, web.StreamResponse):
        return reply
    body = reply.model.model_dump_json(by_alias=True)
    return web.Response(status=reply.status or route.ok, text=body,
                        content_type="application/json")


async def _in_write(call: Call, raw: Any) -> web.StreamResponse:
    """Run a POST in one write transaction together with its Idempotency-Key answer."""
    request, ctx, route = call.request, call.ctx, call.route
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (0 < len(key) <= MAX_KEY_LEN and key.isascii()
                                and key.isprintable()):
        raise invalid([FieldProblem(pointer=pointer("header", "Idempotency-Key"),
                                    detail="not a usable idempotency key",
                                    allowed=f"1-{MAX_KEY_LEN} printable ASCII characters")],
                      "invalid header", status=400)
    digest = hashlib.sha256(
        f"{request.method} {request.path}\n".encode()
        + json.dumps(raw, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    sub = call.who.sub
    if key is not None:
        replay = await _replay(await idempotency.get(ctx.db, sub, key), digest, key)
        if replay is not None:
            return replay
    async with ctx.store.write() as tx:
        if key is not None:
            replay = await _replay(await idempotency.get(tx, sub, key), digest, key)
            if replay is not None:
                return replay
        call.tx = tx
        reply = await route.handler(call)
        assert isinstance(reply, Reply)
        status = reply.status or route.ok
        body = reply.model.model_dump_json(by_alias=True)
        if key is not None:
            await idempotency.put(tx, sub, key, digest, status, body)
    for fn in call.after_commit:
        fn()
    return web.Response(status=status, text=body, content_type="application/json")


async def _replay(stored: idempotency.Stored | None, digest: str,
                  key: str) -> web.Response | None:
    if stored is None:
        return None
    if stored.request_sha256 != digest:
        raise Problem(422, "idempotency-key-reused", "Idempotency key reused",
                      f"the Idempotency-Key {key!r} was used for a different request; a retry "
                      "must repeat the same method, path and body")
    return web.Response(status=stored.status, text=stored.body, content_type="application/json",
                        headers={"Idempotent-Replayed": "true"})


# -- errors -----------------------------------------------------------------------------------

def error_middleware(ctx: ApiContext) -> Any:
    @web.middleware
    async def problems(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)
        except Problem as exc:
            return _problem(ctx, exc, request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return _problem(ctx, _from_http(exc), request)
        except TimeoutError:
            return _problem(ctx, Problem(
                503, "timeout", "Request timed out",
                f"the request took longer than {ctx.config.api.request_timeout_s:g} s "
                "([api] request_timeout_s); nothing of it was kept",
                headers={"Retry-After": "1"}), request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:        # a bug: logged with its traceback, never shown
            error_id = uuid.uuid4().hex
            log.exception("api request failed", exc_info=exc, error_id=error_id,
                          method=request.method, path=request.path)
            return _problem(ctx, Problem(500, "internal", "Internal error",
                                         "the node could not answer this request; the node's "
                                         "log has the details under this error_id",
                                         error_id=error_id), request)
    return problems


def _problem(ctx: ApiContext, exc: Problem, request: web.Request) -> web.Response:
    ctx.problems[exc.code] += 1
    return exc.response(request.path)


def _from_http(exc: web.HTTPException) -> Problem:
    if exc.status == 404:
        return Problem(404, "not-found", "Not found", "no such endpoint (GET /api/v1/openapi.json "
                       "lists them)")
    if exc.status == 405:
        allowed = sorted(getattr(exc, "allowed_methods", ()) or ())
        return Problem(405, "method-not-allowed", "Method not allowed",
                       f"this endpoint takes {', '.join(allowed)}",
                       headers={"Allow": ", ".join(allowed)})
    if exc.status == 413:
        return Problem(413, "body-too-large", "Body too large", "the body is too large")
    return Problem(exc.status, "http-error", exc.reason, exc.reason)


# -- the subsystem ----------------------------------------------------------------------------

def build_app(ctx: ApiContext, routes: Sequence[Route]) -> web.Application:
    app = web.Application(client_max_size=ctx.config.api.max_body_bytes,
                          middlewares=[error_middleware(ctx)])
    for route in routes:
        app.router.add_route(route.method, route.path, wrap(ctx, route))
    app.on_shutdown.append(lambda _app: _close_websockets(ctx))
    return app


async def _close_websockets(ctx: ApiContext) -> None:
    for ws in list(ctx.websockets):
        await ws.close(code=1001, message=b"node stopping")


class ApiServer:
    """The API subsystem: `started` is set once the port listens (the daemon says READY after)."""

    name = "api"

    def __init__(self, ctx: ApiContext, routes: Sequence[Route]) -> None:
        self.ctx = ctx
        self.routes = list(routes)
        self.started = asyncio.Event()
        self.port: int | None = None
        self._progress = time.monotonic()

    @classmethod
    def from_config(cls, config: GridnodeConfig, store: Store,
                    subsystems: Sequence[Any]) -> ApiServer:
        """Built with the configuration's secret (ConfigError names a bad secret file); binds
        nothing until `run`."""
        from gridnode.api.metrics import Metrics
        from gridnode.api.routes import ROUTES
        from gridnode.api.ws import EventHub

        api = config.api
        ctx = ApiContext(config, store, _load_secret(api, config.source), subsystems,
                         RateLimiter(api.rate_per_s, api.rate_burst))
        ctx.hub = EventHub(ctx)
        ctx.metrics = Metrics(ctx)
        return cls(ctx, ROUTES)

    def progress(self) -> float:
        """The server has no rounds of its own: it progresses while its tasks run (a stuck
        event loop is the daemon's lag check)."""
        if self.started.is_set():
            self._progress = time.monotonic()
        return self._progress

    async def run(self) -> None:
        api = self.ctx.config.api
        self.ctx.reader = await ReadOnlyStore.open(self.ctx.store.path)
        runner = web.AppRunner(build_app(self.ctx, self.routes), access_log=None,
                               shutdown_timeout=SHUTDOWN_S)
        try:
            await runner.setup()
            site = web.TCPSite(runner, str(api.bind), api.port)
            await site.start()
            self.port = _bound_port(runner, api.port)
            log.info("api listening", url=f"http://{_host(str(api.bind))}:{self.port}",
                     tokens=self.ctx.secret.source if self.ctx.secret else "none (no secret)")
            if self.ctx.secret is None:
                log.warning("api tokens disabled", reason=NO_SECRET)
            self.ctx.metrics.attach()
            self.started.set()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.ctx.hub.run())
                tg.create_task(self._purge_idempotency())
        finally:
            await asyncio.shield(self._cleanup(runner))

    async def _cleanup(self, runner: web.AppRunner) -> None:
        self.ctx.metrics.detach()
        try:
            async with asyncio.timeout(SHUTDOWN_S + 1):
                await runner.cleanup()
        except TimeoutError:
            log.warning("api connections still open at stop; closed", waited_s=SHUTDOWN_S + 1)
        finally:
            if self.ctx.reader is not None:
                await self.ctx.reader.close()

    async def _purge_idempotency(self) -> None:
        while True:
            try:
                async with self.ctx.store.write() as tx:
                    gone = await idempotency.purge(
                        tx, int(time.time() * 1000) - IDEMPOTENCY_KEEP_MS)
            except StoreError as exc:       # a full disk is waited out; the next round retries
                log.debug("idempotency answers not purged", error=str(exc))
            else:
                if gone:
                    log.debug("idempotency answers forgotten", count=gone)
            await asyncio.sleep(IDEMPOTENCY_PURGE_EVERY_S)


def _bound_port(runner: web.AppRunner, configured: int) -> int:
    for addr in runner.addresses:
        if isinstance(addr, tuple) and len(addr) >= 2:
            return int(addr[1])
    return configured


def _host(bind: str) -> str:
    return f"[{bind}]" if ":" in bind else bind
