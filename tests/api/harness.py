"""A real gridnode daemon with its API on a free loopback port, in the test's event loop.

`ApiNode` writes the configuration (the caller's sections plus an enabled [api] with a fresh
secret file), runs `gridnode.daemon.Daemon` until the test ends, and talks HTTP to it with
aiohttp's client. It records when the daemon said READY and whether the port listened then.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp

from gridnode.api.auth import Role, Secret, issue
from gridnode.config import load_config
from gridnode.daemon import Daemon
from gridnode.store.readonly import ReadOnlyStore
from gridnode.systemd import Notifier
from tests.configs import write_config
from tests.net import pick_free_port, port_open

SECRET = b"t" * 24 + b"-test-secret-of-enough-bytes"


class RecordingNotifier(Notifier):
    """Not systemd: notes READY and whether the API port accepted connections at that moment."""

    def __init__(self, port: int) -> None:
        super().__init__({})
        self.port = port
        self.ready_at: float | None = None
        self.listening_at_ready: bool | None = None

    def ready(self, status: str = "") -> bool:
        self.ready_at = time.monotonic()
        self.listening_at_ready = port_open("127.0.0.1", self.port)
        return False


class Answer:
    def __init__(self, status: int, headers: Mapping[str, str], text: str) -> None:
        self.status = status
        self.headers = headers
        self.text = text

    @property
    def json(self) -> Any:
        return json.loads(self.text)

    def __repr__(self) -> str:
        return f"<{self.status} {self.text[:400]}>"


class ApiNode:
    def __init__(self, tmp: Path, *parts: Mapping[str, Any], api: Mapping[str, Any] | None = None,
                 secret: bool = True) -> None:
        self.tmp = tmp
        self.port = pick_free_port()
        self.secret = Secret(SECRET, "test")
        secret_file = tmp / "api-jwt.secret"
        secret_file.write_bytes(SECRET)
        secret_file.chmod(0o600)
        self.config_path = write_config(
            tmp / "gridnode.toml", {"node": {"data_dir": str(tmp / "state")}}, *parts,
            {"api": {"enabled": True, "port": self.port,
                     "jwt_secret_file": str(secret_file) if secret else None, **(api or {})}},
            logging={"format": "json"})
        self.config = load_config(self.config_path)
        self.url = f"http://127.0.0.1:{self.port}"
        self.notifier = RecordingNotifier(self.port)
        self.daemon = Daemon(self.config, self.notifier)
        self.task: asyncio.Task[int] | None = None
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ApiNode:
        self.task = asyncio.create_task(self.daemon.run())
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))  # IP host
        deadline = time.monotonic() + 30
        while self.notifier.ready_at is None:
            if self.task.done():
                raise AssertionError(f"the daemon ended with {self.task.result()}")
            assert time.monotonic() < deadline, "the daemon did not become ready"
            await asyncio.sleep(0.05)
        return self

    async def stop(self) -> tuple[int, float]:
        """Stop the daemon; its exit status and how long stopping took."""
        assert self.task is not None
        started = time.monotonic()
        self.daemon.request_stop("test")
        status = await asyncio.wait_for(self.task, 30)
        return status, time.monotonic() - started

    async def __aexit__(self, *exc: object) -> None:
        if self.session is not None:
            await self.session.close()
        if self.task is not None and not self.task.done():
            await self.stop()

    def token(self, role: Role | str = Role.OPERATOR, sub: str = "admin", ttl_s: float = 3600,
              now: float | None = None) -> str:
        return issue(self.secret, sub, Role(role), ttl_s, now)

    async def call(self, method: str, path: str, *, token: str | None = None,
                   body: Any = None, data: bytes | str | None = None,
                   headers: Mapping[str, str] | None = None, **kw: Any) -> Answer:
        assert self.session is not None
        hdrs = dict(headers or {})
        if token is not None:
            hdrs.setdefault("Authorization", f"Bearer {token}")
        if body is not None:
            data = json.dumps(body)
            hdrs.setdefault("Content-Type", "application/json")
        async with self.session.request(method, self.url + path, data=data, headers=hdrs,
                                        **kw) as resp:
            return Answer(resp.status, resp.headers, await resp.text())

    async def db(self) -> ReadOnlyStore:
        return await ReadOnlyStore.open(self.config.node.database)

    async def count(self, table: str) -> int:
        async with await self.db() as db:
            row = await db.fetchone(f"SELECT count(*) FROM {table}")
        return int(row[0]) if row is not None else 0


def problem(answer: Answer, status: int) -> dict[str, Any]:
    """The problem document of `answer`, checked to be one with `status`."""
    assert answer.status == status, answer
    assert answer.headers["Content-Type"].startswith("application/problem+json"), answer.headers
    doc = answer.json
    assert doc["status"] == status and doc["type"].startswith("urn:gridnode:problem:"), doc
    assert "Traceback" not in answer.text and "sqlite" not in answer.text.lower(), answer.text
    return dict(doc)


@contextlib.asynccontextmanager
async def websocket(node: ApiNode, query: str, token: str) -> Any:
    assert node.session is not None
    async with node.session.ws_connect(f"{node.url}/api/v1/ws?{query}",
                                       headers={"Authorization": f"Bearer {token}"}) as ws:
        yield ws
