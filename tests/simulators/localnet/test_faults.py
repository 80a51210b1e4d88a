"""Each fault mode does what it says; faults are set at start and through POST /admin/faults."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Processed
from solana.rpc.types import TxOpts
from solana.rpc.websocket_api import connect
from solders.keypair import Keypair

from simulators.chain.localnet import Localnet
from tests.net import pick_free_port
from tests.simulators.localnet.conftest import latest, rpc, signed, transfer_ix, user

OPTS = TxOpts(skip_confirmation=True, preflight_commitment=Processed)


async def admin(net, body=None):
    async with aiohttp.ClientSession() as s:
        if body is None:
            async with s.get(f"{net.rpc_url}/admin/faults") as r:
                return r.status, await r.json()
        async with s.post(f"{net.rpc_url}/admin/faults", json=body) as r:
            return r.status, await r.json()


async def raw_send(net, tx, url=None):
    import base64
    body = {"jsonrpc": "2.0", "id": 1, "method": "sendTransaction",
            "params": [base64.b64encode(bytes(tx)).decode(),
                       {"encoding": "base64", "preflightCommitment": "processed"}]}
    async with aiohttp.ClientSession() as s, s.post(url or net.rpc_url, json=body) as r:
        return r.status, (await r.json() if r.status == 200 else None)


async def test_admin_api_reads_validates_and_updates(net):
    status, faults = await admin(net)
    assert status == 200 and faults["drop_tx_rate"] == 0
    status, faults = await admin(net, {"drop_tx_rate": 0.25, "seed": 3})
    assert status == 200 and faults["drop_tx_rate"] == 0.25 and net.faults.faults.seed == 3
    status, err = await admin(net, {"drop_tx_rate": 2})
    assert status == 400 and err["details"][0]["field"] == "drop_tx_rate"
    status, err = await admin(net, {"no_such_fault": 1})
    assert status == 400
    assert net.faults.faults.drop_tx_rate == 0.25  # a refused update changes nothing


async def test_dropped_transactions_are_accepted_but_never_land(net, client):
    net.faults.update({"drop_tx_rate": 1.0, "seed": 1})
    payer = user(net)
    tx = signed(payer, [transfer_ix(payer, Keypair().pubkey(), 1)], (await latest(client)).blockhash)
    sig = (await client.send_transaction(tx, opts=OPTS)).value
    await net.advance(3)
    assert (await client.get_signature_statuses([sig], True)).value == [None]
    net.faults.update({"drop_tx_rate": 0.0})
    sig2 = (await client.send_transaction(tx, opts=OPTS)).value  # same bytes: safe to resend
    await net.advance(1)
    assert sig2 == sig and (await client.get_signature_statuses([sig])).value[0] is not None


async def test_drop_rate_is_a_seeded_fraction(net, client):
    payer = user(net)
    bh = (await latest(client)).blockhash

    async def run(seed):
        net.faults.update({"drop_tx_rate": 0.5, "seed": seed})
        sigs = []
        for _ in range(40):
            tx = signed(payer, [transfer_ix(payer, Keypair().pubkey(), 1)], bh)
            sigs.append((await client.send_transaction(tx, opts=OPTS)).value)
        await net.advance(1)
        statuses = (await client.get_signature_statuses(sigs)).value
        return [s is not None for s in statuses]

    first, second = await run(11), await run(11)
    assert first == second  # same seed, same faults
    assert 8 <= sum(first) <= 32


async def test_send_error_and_timeout_still_land(net, client):
    payer = user(net)
    net.faults.update({"send_error_rate": 1.0})
    tx = signed(payer, [transfer_ix(payer, Keypair().pubkey(), 1)], (await latest(client)).blockhash)
    status, _ = await raw_send(net, tx)
    assert status == 502
    await net.advance(1)
    assert (await client.get_signature_statuses([tx.signatures[0]])).value[0] is not None
    net.faults.update({"send_error_rate": 0.0, "send_timeout_rate": 1.0, "timeout_s": 0.3})
    tx2 = signed(payer, [transfer_ix(payer, Keypair().pubkey(), 2)], (await latest(client)).blockhash)
    with pytest.raises(aiohttp.ClientError):
        await raw_send(net, tx2)
    await net.advance(1)
    assert (await client.get_signature_statuses([tx2.signatures[0]])).value[0] is not None


async def test_http_5xx_unhealthy_and_latency(net):
    net.faults.update({"http_error_rate": 1.0})
    async with aiohttp.ClientSession() as s, s.post(net.rpc_url, json={
            "jsonrpc": "2.0", "id": 1, "method": "getSlot"}) as r:
        assert r.status == 503
    net.faults.update({"http_error_rate": 0.0, "unhealthy_rate": 1.0})
    reply = await rpc(net.rpc_url, "getSlot")
    assert reply["error"] == {"code": -32005, "message": "Node is unhealthy",
                              "data": {"numSlotsBehind": None}}
    net.faults.update({"unhealthy_rate": 0.0, "latency_ms": 200})
    start = time.monotonic()
    assert "result" in await rpc(net.rpc_url, "getSlot")
    assert time.monotonic() - start >= 0.2


async def test_stall_stops_block_production(tmp_path):
    async with Localnet(port=pick_free_port(), slot_ms=20, state_dir=tmp_path,
                        faults={"stall": True}) as net:
        slot = net.slot
        await asyncio.sleep(0.2)
        assert net.slot == slot
        net.faults.update({"stall": False})
        async with asyncio.timeout(5):
            await net.wait_for_slot(slot + 3)


async def test_lagging_port_serves_an_older_view(net, client):
    lag = AsyncClient(net.lag_rpc_url, commitment=Processed)
    try:
        net.faults.update({"lag_slots": 5})
        await net.advance(10)
        assert (await lag.get_slot(Processed)).value == net.slot - 5
        fresh = await latest(client)  # from the leading port
        payer = user(net)
        tx = signed(payer, [transfer_ix(payer, Keypair().pubkey(), 1)], fresh.blockhash)
        _, reply = await raw_send(net, tx, net.lag_rpc_url)
        assert reply["error"]["code"] == -32002
        assert reply["error"]["message"] == "Transaction simulation failed: Blockhash not found"
        sig = (await client.send_transaction(tx, opts=OPTS)).value
        await net.advance(1)
        assert (await lag.get_signature_statuses([sig])).value == [None]
        await net.advance(5)
        assert (await lag.get_signature_statuses([sig])).value[0] is not None
        net.faults.update({"lag_slots": 200})
        health = await rpc(net.lag_rpc_url, "getHealth")
        assert health["error"] == {"code": -32005, "message": "Node is behind by 200 slots",
                                   "data": {"numSlotsBehind": 200}}
    finally:
        await lag.close()


async def test_close_websockets(net):
    async with connect(net.ws_url) as ws:
        await ws.slot_subscribe()
        await ws.recv()
        await admin(net, {"close_websockets": True})
        with pytest.raises(Exception, match="1006|no close frame"):
            async with asyncio.timeout(2):
                await ws.recv()
    net.faults.update({"ws_close_rate": 1.0, "seed": 5})
    async with connect(net.ws_url) as ws:
        await ws.slot_subscribe()
        await ws.recv()
        await net.advance(1)  # the notification closes the socket instead
        with pytest.raises(Exception, match="1006|no close frame"):
            async with asyncio.timeout(2):
                await ws.recv()


async def admin_port(net, method, port, body=None):
    async with aiohttp.ClientSession() as s, s.request(
            method, f"{net.rpc_url}/admin/faults", params={"port": str(port)}, json=body) as r:
        return r.status, await r.json()


async def test_faults_of_one_port_leave_the_other_answering(net):
    """A failover test breaks only the primary: the lagging view keeps answering."""
    status, faults = await admin_port(net, "POST", net.port, {"http_error_rate": 1.0})
    assert status == 200 and faults["http_error_rate"] == 1.0
    async with aiohttp.ClientSession() as s:
        async with s.post(net.rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": "getSlot"}) as r:
            assert r.status == 503
    assert "result" in await rpc(net.lag_rpc_url, "getSlot")
    assert (await admin(net))[1]["http_error_rate"] == 0          # the common faults are unchanged
    # A common fault reaches the port where the port has no setting of its own.
    net.faults.update({"unhealthy_rate": 1.0})
    assert (await admin_port(net, "GET", net.port, None))[1]["unhealthy_rate"] == 1.0
    assert (await rpc(net.lag_rpc_url, "getSlot"))["error"]["code"] == -32005
    net.faults.update({"unhealthy_rate": 0.0})
    # The port's own setting wins over a common change, until it is dropped.
    net.faults.update({"http_error_rate": 0.5})
    assert net.faults.ports[net.port].faults.http_error_rate == 1.0
    status, faults = await admin_port(net, "DELETE", net.port)
    assert status == 200 and faults["http_error_rate"] == 0.5
    net.faults.update({"http_error_rate": 0.0})
    assert "result" in await rpc(net.rpc_url, "getSlot")


async def test_per_port_faults_are_checked(net):
    status, err = await admin_port(net, "POST", net.port + net.lag_port, {"latency_ms": 5})
    assert status == 400 and "is not served here" in err["error"]
    status, err = await admin_port(net, "POST", net.lag_port, {"stall": True})
    assert status == 400 and err["error"] == "stall: not per port; set without a port"
    status, err = await admin_port(net, "POST", net.lag_port, {"drop_tx_rate": 3})
    assert status == 400 and err["details"][0]["field"] == "drop_tx_rate"
    status, err = await admin_port(net, "POST", "x", {"latency_ms": 5})
    assert status == 400 and "port number" in err["error"]
    status, err = await admin_port(net, "DELETE", net.lag_port)
    assert status == 200
    assert net.faults.ports[net.lag_port].faults == net.faults.faults   # nothing was applied


async def test_dropped_transactions_on_one_port_only(net, client):
    net.faults.update({"drop_tx_rate": 1.0}, port=net.lag_port)
    payer = user(net)
    bh = (await latest(client)).blockhash
    lost = signed(payer, [transfer_ix(payer, Keypair().pubkey(), 1)], bh)
    kept = signed(payer, [transfer_ix(payer, Keypair().pubkey(), 2)], bh)
    await raw_send(net, lost, net.lag_rpc_url)
    await raw_send(net, kept)
    await net.advance(1)
    statuses = (await client.get_signature_statuses([lost.signatures[0], kept.signatures[0]])).value
    assert statuses[0] is None and statuses[1] is not None


async def test_close_websockets_of_one_port(net):
    async with connect(net.ws_url) as main, connect(net.lag_ws_url) as lagging:
        for ws in (main, lagging):
            await ws.slot_subscribe()
            await ws.recv()
        await admin_port(net, "POST", net.lag_port, {"close_websockets": True})
        with pytest.raises(Exception, match="1006|no close frame"):
            async with asyncio.timeout(2):
                await lagging.recv()
        await net.advance(1)
        async with asyncio.timeout(2):
            assert await main.recv()     # the main port's socket is still open
