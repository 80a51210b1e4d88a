"""HTTP side of one port: JSON-RPC 2.0 (single and batch) on POST /, pubsub on the WebSocket
upgrade of GET /, /health, and (on the main port) the admin API for faults, slots and snapshots.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Protocol

from aiohttp import web
from pydantic import ValidationError

from simulators.chain.localnet.faults import FaultInjector, PortFaults
from simulators.chain.localnet.pubsub import PubSub
from simulators.chain.localnet.rpc import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    PARSE_ERROR,
    RpcError,
    RpcMethods,
    node_unhealthy,
)

JSON_HEADERS = {"Content-Type": "application/json"}


def _error(code: int, message: str, req_id: Any = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": req_id}


class Admin(Protocol):
    """What the admin endpoints act on (the Localnet implements it)."""

    faults: FaultInjector

    @property
    def slot(self) -> int: ...

    async def advance(self, slots: int = 1) -> None: ...

    async def save_snapshot(self) -> str | None: ...


class RpcServer:
    """The aiohttp application of one port."""

    def __init__(self, methods: RpcMethods, pubsub: PubSub, faults: PortFaults,
                 admin: Admin | None = None) -> None:
        self.methods = methods
        self.pubsub = pubsub
        self.faults = faults
        self.admin = admin
        self.app = web.Application(client_max_size=2**20)
        self.app.router.add_post("/", self.handle_rpc)
        self.app.router.add_get("/", self.handle_get)
        self.app.router.add_get("/health", self.handle_health)
        if admin is not None:
            self.app.router.add_get("/admin/faults", self.get_faults)
            self.app.router.add_post("/admin/faults", self.post_faults)
            self.app.router.add_delete("/admin/faults", self.delete_faults)
            self.app.router.add_post("/admin/advance", self.post_advance)
            self.app.router.add_post("/admin/snapshot", self.post_snapshot)

    # -- JSON-RPC ---------------------------------------------------------------------------

    async def handle_rpc(self, request: web.Request) -> web.StreamResponse:
        f = self.faults.faults
        if self.faults.hit(f.http_error_rate):
            return web.Response(status=503, text="Service Unavailable")
        delay = self.faults.latency_s()
        if delay:
            await asyncio.sleep(delay)
        try:
            body = json.loads(await request.read())
        except ValueError:
            return web.json_response(_error(PARSE_ERROR, "Parse error"))
        unhealthy = self.faults.hit(f.unhealthy_rate)
        sent: list[bool] = []
        if isinstance(body, list):
            if not body:
                return web.json_response(_error(INVALID_REQUEST, "Invalid request"))
            replies = [r for r in (self._one(item, unhealthy, sent) for item in body)
                       if r is not None]
            reply: Any = replies
        else:
            reply = self._one(body, unhealthy, sent)
        if any(sent):
            if self.faults.hit(f.send_timeout_rate):
                await asyncio.sleep(f.timeout_s)
                if request.transport is not None:
                    request.transport.abort()  # type: ignore[attr-defined]
                return web.Response(status=504)
            if self.faults.hit(f.send_error_rate):
                return web.Response(status=502, text="Bad Gateway")
        if reply is None or reply == []:
            return web.Response(status=200)
        return web.Response(text=json.dumps(reply), headers=JSON_HEADERS)

    def _one(self, req: Any, unhealthy: bool, sent: list[bool]) -> dict[str, Any] | None:
        if not isinstance(req, dict) or req.get("jsonrpc") != "2.0" or \
                not isinstance(req.get("method"), str):
            return _error(INVALID_REQUEST, "Invalid request",
                          req.get("id") if isinstance(req, dict) else None)
        req_id = req.get("id")
        params = req.get("params", [])
        if not isinstance(params, list):
            return _error(INVALID_REQUEST, "Invalid request", req_id)
        try:
            if unhealthy:
                raise node_unhealthy(None)
            result = self.methods.call(req["method"], params)
            if req["method"] == "sendTransaction":
                sent.append(True)
        except RpcError as exc:
            out = {"jsonrpc": "2.0", "error": exc.to_json(), "id": req_id}
        except Exception as exc:  # a bug here must not take the node down
            out = _error(INTERNAL_ERROR, f"Internal error: {exc}", req_id)
        else:
            out = {"jsonrpc": "2.0", "result": result, "id": req_id}
        return out if "id" in req else None

    async def handle_get(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self.pubsub.handle(request)
        return web.Response(status=405, text="Used HTTP Method is not allowed. POST or OPTIONS "
                            "is required")

    async def handle_health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok" if self.methods.view.health() is None else "behind")

    # -- admin ------------------------------------------------------------------------------

    @staticmethod
    def _port(request: web.Request) -> int | None:
        """The `?port=N` of a faults request (None: every port); ValueError when malformed."""
        raw = request.query.get("port")
        if raw is None:
            return None
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"port must be a port number, not {raw!r}") from None

    async def get_faults(self, request: web.Request) -> web.Response:
        assert self.admin is not None
        try:
            port = self._port(request)
            if port is not None and port not in self.admin.faults.ports:
                raise ValueError(f"port {port} is not served here")
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        faults = self.admin.faults.faults if port is None else self.admin.faults.ports[port].faults
        return web.json_response(faults.model_dump())

    async def post_faults(self, request: web.Request) -> web.Response:
        assert self.admin is not None
        try:
            port = self._port(request)
            changes = await request.json()
            if not isinstance(changes, dict):
                raise ValueError("body must be a JSON object of fault settings")
            faults = self.admin.faults.update(changes, port=port)
        except ValidationError as exc:
            errors = [{"field": ".".join(str(p) for p in e["loc"]), "error": e["msg"],
                       "value": e.get("input")} for e in exc.errors()]
            return web.json_response({"error": "invalid faults", "details": errors}, status=400)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(faults.model_dump())

    async def delete_faults(self, request: web.Request) -> web.Response:
        """`DELETE /admin/faults?port=N`: the port follows the common faults again."""
        assert self.admin is not None
        try:
            port = self._port(request)
            if port is None:
                raise ValueError("name the port whose own faults to drop: ?port=N")
            faults = self.admin.faults.reset_port(port)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(faults.model_dump())

    async def post_advance(self, request: web.Request) -> web.Response:
        assert self.admin is not None
        try:
            slots = int((await request.json()).get("slots", 1))
        except (ValueError, AttributeError, TypeError):
            return web.json_response({"error": "body must be {\"slots\": n}"}, status=400)
        await self.admin.advance(slots)
        return web.json_response({"slot": self.admin.slot})

    async def post_snapshot(self, request: web.Request) -> web.Response:
        assert self.admin is not None
        path = await self.admin.save_snapshot()
        if path is None:
            return web.json_response({"error": "no state_dir configured"}, status=409)
        return web.json_response({"path": path})
