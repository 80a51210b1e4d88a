"""Webhooks end to end: registration through the API and the CLI, delivery by the real daemon to
a real aiohttp receiver that verifies each request with its own Standard Webhooks check (written
from the specification: HMAC-SHA256 over "id.timestamp.body" keyed with the base64-decoded
whsec_ secret, v1,<base64> entries, a 5-minute timestamp window), retries keeping the
webhook-id, 410 Gone and failing past disable_after disabling a webhook with an alert.

Alert events come from the node's own alert path (gridnode.store.alerts.change, what every
rule calls), written by the test into the running daemon's database; transaction events from a
real operation the pipeline sends to the localnet.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gridnode.config.webhooks import WebhooksConfig
from gridnode.deliveries.webhooks import EVENT_TYPES, WebhooksSubsystem, candidates, create
from gridnode.keys import load_keypair
from gridnode.store import Store, events
from gridnode.store import alerts as stored_alerts
from gridnode.store import deliveries as stored_deliveries
from gridnode.store import webhooks as registrations
from gridnode.store.events import Event
from simulators.chain.localnet import Localnet
from tests.api.harness import ApiNode, problem
from tests.configs import localnet_node
from tests.net import pick_free_port
from tests.processes import gridnode

FAST = {"sync_every_s": 0.2, "poll_s": 0.1, "retry_base_s": 0.2, "retry_max_s": 0.5}


def standard_webhooks_valid(secret: str, headers: dict[str, str], body: bytes,
                            tolerance_s: int = 300) -> bool:
    """The receiver's check, from the Standard Webhooks specification (not gridnode's code)."""
    msg_id = headers.get("webhook-id")
    ts = headers.get("webhook-timestamp")
    sig_header = headers.get("webhook-signature")
    if not msg_id or not ts or not sig_header or not ts.isdigit():
        return False
    if abs(time.time() - int(ts)) > tolerance_s:
        return False
    assert secret.startswith("whsec_")
    key = base64.b64decode(secret[len("whsec_"):])
    signed = msg_id.encode() + b"." + ts.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for entry in sig_header.split(" "):
        version, _, sig = entry.partition(",")
        if version == "v1" and hmac.compare_digest(sig, expected):
            return True
    return False


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A real HTTP receiver; `answers[path]` is a list of statuses to give in turn (then 200)."""

    port: int
    answers: dict[str, list[int]] = field(default_factory=dict)
    always: dict[str, int] = field(default_factory=dict)
    got: list[Received] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Received]:
        return [r for r in self.got if r.path == path]

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        queue = self.answers.get(request.path, [])
        status = self.always.get(request.path) or (queue.pop(0) if queue else 200)
        self.got.append(Received(request.path, {k.lower(): v for k, v in request.headers.items()},
                                 body, status))
        return web.Response(status=status, text="gone" if status == 410 else "ok")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver(pick_free_port())
    app = web.Application()
    app.router.add_post("/{tail:.*}", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", rec.port).start()
    yield rec
    await runner.cleanup()


async def until(cond: Callable[[], bool], what: str, limit_s: float = 20.0) -> None:
    deadline = time.monotonic() + limit_s
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def alert_change(node: ApiNode, name: str, raised: bool) -> None:
    """What an alert rule does when its condition changes, in the daemon's database."""
    store = await Store.open(node.config.node.database)
    try:
        async with store.write() as tx:
            await stored_alerts.change(tx, name, raised, value=1.0, threshold=0.0,
                                       detail=f"test {name}", at_ms=int(time.time() * 1000))
    finally:
        await store.close()


async def listed(node: ApiNode, token: str) -> dict[int, dict[str, Any]]:
    answer = await node.call("GET", "/api/v1/webhooks", token=token)
    assert answer.status == 200, answer
    assert "whsec_" not in answer.text          # the secret is shown once, at creation
    return {h["id"]: h for h in answer.json["webhooks"]}


async def test_webhooks_api_signed_delivery_retry_410_and_cli(tmp_path: Path,
                                                              receiver: Receiver) -> None:
    node = ApiNode(tmp_path, {"webhooks": FAST})
    async with node:
        admin, monitor = node.token("operator"), node.token("monitor", "grafana")
        # registration: operator only, validated, the secret answered once
        problem(await node.call("POST", "/api/v1/webhooks", token=monitor,
                                body={"url": receiver.url("/a"), "event_types": ["AlertRaised"]}),
                403)
        bad = problem(await node.call("POST", "/api/v1/webhooks", token=admin, body={
            "url": receiver.url("/a"), "event_types": ["AlertRaised", "Nope"]}), 422)
        assert any(e["pointer"] == "/event_types/1" for e in bad["errors"]), bad
        problem(await node.call("POST", "/api/v1/webhooks", token=admin, body={
            "url": "ftp://example.org/x", "event_types": ["AlertRaised"]}), 422)
        made = await node.call("POST", "/api/v1/webhooks", token=admin, body={
            "url": receiver.url("/a"), "event_types": ["AlertRaised", "AlertCleared"],
            "description": "ops"})
        assert made.status == 201, made
        hook_a = made.json
        assert hook_a["secret"].startswith("whsec_")
        assert len(base64.b64decode(hook_a["secret"][6:])) >= 24
        gone = await node.call("POST", "/api/v1/webhooks", token=admin, body={
            "url": receiver.url("/gone"), "event_types": ["AlertRaised"]})
        assert gone.status == 201, gone
        hook_gone = gone.json
        receiver.always["/gone"] = 410
        hooks = await listed(node, admin)
        assert set(hooks) == {hook_a["id"], hook_gone["id"]}
        assert hooks[hook_a["id"]]["event_types"] == ["AlertRaised", "AlertCleared"]

        # no pause: a webhook gets every event committed after its registration, however late
        # the daemon starts delivering it. The first request for /a fails: the same message
        # comes again, newly timestamped
        receiver.answers["/a"] = [500]
        await alert_change(node, "test_rule", True)
        await alert_change(node, "test_rule", False)
        await until(lambda: sum(r.answered == 200 for r in receiver.at("/a")) >= 2,
                    "AlertRaised and AlertCleared at /a")
        got = receiver.at("/a")
        assert all(standard_webhooks_valid(hook_a["secret"], r.headers, r.body) for r in got)
        assert not standard_webhooks_valid(hook_gone["secret"], got[0].headers, got[0].body)
        assert not standard_webhooks_valid(hook_a["secret"], got[0].headers, got[0].body + b" ")
        assert got[0].answered == 500 and got[1].answered == 200
        assert got[0].headers["webhook-id"] == got[1].headers["webhook-id"]   # a retry
        assert got[0].body == got[1].body
        delivered = [r for r in got if r.answered == 200]
        assert [r.json["type"] for r in delivered[:2]] == ["AlertRaised", "AlertCleared"]
        assert delivered[0].headers["webhook-id"] != delivered[1].headers["webhook-id"]
        first = delivered[0].json
        assert first["data"]["name"] == "test_rule" and first["data"]["detail"] == "test test_rule"
        assert first["timestamp"].endswith("Z")
        assert delivered[0].headers["content-type"] == "application/json"

        # 410 Gone disabled the other webhook, with an alert (which /a, subscribed, receives)
        await until(lambda: any(r.answered == 410 for r in receiver.at("/gone")), "the 410")
        alert_name = f"webhook_disabled:{hook_gone['id']}"
        await until(lambda: any(r.json["type"] == "AlertRaised"
                                and r.json["data"]["name"] == alert_name
                                for r in receiver.at("/a") if r.answered == 200),
                    "the webhook_disabled alert delivered to /a")
        assert len(receiver.at("/gone")) == 1       # disabled: never called again
        hooks = await listed(node, admin)
        assert hooks[hook_gone["id"]]["status"] == "disabled"
        assert "410" in (hooks[hook_gone["id"]]["disabled_reason"] or "")
        assert hooks[hook_a["id"]]["status"] == "active"
        alerts = await node.call("GET", "/api/v1/alerts", token=monitor)
        assert {a["name"]: a["state"] for a in alerts.json["alerts"]}[alert_name] == "raised"

        # removing it forgets it and clears its alert
        gone_del = await node.call("DELETE", f"/api/v1/webhooks/{hook_gone['id']}", token=admin)
        assert gone_del.status == 204, gone_del
        problem(await node.call("DELETE", f"/api/v1/webhooks/{hook_gone['id']}", token=admin),
                404)
        problem(await node.call("DELETE", f"/api/v1/webhooks/{hook_a['id']}", token=monitor),
                403)
        assert set(await listed(node, admin)) == {hook_a["id"]}
        await until(lambda: any(r.json["type"] == "AlertCleared"
                                and r.json["data"]["name"] == alert_name
                                for r in receiver.at("/a") if r.answered == 200),
                    "the alert cleared once the webhook is removed")

        # the CLI, against the running daemon's database
        db = str(node.config.node.database)
        added = await gridnode("webhooks", "add", receiver.url("/cli"), "--event", "AlertRaised",
                     "--db", db)
        assert added.returncode == 0, added.stderr
        secret = next(line.split(": ", 1)[1] for line in added.stdout.splitlines()
                      if line.startswith("secret: "))
        cli_id = int(added.stdout.split()[1].rstrip(":"))
        out = (await gridnode("webhooks", "list", "--db", db)).stdout
        assert receiver.url("/cli") in out and "whsec_" not in out
        await alert_change(node, "cli_rule", True)
        await until(lambda: len(receiver.at("/cli")) >= 1, "a delivery to the CLI's webhook")
        r = receiver.at("/cli")[0]
        assert standard_webhooks_valid(secret, r.headers, r.body)
        assert r.json["type"] == "AlertRaised" and r.json["data"]["name"] == "cli_rule"
        assert (await gridnode("webhooks", "remove", str(cli_id), "--db", db)).returncode == 0
        again = await gridnode("webhooks", "remove", str(cli_id), "--db", db)
        assert again.returncode == 1 and f"no webhook {cli_id}" in again.stderr
        assert str(cli_id) not in {str(i) for i in await listed(node, admin)}


async def test_a_webhook_failing_past_disable_after_is_disabled_with_an_alert(
        tmp_path: Path, receiver: Receiver) -> None:
    node = ApiNode(tmp_path, {"webhooks": {**FAST, "disable_after_s": 1.5}})
    async with node:
        admin = node.token("operator")
        made = await node.call("POST", "/api/v1/webhooks", token=admin, body={
            "url": receiver.url("/down"), "event_types": list(EVENT_TYPES)})
        assert made.status == 201, made
        hook = made.json
        receiver.always["/down"] = 503
        started = time.monotonic()
        await alert_change(node, "some_rule", True)

        async def disabled() -> dict[str, Any]:
            return (await listed(node, admin))[hook["id"]]
        while (await disabled())["status"] != "disabled":
            assert time.monotonic() - started < 30, await disabled()
            await asyncio.sleep(0.1)
        assert time.monotonic() - started >= 1.5
        info = await disabled()
        assert "failing since" in (info["disabled_reason"] or "") and "503" in info[
            "disabled_reason"]
        tries = len(receiver.at("/down"))
        assert 2 <= tries < 20              # backed off, not a tight loop
        assert all(standard_webhooks_valid(hook["secret"], r.headers, r.body)
                   for r in receiver.at("/down"))
        assert len({r.headers["webhook-id"] for r in receiver.at("/down")}) == 1
        deadline = time.monotonic() + 10      # the next look at the registrations raises it
        while True:
            alerts = await node.call("GET", "/api/v1/alerts", token=admin)
            states = {a["name"]: a["state"] for a in alerts.json["alerts"]}
            if states.get(f"webhook_disabled:{hook['id']}") == "raised":
                break
            assert time.monotonic() < deadline, states
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        assert len(receiver.at("/down")) == tries     # disabled: no more requests

        # the operator enables it again once the receiver is back: what waited is delivered
        # (the same message) and the alert clears
        del receiver.always["/down"]
        replay = await gridnode("deliveries", "replay", "--destination", f"webhook:{hook['id']}",
                            "--db", str(node.config.node.database))
        assert replay.returncode == 0 and "disabled -> active" in replay.stdout, replay
        await until(lambda: any(r.answered == 200 for r in receiver.at("/down")),
                    "delivery after the replay")
        ok = [r for r in receiver.at("/down") if r.answered == 200]
        assert ok[0].headers["webhook-id"] == receiver.at("/down")[0].headers["webhook-id"]
        assert ok[0].json["data"]["name"] == "some_rule"
        deadline = time.monotonic() + 10
        while True:
            alerts = await node.call("GET", "/api/v1/alerts", token=admin)
            states = {a["name"]: a["state"] for a in alerts.json["alerts"]}
            if states.get(f"webhook_disabled:{hook['id']}") == "cleared":
                break
            assert time.monotonic() < deadline, states
            await asyncio.sleep(0.1)
        assert (await disabled())["status"] == "active"


def test_event_type_mapping() -> None:
    """The contract's mapping from the event log to webhook event types."""
    def ev(type_: str, **data: Any) -> Event:
        return Event(1, 0, type_, 7 if type_ == "operation.status" else None, None, data)
    assert candidates(ev("operation.status", new="submitted", tx_type="x")) == (
        "TransactionSubmitted",)
    assert candidates(ev("operation.status", new="finalized", tx_type="order_creation")) == (
        "TransactionConfirmed",)
    assert candidates(ev("operation.status", new="finalized", tx_type="meter_reading")) == (
        "IntervalFinalized", "TransactionConfirmed")
    assert candidates(ev("operation.status", new="failed", tx_type="x")) == ("TransactionFailed",)
    assert candidates(ev("operation.status", new="pending", tx_type="x")) == ()
    assert candidates(ev("settlement.completed")) == ("SettlementCompleted",)
    assert candidates(ev("settlement.defaulted")) == ("SettlementDefaulted",)
    assert candidates(ev("alert.raised")) == ("AlertRaised",)
    assert candidates(ev("alert.cleared")) == ("AlertCleared",)
    assert candidates(ev("interval.closed")) == ()


async def test_a_webhook_registered_while_the_daemon_syncs_keeps_its_cursor(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A registration committed while sync() reads the registrations (the API or the CLI at
    that moment) must not be taken for a removed webhook: its destination, with the cursor set
    at registration, stays, and the next sync starts delivering from there."""
    store = await Store.open(tmp_path / "gridnode.db")
    try:
        sub = WebhooksSubsystem(WebhooksConfig(), store, "node-1")
        made: list[int] = []
        read = registrations.all_webhooks

        async def read_then_register(db: Any) -> Any:
            found = await read(db)
            if not made:
                async with store.write() as tx:
                    await stored_alerts.change(tx, "before", True, value=None, threshold=None,
                                               detail="x", at_ms=int(time.time() * 1000))
                    made.append((await create(tx, "http://127.0.0.1:9/x", ["AlertRaised"])).id)
            return found

        monkeypatch.setattr(registrations, "all_webhooks", read_then_register)
        await sub.sync()
        row = await stored_deliveries.destination(store, f"webhook:{made[0]}")
        assert row is not None, "the new webhook's destination was deleted"
        assert row.cursor == await events.last_id(store)
        await sub.sync()
        assert [d.name for d in sub.engine.destinations] == [f"webhook:{made[0]}"]
    finally:
        await store.close()


async def test_transactions_on_the_localnet_reach_a_webhook(tmp_path: Path,
                                                            receiver: Receiver) -> None:
    """TransactionSubmitted then TransactionConfirmed, with the signature the chain has, for an
    operation the pipeline really sends to the localnet's SBF programs; a meter reading that
    finalizes is IntervalFinalized for a webhook that wants that."""
    async with Localnet(port=pick_free_port(), slot_ms=25, state_dir=tmp_path / "chain") as net:
        users = [str(p) for p in net.bootstrap["keypairs"]["users"][:1]]
        node = ApiNode(tmp_path, localnet_node(net, tmp_path / "state", user_keypairs=users),
                       {"webhooks": FAST})
        alice = str(load_keypair(users[0]).pubkey())
        async with node:
            admin = node.token("operator")
            made = await node.call("POST", "/api/v1/webhooks", token=admin, body={
                "url": receiver.url("/tx"), "event_types": [
                    "TransactionSubmitted", "TransactionConfirmed", "TransactionFailed"]})
            assert made.status == 201, made
            secret = made.json["secret"]
            iv = await node.call("POST", "/api/v1/webhooks", token=admin, body={
                "url": receiver.url("/iv"), "event_types": [
                    "IntervalFinalized", "TransactionConfirmed"]})
            assert iv.status == 201, iv
            created = await node.call("POST", "/api/v1/transactions/create", token=admin, body={
                "tx_type": "user_registration", "submit": True,
                "payload": {"user": alice, "user_type": "prosumer", "location": "webhooks"}})
            assert created.status == 201, created
            op = created.json["operation_id"]
            end = int(time.time()) // 60 * 60
            reading = await node.call("POST", "/api/v1/transactions/create", token=admin, body={
                "tx_type": "meter_reading", "submit": True, "payload": {
                    "meter_id": "house-9", "interval_start": end - 60, "interval_end": end,
                    "energy_produced_wh": 1234, "energy_consumed_wh": 567}})
            assert reading.status == 201, reading
            reading_op = reading.json["operation_id"]
            await until(lambda: sum(r.json["type"] == "TransactionConfirmed"
                                    for r in receiver.at("/tx")) == 2, "TransactionConfirmed", 60)
            await until(lambda: len(receiver.at("/iv")) == 2, "IntervalFinalized", 30)
            status = (await node.call("GET", f"/api/v1/transactions/{op}/status",
                                      token=admin)).json
    got = [r for r in receiver.at("/tx") if r.json["data"]["operation_id"] == op]
    assert all(standard_webhooks_valid(secret, r.headers, r.body) for r in receiver.at("/tx"))
    types = [r.json["type"] for r in got]
    assert types == ["TransactionSubmitted", "TransactionConfirmed"], types
    assert "TransactionFailed" not in [r.json["type"] for r in receiver.at("/tx")]
    confirmed = got[-1].json["data"]
    assert confirmed["operation_id"] == op and confirmed["tx_type"] == "user_registration"
    assert confirmed["status"] == "finalized" and confirmed["signature"] == status["signature"]
    assert confirmed["payload"]["user"] == alice and confirmed["slot"] is not None
    assert all(standard_webhooks_valid(iv.json["secret"], r.headers, r.body)
               for r in receiver.at("/iv"))
    by_type = {r.json["type"]: r.json["data"] for r in receiver.at("/iv")}
    assert set(by_type) == {"IntervalFinalized", "TransactionConfirmed"}
    assert by_type["TransactionConfirmed"]["operation_id"] == op     # not the reading's
    interval = by_type["IntervalFinalized"]
    assert interval["operation_id"] == reading_op and interval["meter_id"] == "house-9"
    assert (interval["interval_start"], interval["interval_end"]) == (end - 60, end)
    assert (interval["import_wh"], interval["export_wh"]) == (567, 1234)
    assert interval["signature"] and interval["backfilled"] is False


async def test_no_registration_while_webhooks_are_off(tmp_path: Path) -> None:
    async with ApiNode(tmp_path, {"webhooks": {"enabled": False}}) as node:
        refused = problem(await node.call("POST", "/api/v1/webhooks", token=node.token(), body={
            "url": "http://127.0.0.1:9/x", "event_types": ["AlertRaised"]}), 409)
        assert "[webhooks] enabled = false" in refused["detail"]
        assert await node.count("webhooks") == 0
