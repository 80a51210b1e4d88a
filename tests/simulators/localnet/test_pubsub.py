"""WebSocket subscriptions through solana-py's websocket_api, notified at their commitment."""

from __future__ import annotations

import asyncio

from solana.rpc.commitment import Confirmed, Finalized, Processed
from solana.rpc.types import TxOpts
from solana.rpc.websocket_api import connect
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.rpc.config import RpcTransactionLogsFilterMentions
from solders.rpc.responses import (
    AccountNotification,
    LogsNotification,
    SignatureNotification,
    SlotNotification,
)

from tests.simulators.localnet.conftest import latest, signed, transfer_ix, user

OPTS = TxOpts(skip_confirmation=True, preflight_commitment=Processed)


async def recv(ws, wait_s: float = 2.0):
    async with asyncio.timeout(wait_s):
        return (await ws.recv())[0]


async def nothing(ws, wait_s: float = 0.3) -> bool:
    try:
        async with asyncio.timeout(wait_s):
            await ws.recv()
    except TimeoutError:
        return True
    return False


async def _send_transfer(net, client, dest):
    payer = user(net)
    tx = signed(payer, [transfer_ix(payer, dest, 1_000_000)], (await latest(client)).blockhash)
    return (await client.send_transaction(tx, opts=OPTS)).value


async def test_signature_subscription_fires_at_its_commitment(net, client):
    dest = Keypair().pubkey()
    async with connect(net.ws_url) as ws:
        sig = await _send_transfer(net, client, dest)
        await ws.signature_subscribe(sig, Confirmed)
        sub_id = (await recv(ws)).result
        await net.advance(1)  # processed only
        assert await nothing(ws)
        await net.advance(1)  # confirmed
        note = await recv(ws)
        assert isinstance(note, SignatureNotification) and note.subscription == sub_id
        assert note.result.value.err is None
        assert note.result.context.slot == net.slot - 1
        await net.advance(1)
        assert await nothing(ws)  # one notification, then the subscription ends


async def test_logs_mentions_and_account_and_unsubscribe(net, client):
    dest = Keypair().pubkey()
    other = Keypair().pubkey()
    async with connect(net.ws_url) as ws:
        await ws.logs_subscribe(RpcTransactionLogsFilterMentions(dest), Processed)
        logs_id = (await recv(ws)).result
        await ws.account_subscribe(dest, Processed, "base64")
        acc_id = (await recv(ws)).result
        await _send_transfer(net, client, other)  # mentions neither
        await net.advance(1)
        assert await nothing(ws)
        sig = await _send_transfer(net, client, dest)
        await net.advance(1)
        notes = [await recv(ws), await recv(ws)]
        by_type = {type(n): n for n in notes}
        logs = by_type[LogsNotification]
        assert logs.subscription == logs_id and logs.result.value.signature == sig
        assert any("invoke [1]" in line for line in logs.result.value.logs)
        acc = by_type[AccountNotification]
        assert acc.subscription == acc_id and acc.result.value.lamports == 1_000_000
        await ws.account_unsubscribe(acc_id)
        assert (await recv(ws)).result is True
        await ws.logs_unsubscribe(logs_id)
        assert (await recv(ws)).result is True
        await _send_transfer(net, client, dest)
        await net.advance(1)
        assert await nothing(ws)


async def test_account_subscription_at_finalized_waits_32_slots(net, client):
    dest = Keypair().pubkey()
    async with connect(net.ws_url) as ws:
        await ws.account_subscribe(dest, Finalized, "base64")
        await recv(ws)
        await _send_transfer(net, client, dest)
        await net.advance(32)
        assert await nothing(ws, 0.2)
        await net.advance(1)
        note = await recv(ws)
        assert note.result.value.lamports == 1_000_000


async def test_slot_subscription(net):
    async with connect(net.ws_url) as ws:
        await ws.slot_subscribe()
        sub_id = (await recv(ws)).result
        start = net.slot
        await net.advance(2)
        first, second = await recv(ws), await recv(ws)
        assert isinstance(first, SlotNotification) and first.subscription == sub_id
        assert (first.result.slot, second.result.slot) == (start + 1, start + 2)
        assert second.result.parent == start + 1
        assert second.result.root == max(0, start + 2 - 32)
        await ws.slot_unsubscribe(sub_id)
        assert (await recv(ws)).result is True
        await net.advance(1)
        assert await nothing(ws)


async def test_logs_all_root_and_program_subscriptions(net, client):
    dest = Keypair().pubkey()
    await net.advance(40)  # past the first finalized slot
    async with connect(net.ws_url) as ws:
        await ws.logs_subscribe(commitment=Processed)
        await recv(ws)
        await ws.root_subscribe()
        await recv(ws)
        await ws.program_subscribe(Pubkey.default(), Processed, "base64")
        prog_id = (await recv(ws)).result
        sig = await _send_transfer(net, client, dest)
        await net.advance(1)
        notes = []
        while not notes or notes[-1] is not None:
            try:
                notes.append(await recv(ws, 0.3))
            except TimeoutError:
                notes.append(None)
        notes.pop()
        kinds = {type(n).__name__: n for n in notes}
        assert kinds["LogsNotification"].result.value.signature == sig
        assert kinds["RootNotification"].result == max(0, net.slot - 32)
        program_notes = [n for n in notes if getattr(n, "subscription", None) == prog_id]
        changed = {str(n.result.value.pubkey) for n in program_notes}
        assert changed == {str(dest), str(user(net).pubkey())}


async def test_lagging_port_notifies_later(net, client):
    net.faults.update({"lag_slots": 3})
    dest = Keypair().pubkey()
    async with connect(net.lag_ws_url) as ws:
        await ws.account_subscribe(dest, Processed, "base64")
        await recv(ws)
        await _send_transfer(net, client, dest)
        await net.advance(3)
        assert await nothing(ws, 0.2)
        await net.advance(1)
        note = await recv(ws)
        assert note.result.value.lamports == 1_000_000
        assert note.result.context.slot == net.slot - 3
