"""GET /api/v1/ws: the event log, live, over a WebSocket.

Each client has its own cursor into the durable event log (gridnode.store.events) and reads from
the log itself, so a slow client holds no buffer in memory and never slows the pipeline or other
clients, and one that reconnects with ``?since=<last id it saw>`` gets every event it missed,
then live ones. One `EventHub` task notices new events (one cheap ``max(id)`` query per
``[api] events_poll_s`` while clients listen; it sees commits of other processes too, such as
``gridnode outbox retry``) and wakes the clients.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web

from gridnode.api.models import EventsQuery
from gridnode.api.problems import FieldProblem, Problem, invalid, pointer
from gridnode.log import get_logger
from gridnode.store import events, views
from gridnode.store.events import Event, EventType

if TYPE_CHECKING:
    from gridnode.api.server import ApiContext, Call

log = get_logger(__name__)

PAGE = 500
HEARTBEAT_S = 30.0
OWNED_METERS_S = 10.0        # how long a user's set of meters is trusted before it is re-read


class EventHub:
    """Knows the newest event id and wakes the clients waiting beyond their cursor."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self.last_id = 0
        self._changed = asyncio.Condition()

    async def run(self) -> None:
        poll = self.ctx.config.api.events_poll_s
        while True:
            if self.ctx.websockets:
                newest = await events.last_id(self.ctx.db)
                if newest > self.last_id:
                    await self.seen(newest)
            await asyncio.sleep(poll)

    async def seen(self, newest: int) -> None:
        async with self._changed:
            if newest > self.last_id:
                self.last_id = newest
                self._changed.notify_all()

    async def wait_beyond(self, cursor: int, timeout_s: float) -> None:
        """Return once an event after `cursor` is known, or after `timeout_s`."""
        async with self._changed:
            try:
                async with asyncio.timeout(timeout_s):
                    await self._changed.wait_for(lambda: self.last_id > cursor)
            except TimeoutError:
                pass


class _Visibility:
    """Which events a user may see: those of its operations and of its meters."""

    def __init__(self, call: Call) -> None:
        from gridnode.api.transactions import owner_of

        self.ctx = call.ctx
        self.owner = owner_of(call.who)
        self._ops: OrderedDict[int, bool] = OrderedDict()
        self._meters: set[str] = set()
        self._meters_at = -OWNED_METERS_S

    async def allows(self, e: Event) -> bool:
        if self.owner is None:
            return True
        if e.operation_id is not None:
            seen = self._ops.get(e.operation_id)
            if seen is None:
                seen = await views.owns(self.ctx.db, self.owner, e.operation_id)
                self._ops[e.operation_id] = seen
                if len(self._ops) > 4096:
                    self._ops.popitem(last=False)
            return seen
        if e.meter_id is not None:
            if time.monotonic() - self._meters_at > OWNED_METERS_S:
                self._meters = await views.owned_meters(self.ctx.db, self.owner)
                self._meters_at = time.monotonic()
            return e.meter_id in self._meters
        return False


async def events_ws(call: Call) -> web.StreamResponse:
    """Stream events (filtered by type, meter, operation); replay from the log with `since`."""
    ctx, q = call.ctx, call.query
    assert isinstance(q, EventsQuery)
    types = _types(q.type)
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=4096)
    if not ws.can_prepare(call.request).ok:
        raise Problem(426, "websocket-expected", "Upgrade required",
                      "this endpoint is a WebSocket: connect with an Upgrade: websocket request",
                      headers={"Upgrade": "websocket"})
    if len(ctx.websockets) >= ctx.config.api.max_websockets:
        raise Problem(503, "too-many-websockets", "Too many WebSocket clients",
                      f"{ctx.config.api.max_websockets} clients listen already "
                      "([api] max_websockets)", headers={"Retry-After": "5"})
    visible = _Visibility(call)
    cursor = q.since if q.since >= 0 else await events.last_id(ctx.db)
    await ws.prepare(call.request)
    ctx.websockets.add(ws)
    listener = asyncio.create_task(_until_closed(ws))
    try:
        while not listener.done():
            top = max(ctx.hub.last_id, cursor)
            batch = await events.since(ctx.db, cursor, limit=PAGE, types=types,
                                       meter_id=q.meter_id, operation_id=q.operation_id)
            for e in batch:
                if await visible.allows(e):
                    await ws.send_json(e.to_json())
                cursor = e.id
            if len(batch) == PAGE:
                continue
            cursor = max(cursor, top)     # every event up to `top` is committed and was read
            wait = asyncio.create_task(ctx.hub.wait_beyond(cursor, HEARTBEAT_S))
            await asyncio.wait([wait, listener], return_when=asyncio.FIRST_COMPLETED)
            wait.cancel()
    except (ConnectionResetError, ConnectionError):
        pass                               # the client went away while we were sending
    finally:
        listener.cancel()
        ctx.websockets.discard(ws)
        if not ws.closed:
            await ws.close()
    return ws


async def _until_closed(ws: web.WebSocketResponse) -> None:
    """Read (and ignore) what the client sends, so pings and its close are handled."""
    async for msg in ws:
        if msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
            break


def _types(raw: str | None) -> list[str]:
    if not raw:
        return []
    names = [t.strip() for t in raw.split(",") if t.strip()]
    known = {str(t) for t in EventType}
    bad = [t for t in names if t not in known]
    if bad:
        raise invalid([FieldProblem(pointer=pointer("query", "type"),
                                    detail=f"unknown event type(s): {', '.join(bad)}",
                                    allowed="comma-separated, from: " + ", ".join(sorted(known)))],
                      "invalid query")
    return names
