"""WebSocket pubsub: signature, logs, account, program, slot and root subscriptions.

After every block the hub walks each commitment level forward to the slot that level has reached
in its view and notifies what those blocks carried. As on a real node, a signature subscription
made after its transaction reached the requested commitment is never notified; clients must
also poll getSignatureStatuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from simulators.chain.localnet import encoding
from simulators.chain.localnet.faults import PortFaults
from simulators.chain.localnet.ledger import COMMITMENT_DEPTH, Block
from simulators.chain.localnet.rpc import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    RpcError,
    View,
    _pubkey,
    _signature,
    context,
)

_SUBSCRIBE = {"signatureSubscribe": "signature", "logsSubscribe": "logs",
              "accountSubscribe": "account", "programSubscribe": "program",
              "slotSubscribe": "slot", "rootSubscribe": "root"}
_UNSUBSCRIBE = {name.replace("Subscribe", "Unsubscribe"): kind for name, kind in _SUBSCRIBE.items()}
_EMPTY_ACCOUNT = {"lamports": 0, "owner": "11111111111111111111111111111111",
                  "executable": False, "rentEpoch": 0}


@dataclass(eq=False)
class Subscription:
    id: int
    kind: str
    commitment: str
    conn: Connection
    key: str | None = None  # signature, account or program key, or logs mention
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(eq=False)
class Connection:
    ws: web.WebSocketResponse
    transport: asyncio.BaseTransport | None
    subs: dict[int, Subscription] = field(default_factory=dict)
    outbox: asyncio.Queue[str] = field(default_factory=asyncio.Queue)


class PubSub:
    """Subscriptions of one view (port), and delivery of block events to them."""

    _ids = itertools.count(1)

    def __init__(self, view: View, faults: PortFaults) -> None:
        self.view = view
        self.ledger = view.ledger
        self.faults = faults
        self.connections: set[Connection] = set()
        self.subs: dict[int, Subscription] = {}
        tip = view.tip
        self.delivered = {c: self.ledger.commitment_slot(tip, c) for c in COMMITMENT_DEPTH}
        self.last_tip = tip
        faults.close_websockets.append(self.close_all)

    # -- connections ------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        conn = Connection(ws, request.transport)
        self.connections.add(conn)
        sender = asyncio.create_task(self._send_loop(conn))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    reply = self._request(conn, msg.data)
                    if reply is not None:
                        conn.outbox.put_nowait(json.dumps(reply))
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            self._drop(conn)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        return ws

    async def _send_loop(self, conn: Connection) -> None:
        """One writer per connection keeps replies and notifications in order."""
        while True:
            text = await conn.outbox.get()
            if conn.ws.closed:
                return
            try:
                await conn.ws.send_str(text)
            except ConnectionError:
                return

    def _drop(self, conn: Connection) -> None:
        self.connections.discard(conn)
        for sub_id in conn.subs:
            self.subs.pop(sub_id, None)
        conn.subs.clear()

    def close_all(self) -> None:
        """Close every open WebSocket (a fault), as a restarting node would."""
        for conn in list(self.connections):
            self._close(conn)

    def _close(self, conn: Connection) -> None:
        """Drop the TCP connection without a close frame: the client sees code 1006."""
        self._drop(conn)
        if conn.transport is not None and not conn.transport.is_closing():
            conn.transport.abort()  # type: ignore[attr-defined]

    def _request(self, conn: Connection, text: str) -> dict[str, Any] | None:
        try:
            req = json.loads(text)
        except ValueError:
            return {"jsonrpc": "2.0", "error": {"code": PARSE_ERROR, "message": "Parse error"},
                    "id": None}
        if not isinstance(req, dict) or not isinstance(req.get("method"), str):
            return {"jsonrpc": "2.0", "error": {"code": INVALID_REQUEST,
                                                "message": "Invalid request"}, "id": None}
        req_id = req.get("id")
        params = req.get("params") or []
        try:
            result = self._call(conn, req["method"], params)
        except RpcError as exc:
            return {"jsonrpc": "2.0", "error": exc.to_json(), "id": req_id}
        return {"jsonrpc": "2.0", "result": result, "id": req_id}

    def _call(self, conn: Connection, method: str, params: list[Any]) -> Any:
        if method in _UNSUBSCRIBE:
            sub_id = params[0] if params else None
            sub = self.subs.get(sub_id) if isinstance(sub_id, int) else None
            if sub is None or sub.conn is not conn or sub.kind != _UNSUBSCRIBE[method]:
                raise RpcError(INVALID_PARAMS, "Invalid subscription id.")
            self._remove(sub)
            return True
        kind = _SUBSCRIBE.get(method)
        if kind is None:
            raise RpcError(METHOD_NOT_FOUND, "Method not found")
        key: str | None = None
        cfg_index = 1
        if kind == "signature":
            key = str(_signature(params[0] if params else None))
        elif kind in ("account", "program"):
            key = str(_pubkey(params[0] if params else None))
        elif kind == "logs":
            flt = params[0] if params else None
            if flt in ("all", "allWithVotes"):
                key = None
            elif isinstance(flt, dict) and isinstance(flt.get("mentions"), list) \
                    and len(flt["mentions"]) == 1:
                key = str(_pubkey(flt["mentions"][0]))
            else:
                raise RpcError(INVALID_PARAMS, "Invalid params: logs filter must be \"all\" or "
                               "{\"mentions\": [one address]}")
        else:
            cfg_index = 0
        cfg = params[cfg_index] if len(params) > cfg_index and isinstance(
            params[cfg_index], dict) else {}
        commitment = cfg.get("commitment") or "finalized"
        if commitment not in COMMITMENT_DEPTH:
            raise RpcError(INVALID_PARAMS, f"Invalid params: unknown commitment {commitment}")
        sub = Subscription(next(self._ids), kind, commitment, conn, key, cfg)
        self.subs[sub.id] = sub
        conn.subs[sub.id] = sub
        return sub.id

    def _remove(self, sub: Subscription) -> None:
        self.subs.pop(sub.id, None)
        sub.conn.subs.pop(sub.id, None)

    # -- delivery ---------------------------------------------------------------------------

    def on_block(self) -> None:
        """Deliver what the view's commitment levels reached since the last call."""
        tip = self.view.tip
        if tip > self.last_tip:
            for slot in range(self.last_tip + 1, tip + 1):
                root = self.ledger.commitment_slot(slot, "finalized")
                for sub in self._of("slot"):
                    parent = self.ledger.block_at(slot).parent_slot
                    self._notify(sub, "slotNotification",
                                 {"parent": parent, "root": root, "slot": slot})
            self.last_tip = tip
        for commitment in COMMITMENT_DEPTH:
            target = self.ledger.commitment_slot(tip, commitment)
            for slot in range(self.delivered[commitment] + 1, target + 1):
                block = self.ledger.blocks.get(slot)
                if block is not None:
                    self._deliver(block, commitment)
                if commitment == "finalized":
                    for sub in self._of("root"):
                        self._notify(sub, "rootNotification", slot)
            self.delivered[commitment] = max(self.delivered[commitment], target)

    def _of(self, kind: str, commitment: str | None = None) -> list[Subscription]:
        return [s for s in self.subs.values()
                if s.kind == kind and (commitment is None or s.commitment == commitment)]

    def _deliver(self, block: Block, commitment: str) -> None:
        ctx = context(block.slot)
        sig_subs = {s.key: s for s in self._of("signature", commitment)}
        log_subs = self._of("logs", commitment)
        for signature in block.signatures:
            record = self.ledger.history[signature]
            sub = sig_subs.get(signature)
            if sub is not None:
                self._notify(sub, "signatureNotification", {"context": ctx,
                                                             "value": {"err": record.err}})
                self._remove(sub)
            for sub in log_subs:
                if sub.key is None or sub.key in record.account_keys:
                    self._notify(sub, "logsNotification", {
                        "context": ctx, "value": {"signature": signature, "err": record.err,
                                                  "logs": record.meta["logMessages"]}})
        acc_subs = self._of("account", commitment)
        prog_subs = self._of("program", commitment)
        if not acc_subs and not prog_subs:
            return
        state_slot = self.view.state_slot(block.slot)
        for key in block.changed:
            acc = self.ledger.account(key, state_slot)
            for sub in acc_subs:
                if sub.key == str(key):
                    self._notify(sub, "accountNotification",
                                 {"context": ctx, "value": self._ui(acc, sub)})
            for sub in prog_subs:
                if acc is not None and sub.key == str(acc.owner):
                    self._notify(sub, "programNotification", {
                        "context": ctx, "value": {"pubkey": str(key),
                                                  "account": self._ui(acc, sub)}})

    def _ui(self, acc: Any, sub: Subscription) -> dict[str, Any]:
        enc = sub.config.get("encoding") or "base58"
        if acc is None or acc.lamports == 0:
            empty = encoding.account_data(b"", "base64" if enc == "jsonParsed" else enc)
            return {**_EMPTY_ACCOUNT, "data": empty, "space": 0}
        return encoding.ui_account(acc, enc, sub.config.get("dataSlice"), self.ledger.svm)

    def _notify(self, sub: Subscription, method: str, result: Any) -> None:
        conn = sub.conn
        if conn.ws.closed:
            self._drop(conn)
            return
        if self.faults.hit(self.faults.faults.ws_close_rate):
            self._close(conn)
            return
        payload = {"jsonrpc": "2.0", "method": method,
                   "params": {"result": result, "subscription": sub.id}}
        conn.outbox.put_nowait(json.dumps(payload))
