"""A stand-in for the GridTokenX platform API's ingest endpoint, for tests, benches and the demo.

It does what a careful receiver does, written from the specifications rather than from gridnode's
code:

- Standard Webhooks verification: ``webhook-id``, ``webhook-timestamp`` (within +-5 min) and
  ``webhook-signature``, a space-separated list of ``v1,<base64 HMAC-SHA256>`` over
  ``"{id}.{timestamp}.{body}"`` keyed with the base64-decoded part of a ``whsec_`` secret; any of
  the configured secrets (two during a rotation) may match; compared in constant time. A bad
  request is answered 401 and stored nowhere.
- Idempotency-Key (draft-ietf-httpapi-idempotency-key-header): an sf-string, required (400
  without); a retry with the same key and the same body gets the stored answer; the same key with
  another body 422; a key whose first request is still being processed 409.
- Items are deduped by their own ``key``: a duplicate is accepted again (named in ``accepted``)
  but stored once. An item without a key or type is named in ``rejected``.

Everything accepted is kept in SQLite (a restart keeps it). Fault modes are a queue consumed one
per request, set with ``POST /v1/faults`` or ``--fault`` (JSON): ``{"status": 503, "count": 5,
"retry_after": 2}`` (any status, answered without storing), ``{"mode": "timeout", "delay_s":
30}`` (no answer in time, nothing stored), ``{"mode": "slow", "delay_s": 1}`` (stored, answered
late), ``{"mode": "close"}`` (stored, then the connection is closed without an answer),
``{"mode": "reject", "match": "meter-3"}`` (items whose key contains `match` are rejected);
``"remember": true`` with a status stores that answer under the request's Idempotency-Key, as
platforms that keep error answers do (a retry with that key gets it again).

Routes: ``POST /v1/deliveries`` (ingest), ``GET /v1/items[?type=&meter_id=]`` (what it holds, in
order of acceptance), ``GET /v1/stats``, ``GET /v1/requests`` (one row per request: time,
status, items), ``POST /v1/faults`` and ``DELETE /v1/faults``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import sqlite3
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

TOLERANCE_S = 300
INGEST_PATH = "/v1/deliveries"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    seq INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, node_id TEXT, type TEXT NOT NULL,
    meter_id TEXT, at_ms INTEGER, payload TEXT NOT NULL, received_at_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY, body_sha256 TEXT NOT NULL, status INTEGER NOT NULL,
    answer TEXT NOT NULL, at_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, status INTEGER NOT NULL,
    items INTEGER NOT NULL, idempotency_key TEXT, note TEXT);
"""


def _key_of(secret: str) -> bytes:
    if not secret.startswith("whsec_"):
        raise ValueError("a secret starts with whsec_")
    text = secret[len("whsec_"):]
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def verify_standard_webhook(keys: Sequence[bytes], headers: Any, body: bytes,
                            now: float | None = None) -> str:
    """The webhook id of a correctly signed request; ValueError saying what is wrong."""
    msg_id = headers.get("webhook-id")
    ts = headers.get("webhook-timestamp")
    sigs = headers.get("webhook-signature")
    if not msg_id or not ts or not sigs:
        raise ValueError("missing webhook-id, webhook-timestamp or webhook-signature")
    if not ts.isdigit():
        raise ValueError("webhook-timestamp is not an integer")
    if abs((time.time() if now is None else now) - int(ts)) > TOLERANCE_S:
        raise ValueError("webhook-timestamp too old or too new")
    signed = msg_id.encode() + b"." + ts.encode() + b"." + body
    for entry in sigs.split(" "):
        version, _, value = entry.partition(",")
        if version != "v1":
            continue
        try:
            given = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue
        for key in keys:
            if hmac.compare_digest(hmac.new(key, signed, hashlib.sha256).digest(), given):
                return str(msg_id)
    raise ValueError("no v1 signature matches")


def _sf_string(value: str | None) -> str | None:
    """The string of an RFC 8941 sf-string header value (double-quoted), else None."""
    if value is None:
        return None
    v = value.strip()
    if len(v) < 3 or not (v.startswith('"') and v.endswith('"')):
        return None
    inner = v[1:-1]
    if '"' in inner.replace('\\"', "") or not inner.isprintable():
        return None
    return inner.replace('\\"', '"').replace("\\\\", "\\")


@dataclass
class Fault:
    status: int | None = None
    mode: str | None = None         # timeout | slow | close | reject
    count: int = 1
    retry_after: float | str | None = None
    delay_s: float = 0.0
    match: str | None = None
    remember: bool = False          # a status fault's answer is stored under the request's key


@dataclass
class PlatformSimulator:
    db_path: Path
    secrets: list[str]
    host: str = "127.0.0.1"
    port: int = 0
    faults: list[Fault] = field(default_factory=list)
    stats: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._keys = [_key_of(s) for s in self.secrets]
        self._db = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.executescript(_SCHEMA)
        self._in_flight: set[str] = set()
        self._runner: web.AppRunner | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 << 20)
        app.router.add_post(INGEST_PATH, self.ingest)
        app.router.add_get("/v1/items", self.get_items)
        app.router.add_get("/v1/stats", self.get_stats)
        app.router.add_get("/v1/requests", self.get_requests)
        app.router.add_post("/v1/faults", self.post_faults)
        app.router.add_delete("/v1/faults", self.delete_faults)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        if self.port == 0 and server is not None:
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._db.close()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{INGEST_PATH}"

    async def __aenter__(self) -> PlatformSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- what it holds -------------------------------------------------------------------------

    def items(self, type: str | None = None, meter_id: str | None = None) -> list[dict[str, Any]]:
        where, params = [], []
        if type:
            where.append("type = ?")
            params.append(type)
        if meter_id:
            where.append("meter_id = ?")
            params.append(meter_id)
        rows = self._db.execute(
            "SELECT seq, key, node_id, type, meter_id, at_ms, payload, received_at_ms FROM items "
            + (f"WHERE {' AND '.join(where)} " if where else "") + "ORDER BY seq", params)
        return [{"seq": r[0], "key": r[1], "node_id": r[2], "type": r[3], "meter_id": r[4],
                 "at_ms": r[5], "item": json.loads(r[6]), "received_at_ms": r[7]} for r in rows]

    def requests(self) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT at_ms, status, items, idempotency_key, note FROM requests "
                                "ORDER BY id")
        return [{"at_ms": r[0], "status": r[1], "items": r[2], "idempotency_key": r[3],
                 "note": r[4]} for r in rows]

    def add_fault(self, **kw: Any) -> None:
        self.faults.append(Fault(**kw))

    # -- handlers ------------------------------------------------------------------------------

    def _log(self, status: int, items: int, key: str | None, note: str = "") -> None:
        self.stats[f"status_{status}"] += 1
        self._db.execute("INSERT INTO requests (at_ms, status, items, idempotency_key, note) "
                         "VALUES (?, ?, ?, ?, ?)", (time.time_ns() // 1_000_000, status, items,
                                                    key, note))

    def _fault(self) -> Fault | None:
        if not self.faults:
            return None
        f = self.faults[0]
        f.count -= 1
        if f.count <= 0:
            self.faults.pop(0)
        return f

    async def ingest(self, request: web.Request) -> web.StreamResponse:
        self.stats["requests"] += 1
        body = await request.read()
        try:
            verify_standard_webhook(self._keys, request.headers, body)
        except ValueError as exc:
            self.stats["bad_signature"] += 1
            self._log(401, 0, None, str(exc))
            return web.json_response({"error": f"signature: {exc}"}, status=401)
        key = _sf_string(request.headers.get("Idempotency-Key"))
        if key is None:
            self._log(400, 0, None, "no Idempotency-Key")
            return web.json_response({"error": "Idempotency-Key (an sf-string) is required"},
                                     status=400)
        digest = hashlib.sha256(body).hexdigest()
        replayed = self._stored_answer(key, digest)
        if replayed is not None:
            return replayed
        fault = self._fault()
        if fault is not None and fault.status is not None:
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = str(fault.retry_after)
            self.stats["faults"] += 1
            self._log(fault.status, 0, key, "fault")
            answer = {"error": "fault injected"}
            if fault.remember:      # as a platform that keeps errors too (Stripe keeps 500s)
                self._db.execute(
                    "INSERT INTO idempotency (key, body_sha256, status, answer, at_ms) "
                    "VALUES (?, ?, ?, ?, ?)", (key, digest, fault.status, json.dumps(answer),
                                               time.time_ns() // 1_000_000))
            return web.json_response(answer, status=fault.status, headers=headers)
        if fault is not None and fault.mode == "timeout":
            self.stats["faults"] += 1
            self._log(0, 0, key, "timeout")
            await asyncio.sleep(fault.delay_s or 60)
            return web.json_response({"error": "late"}, status=504)
        if key in self._in_flight:
            self._log(409, 0, key, "in flight")
            return web.json_response({"error": "a request with this key is in flight"},
                                     status=409)
        self._in_flight.add(key)
        try:
            if fault is not None and fault.mode == "slow":
                await asyncio.sleep(fault.delay_s)
            status, answer = self._accept(body, fault)
            self._db.execute("INSERT INTO idempotency (key, body_sha256, status, answer, at_ms) "
                             "VALUES (?, ?, ?, ?, ?)", (key, digest, status, json.dumps(answer),
                                                        time.time_ns() // 1_000_000))
        finally:
            self._in_flight.discard(key)
        self._log(status, len(answer.get("accepted", [])), key,
                  "close" if fault is not None and fault.mode == "close" else "")
        if fault is not None and fault.mode == "close":
            self.stats["faults"] += 1
            assert request.transport is not None
            request.transport.abort()     # accepted and stored, and no answer
            raise asyncio.CancelledError
        return web.json_response(answer, status=status)

    def _stored_answer(self, key: str, digest: str) -> web.Response | None:
        """The stored answer of a key seen before (422 when the body differs), else None."""
        stored = self._db.execute("SELECT body_sha256, status, answer FROM idempotency "
                                  "WHERE key = ?", (key,)).fetchone()
        if stored is None:
            return None
        if stored[0] != digest:
            self._log(422, 0, key, "key reused with another body")
            return web.json_response({"error": "Idempotency-Key reused with another body"},
                                     status=422)
        self.stats["replayed"] += 1
        self._log(stored[1], 0, key, "replayed")
        return web.Response(text=stored[2], status=stored[1], content_type="application/json")

    def _accept(self, body: bytes, fault: Fault | None) -> tuple[int, dict[str, Any]]:
        try:
            doc = json.loads(body)
            node_id = doc.get("node_id")
            items = doc["items"]
            if not isinstance(items, list):
                raise TypeError("items is not a list")
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            return 400, {"error": f"body: {exc}"}
        accepted: list[str] = []
        rejected: list[dict[str, Any]] = []
        now = time.time_ns() // 1_000_000
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for it in items:
                key = it.get("key") if isinstance(it, dict) else None
                if not isinstance(key, str) or not key or not it.get("type"):
                    rejected.append({"key": key, "status": 400, "error": "key and type required"})
                    continue
                if fault is not None and fault.mode == "reject" and fault.match \
                        and fault.match in key:
                    rejected.append({"key": key, "status": 422, "error": "rejected (fault)"})
                    continue
                cur = self._db.execute(
                    "INSERT OR IGNORE INTO items (key, node_id, type, meter_id, at_ms, payload, "
                    "received_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (key, node_id, it["type"], it.get("meter_id"), it.get("at_ms"),
                     json.dumps(it, sort_keys=True), now))
                self.stats["stored" if cur.rowcount else "duplicates"] += 1
                accepted.append(key)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return 200, {"accepted": accepted, "rejected": rejected}

    async def get_items(self, request: web.Request) -> web.Response:
        return web.json_response(self.items(request.query.get("type"),
                                            request.query.get("meter_id")))

    async def get_stats(self, request: web.Request) -> web.Response:
        held = self._db.execute("SELECT count(*) FROM items").fetchone()[0]
        return web.json_response({**self.stats, "held": held, "faults_queued": len(self.faults)})

    async def get_requests(self, request: web.Request) -> web.Response:
        return web.json_response(self.requests())

    async def post_faults(self, request: web.Request) -> web.Response:
        doc = await request.json()
        for f in doc if isinstance(doc, list) else [doc]:
            self.faults.append(Fault(**f))
        return web.json_response({"faults_queued": len(self.faults)})

    async def delete_faults(self, request: web.Request) -> web.Response:
        self.faults.clear()
        return web.json_response({"faults_queued": 0})
