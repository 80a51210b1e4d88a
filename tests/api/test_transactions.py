"""The transaction endpoints against the real daemon: the in-process localnet with the SBF
programs, a Modbus meter simulator read by the meters subsystem, the pipeline, and the API.

Create -> submit -> finalized through the API; a WebSocket client sees every status change in
order and, after a disconnect, replays the missed ones with `since`; stats match the store; bad
input, other users' operations and reused idempotency keys are 4xx problems that store nothing.
One node serves the whole module (its tests build on each other's state only where they say).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from gridnode.keys import load_keypair
from simulators.chain.localnet import Localnet
from simulators.meters.fleet import MeterFleet
from tests.api.harness import ApiNode, problem, websocket
from tests.configs import localnet_node, modbus_meter, tcp_bus
from tests.net import pick_free_port

pytestmark = pytest.mark.asyncio(loop_scope="module")
TX = "/api/v1/transactions"


class Chain:
    def __init__(self, node: ApiNode, alice: str, bob: str) -> None:
        self.node = node
        self.alice, self.bob = alice, bob
        self.operator = node.token("operator", "ops")
        self.monitor = node.token("monitor", "grafana")
        self.as_alice = node.token("user", alice)
        self.as_bob = node.token("user", bob)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def chain(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Chain]:
    tmp = tmp_path_factory.mktemp("api-chain")
    async with Localnet(port=pick_free_port(), slot_ms=25, state_dir=tmp / "chain") as net:
        keys = net.bootstrap["keypairs"]
        users = [str(p) for p in keys["users"][:2]]
        node = ApiNode(tmp, localnet_node(net, tmp / "state", user_keypairs=users,
                                          authority_keypair=str(keys["authority"])),
                       {"meters": {"buses": [tcp_bus(pick_free_port(),
                                                     modbus_meter("house", 1, "sdm630"),
                                                     poll_interval_s=0.5, timeout_s=0.5)]}})
        alice, bob = (str(load_keypair(p).pubkey()) for p in users)
        async with MeterFleet.from_config(node.config), node:
            yield Chain(node, alice, bob)


async def until(chain: Chain, op_id: int, *statuses: str, timeout_s: float = 30) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        answer = await chain.node.call("GET", f"{TX}/{op_id}/status", token=chain.operator)
        assert answer.status == 200, answer
        if answer.json["status"] in statuses:
            return dict(answer.json)
        assert time.monotonic() < deadline, f"operation {op_id} stayed {answer.json['status']}"
        await asyncio.sleep(0.1)


async def receive(ws: Any, n: int, timeout_s: float = 30) -> list[dict]:
    got: list[dict] = []
    async with asyncio.timeout(timeout_s):
        while len(got) < n:
            got.append(json.loads((await ws.receive()).data))
    return got


def registration(user: str) -> dict:
    return {"tx_type": "user_registration",
            "payload": {"user": user, "user_type": "prosumer", "location": "api test"}}


async def test_create_submit_finalize_with_live_and_replayed_events(chain: Chain) -> None:
    node = chain.node
    async with websocket(node, "type=operation.status", chain.as_alice) as ws:
        created = await node.call("POST", f"{TX}/create", token=chain.as_alice,
                                  body=registration(chain.alice))
        assert created.status == 201, created
        op = created.json["operation_id"]
        assert created.json["status"] == "created" and created.json["tx_type"] == \
            "user_registration"
        await asyncio.sleep(1.0)        # the pipeline runs, but a created operation waits
        assert (await until(chain, op, "created"))["signature"] is None
        submitted = await node.call("POST", f"{TX}/{op}/submit", token=chain.as_alice)
        assert submitted.status == 200 and submitted.json["status"] == "pending", submitted
        final = await until(chain, op, "finalized")
        assert final["signature"] and final["operation_type"] == "registry"
        detail = (await node.call("GET", f"{TX}/{op}", token=chain.as_alice)).json
        history = [(h["old_status"], h["new_status"]) for h in detail["history"]]
        live = await receive(ws, len(history))
    assert [(e["data"]["old"], e["data"]["new"]) for e in live] == history
    assert history[0] == (None, "created") and history[-1][1] == "finalized"
    assert [e["id"] for e in live] == sorted({e["id"] for e in live})
    assert {e["operation_id"] for e in live} == {op}
    assert detail["transactions"][-1]["signature"] == final["signature"]
    assert [e["name"] for e in detail["events"]] == ["UserRegistered"]

    # A meter registration followed by a client that drops after the first event and comes
    # back with `since`: the events it missed come from the log, none twice, none lost.
    async with websocket(node, "type=operation.status", chain.as_alice) as ws:
        created = await node.call("POST", f"{TX}/create", token=chain.as_alice, body={
            "tx_type": "meter_registration", "submit": True,
            "payload": {"owner": chain.alice, "meter_id": "house", "meter_type": "solar"}})
        assert created.status == 201 and created.json["status"] == "pending", created
        first = await receive(ws, 1)
    meter_op = created.json["operation_id"]
    await until(chain, meter_op, "finalized")
    async with websocket(node, f"type=operation.status&since={first[0]['id']}",
                         chain.as_alice) as ws:
        detail = (await node.call("GET", f"{TX}/{meter_op}", token=chain.as_alice)).json
        history = [(h["old_status"], h["new_status"]) for h in detail["history"]]
        rest = await receive(ws, len(history) - 1)
    assert [(e["data"]["old"], e["data"]["new"]) for e in first + rest] == history
    assert history[-1][1] == "finalized" and len(first + rest) == len(history)


async def test_stats_match_the_store(chain: Chain) -> None:
    stats = (await chain.node.call("GET", f"{TX}/stats", token=chain.monitor)).json
    async with await chain.node.db() as db:
        rows = await db.fetchall("SELECT status, count(*) FROM operations GROUP BY status")
        avg = await db.fetchone("SELECT avg(confirmed_at_ms - submitted_at_ms) FROM operations "
                                "WHERE submitted_at_ms IS NOT NULL AND confirmed_at_ms IS NOT NULL")
    by = {r[0]: r[1] for r in rows}
    assert by.get("finalized", 0) >= 2
    assert stats["total_count"] == sum(by.values())
    assert stats["confirmed_count"] == by.get("confirmed", 0) + by.get("finalized", 0)
    assert stats["pending_count"] == by.get("created", 0) + by.get("pending", 0)
    assert stats["failed_count"] == sum(by.get(s, 0) for s in ("failed", "expired", "parked"))
    assert avg is not None
    assert stats["avg_confirmation_time_seconds"] == pytest.approx(avg[0] / 1000)
    ended = stats["confirmed_count"] + stats["failed_count"]
    assert stats["success_rate"] == pytest.approx(stats["confirmed_count"] / ended)
    # a user counts only its own
    mine = (await chain.node.call("GET", f"{TX}/stats", token=chain.as_bob)).json
    assert mine["total_count"] == 0


async def test_bad_input_and_other_users_operations_store_nothing(chain: Chain) -> None:
    node = chain.node
    before = await node.count("operations"), await node.count("events")
    create = f"{TX}/create"
    unknown = problem(await node.call("POST", create, token=chain.operator,
                                      body={"tx_type": "mint_money", "payload": {}}), 422)
    assert unknown["errors"][0]["pointer"] == "/tx_type"
    assert "meter_reading" in unknown["errors"][0]["allowed"]
    typed = problem(await node.call("POST", create, token=chain.operator, body={
        "tx_type": "meter_reading", "payload": {
            "meter_id": "m" * 40, "interval_start": "soon", "interval_end": 60,
            "energy_produced_wh": -1, "energy_consumed_wh": 2**64}}), 422)
    assert {e["pointer"]: e["allowed"] for e in typed["errors"]} == {
        "/payload/meter_id": typed["errors"][0]["allowed"],
        "/payload/interval_start": "an integer",
        "/payload/energy_produced_wh": "at least 0",
        "/payload/energy_consumed_wh": f"at most {2**64 - 1}"}
    assert "32 bytes" in typed["errors"][0]["allowed"]
    stranger = problem(await node.call("POST", create, token=chain.operator,
                                       body=registration("11111111111111111111111111111112")),
                       422)
    assert stranger["errors"][0]["pointer"] == "/payload/user"
    assert "holds no key" in stranger["errors"][0]["detail"]
    # a user creates only what it signs, and never what the node's own keys sign
    problem(await node.call("POST", create, token=chain.as_bob, body=registration(chain.alice)),
            403)
    problem(await node.call("POST", create, token=chain.as_bob, body={
        "tx_type": "market_clearing", "payload": {"epoch": 1}}), 403)
    # another user's operation does not exist for bob, whatever he does with it
    alices = (await node.call("GET", f"{TX}/user", token=chain.as_alice)).json
    assert alices["total"] >= 2 and alices["page"] == 1
    op = alices["transactions"][0]["operation_id"]
    for method, path in (("GET", f"{TX}/{op}"), ("GET", f"{TX}/{op}/status"),
                         ("POST", f"{TX}/{op}/submit"), ("POST", f"{TX}/{op}/retry")):
        problem(await node.call(method, path, token=chain.as_bob), 404)
    assert (await node.call("GET", f"{TX}/user", token=chain.as_bob)).json["total"] == 0
    # a batch with one bad item creates nothing
    batch = problem(await node.call("POST", f"{TX}/batch/create", token=chain.operator, body={
        "transactions": [{"tx_type": "market_clearing", "payload": {"epoch": 5}},
                         {"tx_type": "market_clearing", "payload": {"epoch": "five"}}]}), 422)
    assert [e["pointer"] for e in batch["errors"]] == ["/transactions/1/payload/epoch"]
    assert (await node.count("operations"), await node.count("events")) == before
    # alice's meter is hers alone
    meters = (await node.call("GET", "/api/v1/meters", token=chain.as_alice)).json["meters"]
    assert [m["meter_id"] for m in meters] == ["house"]
    assert (await node.call("GET", "/api/v1/meters", token=chain.as_bob)).json["meters"] == []
    problem(await node.call("GET", "/api/v1/meters/house/intervals", token=chain.as_bob), 404)


async def test_idempotency_keys_and_batches(chain: Chain) -> None:
    node = chain.node
    body = {"tx_type": "market_clearing", "payload": {"epoch": 7001}}
    key = {"Idempotency-Key": "clearing-7001"}
    first = await node.call("POST", f"{TX}/create", token=chain.operator, body=body, headers=key)
    again = await node.call("POST", f"{TX}/create", token=chain.operator, body=body, headers=key)
    assert first.status == again.status == 201 and first.json == again.json
    assert again.headers["Idempotent-Replayed"] == "true"
    other = await node.call("POST", f"{TX}/create", token=chain.operator, headers=key,
                            body={"tx_type": "market_clearing", "payload": {"epoch": 7002}})
    assert problem(other, 422)["type"].endswith(":idempotency-key-reused")
    # without a key, the tx type's own key still refuses the same logical operation
    dup = await node.call("POST", f"{TX}/create", token=chain.operator, body=body)
    assert problem(dup, 409)["type"].endswith(":duplicate-operation")
    async with await node.db() as db:
        rows = await db.fetchall("SELECT id FROM operations WHERE idempotency_key = ?",
                                 ("market_clearing:7001",))
    assert [r[0] for r in rows] == [first.json["operation_id"]]

    batch = await node.call("POST", f"{TX}/batch/create", token=chain.operator, body={
        "transactions": [{"tx_type": "market_clearing", "payload": {"epoch": e}}
                         for e in (7101, 7102)]})
    assert batch.status == 201, batch
    ids = [t["operation_id"] for t in batch.json["transactions"]]
    assert [t["status"] for t in batch.json["transactions"]] == ["created", "created"]
    for op in ids:
        detail = (await node.call("GET", f"{TX}/{op}", token=chain.monitor)).json
        assert detail["history"][0]["details"]["batch_id"] == batch.json["batch_id"]


async def test_retry_only_from_failed_parked_or_expired_and_audited(chain: Chain) -> None:
    node = chain.node
    end = (int(time.time()) - 30 * 86400) // 60 * 60     # older than the age limit: parked
    created = await node.call("POST", f"{TX}/create", token=chain.operator, body={
        "tx_type": "meter_reading", "submit": True, "payload": {
            "meter_id": "house", "interval_start": end - 60, "interval_end": end,
            "energy_produced_wh": 5, "energy_consumed_wh": 1}})
    assert created.status == 201, created
    op = created.json["operation_id"]
    await until(chain, op, "parked")
    wrong = problem(await node.call("POST", f"{TX}/{op}/retry", token=chain.operator,
                                    body={"operation_type": "trading"}), 422)
    assert wrong["errors"][0]["allowed"] == "'oracle' or 'meter_reading'"
    retried = await node.call("POST", f"{TX}/{op}/retry", token=chain.operator,
                              body={"operation_type": "oracle", "max_attempts": 3})
    assert retried.status == 200, retried
    assert retried.json == {"success": True, "attempts": 0, "signature": None,
                            "status": "pending"}
    await until(chain, op, "parked")       # still too old: parked again
    detail = (await node.call("GET", f"{TX}/{op}", token=chain.operator)).json
    retries = [h for h in detail["history"] if h["reason"] == "operator retry"]
    assert len(retries) == 1 and retries[0]["details"] == {"note": "API retry by operator ops"}
    created = await node.call("POST", f"{TX}/create", token=chain.operator,
                              body={"tx_type": "market_clearing", "payload": {"epoch": 7201}})
    not_now = problem(await node.call("POST", f"{TX}/{created.json['operation_id']}/retry",
                                      token=chain.operator), 409)
    assert "is created" in not_now["detail"]


async def test_node_endpoints(chain: Chain) -> None:
    node = chain.node
    meters = (await node.call("GET", "/api/v1/meters", token=chain.monitor)).json["meters"]
    [house] = meters
    assert house["meter_id"] == "house" and house["source"]
    assert house["import_wh"] is not None and house["last_reading_at"] is not None
    ivs = await node.call("GET", "/api/v1/meters/house/intervals?from=0", token=chain.monitor)
    assert ivs.status == 200 and ivs.json["from"] == 0 and ivs.json["meter_id"] == "house"
    backwards = problem(await node.call("GET", "/api/v1/meters/house/intervals?from=10&to=5",
                                        token=chain.monitor), 422)
    assert backwards["errors"][0]["pointer"] == "/query/from"
    problem(await node.call("GET", "/api/v1/meters/nope/intervals", token=chain.monitor), 404)
    state = (await node.call("GET", "/api/v1/chain", token=chain.monitor)).json
    assert state["configured"] and state["endpoints"][0]["healthy"]
    assert state["endpoints"][0]["slot"] > 0 and state["blockhash_age_s"] is not None
    fee = await node.call("GET", "/api/v1/fees/estimate?tx_type=user_registration",
                          token=chain.monitor)
    assert fee.status == 200, fee
    assert fee.json["compute_unit_limit_source"] == "recent"   # registrations were sent
    assert fee.json["estimated_fee_lamports"] >= 10_000       # two signatures
    assert 0 <= fee.json["congestion"] <= 1 and fee.json["accounts"]
    bad = problem(await node.call("GET", "/api/v1/fees/estimate?tx_type=nope",
                                  token=chain.monitor), 422)
    assert bad["errors"][0]["pointer"] == "/query/tx_type"
    ready = await node.call("GET", "/ready")
    assert ready.status == 200 and set(ready.json["checks"]) >= {"store", "pipeline", "meters",
                                                                  "chain"}

