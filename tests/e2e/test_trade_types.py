"""The trade tx types on the real localnet over HTTP: grid_minting, match_orders, settle_trade.

A prosumer's net generation becomes GRID (Wh x 10^6 base units) once, however many mint
operations ask for it; a sell and a buy order (order_creation) are read back through
gridnode.chain.accounts, matched by gridnode.market.matching and by match_orders on chain (the
TradeRecord is written); settle_trade by the seller and by the gateway as the seller's approved
SPL delegate moves amount x 10^6 base units exactly once, and a repeated settle_trade is
recognised as already settled (finalized without a transaction of its own). The buyer's GRID
account does not exist before the first settlement: it is created in the same transaction.
"""

from __future__ import annotations

import base64
import struct
from pathlib import Path
from typing import Any

import httpx
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from gridnode.chain import accounts
from gridnode.chain.idl import load_idls
from gridnode.chain.instructions import TOKEN_PROGRAM, associated_token_address
from gridnode.chain.rpc import RpcPool
from gridnode.chain.txtypes import new_operation
from gridnode.chain.validation import (
    GridMintingPayload,
    MatchOrdersPayload,
    OrderCreationPayload,
    SettleTradePayload,
)
from gridnode.market.matching import match
from gridnode.outbox.pipeline import Pipeline
from gridnode.store import Store, operations
from simulators.chain.localnet import Localnet
from tests.e2e.harness import (
    REPO,
    add_readings,
    all_finalized,
    bootstrap_signers,
    chain_config,
    expected_value,
    outbox_config,
    recent_intervals,
    register,
    register_users,
    running,
    wait_for,
)
from tests.net import pick_free_port

WH = 10**6


async def rpc(url: str, method: str, params: list[Any]) -> Any:
    async with httpx.AsyncClient(timeout=5) as client:
        body = (await client.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method,
                                             "params": params})).json()
    assert "error" not in body, body
    return body["result"]


def approve_ix(source: Pubkey, delegate: Pubkey, owner: Pubkey, amount: int) -> Instruction:
    """SPL Token Approve (4): the owner lets `delegate` move up to `amount` from `source`."""
    return Instruction(TOKEN_PROGRAM, bytes([4]) + struct.pack("<Q", amount), [
        AccountMeta(source, False, True), AccountMeta(delegate, False, False),
        AccountMeta(owner, True, False)])


async def send_as(url: str, signer: Keypair, ixs: list[Instruction]) -> str:
    """A transaction the user sends itself (not through gridnode), confirmed."""
    bh = (await rpc(url, "getLatestBlockhash", [{"commitment": "confirmed"}]))["value"]["blockhash"]
    txn = VersionedTransaction(Message.new_with_blockhash(ixs, signer.pubkey(),
                                                          Hash.from_string(bh)), [signer])
    sig = await rpc(url, "sendTransaction", [base64.b64encode(bytes(txn)).decode(),
                                             {"encoding": "base64",
                                              "preflightCommitment": "confirmed"}])

    async def landed() -> bool:
        st = (await rpc(url, "getSignatureStatuses", [[sig]]))["value"][0]
        return st is not None and st.get("confirmationStatus") in ("confirmed", "finalized")

    await wait_for(landed, 20, "user transaction confirmed")
    return str(sig)


async def reason_of(store: Store, key: str) -> str:
    row = await store.fetchone(
        "SELECT a.reason FROM audit_log a JOIN operations o ON o.id = a.entity_id "
        "WHERE o.idempotency_key = ? AND a.new_status = 'finalized' ORDER BY a.id DESC LIMIT 1",
        (key,))
    return "" if row is None else str(row["reason"])


async def events(store: Store, name: str) -> list[Any]:
    return await store.fetchall("SELECT data FROM chain_events WHERE name = ? ORDER BY id",
                                (name,))


async def test_mint_match_and_settle_exactly_once(tmp_path: Path) -> None:
    idls = load_idls(REPO / "idl")
    mint = Pubkey.find_program_address([b"mint"], idls["energy_token"].program_id)[0]
    async with Localnet(port=pick_free_port(), slot_ms=25, state_dir=tmp_path / "chain") as net:
        signers = bootstrap_signers(net.bootstrap)
        alice, bob, carol = list(signers.users.values())[:3]
        a, b, c = str(alice.pubkey()), str(bob.pubkey()), str(carol.pubkey())
        alice_ta = associated_token_address(alice.pubkey(), mint)
        bob_ta = associated_token_address(bob.pubkey(), mint)
        carol_ta = associated_token_address(carol.pubkey(), mint)
        store = await Store.open(tmp_path / "node.sqlite")
        pipeline = Pipeline(store, chain_config([net.rpc_url], registry_readings=True),
                            outbox_config(), signers)
        pool = RpcPool([net.rpc_url], commitment="confirmed")
        intervals = recent_intervals(2)
        net_wh = sum(expected_value(0, i)[0] - expected_value(0, i)[1] for i in range(2))
        try:
            async with running(pipeline):
                await register(store, alice, ["pv-1"])
                await register_users(store, [b, c], "consumer")
                await add_readings(store, ["pv-1"], intervals)
                await wait_for(lambda: all_finalized(store), 60, "registrations and readings")
                assert (await accounts.token_balances(pool, [alice_ta])) == {str(alice_ta): 0}

                # -- grid_minting: both intervals ask; the meter's balance is minted once
                async with store.write() as tx:
                    for end in intervals:
                        await operations.add(tx, new_operation(GridMintingPayload(
                            meter_id="pv-1", owner=a, token_account=str(alice_ta),
                            interval_end=end)))
                await wait_for(lambda: all_finalized(store), 60, "mints")
                assert await accounts.token_balances(pool, [alice_ta]) == {
                    str(alice_ta): net_wh * WH}
                minted = await events(store, "GridTokensMinted")
                assert len(minted) == 1
                reasons = [await reason_of(store, f"grid_minting:pv-1:{e}") for e in intervals]
                assert sum("already on chain: nothing left to mint" in r for r in reasons) == 1, \
                    reasons

                # -- orders, read back through the IDL, matched off chain and on chain
                async with store.write() as tx:
                    await operations.add(tx, new_operation(OrderCreationPayload(
                        owner=a, side="sell", energy_amount=500, price_per_kwh=90), "o:a:1"))
                    await operations.add(tx, new_operation(OrderCreationPayload(
                        owner=b, side="buy", energy_amount=400, price_per_kwh=111), "o:b:1"))
                await wait_for(lambda: all_finalized(store), 60, "orders")
                book = await accounts.open_orders(pool, idls)
                asks = [o for o in book if o.side == "sell"]
                bids = [o for o in book if o.side == "buy"]
                assert [(o.owner, o.amount, o.price_per_kwh, o.status) for o in asks] == [
                    (a, 500, 90, "Active")]
                assert [(o.owner, o.amount, o.price_per_kwh) for o in bids] == [(b, 400, 111)]
                matches = match(bids, asks)
                assert [(m.amount_wh, m.price) for m in matches] == [(400, 100)]   # floor(201/2)
                m1 = matches[0]
                async with store.write() as tx:
                    await operations.add(tx, new_operation(MatchOrdersPayload(
                        buy_order=m1.buy_order, sell_order=m1.sell_order, amount=m1.amount_wh,
                        epoch=intervals[-1])))
                await wait_for(lambda: all_finalized(store), 60, "match")
                trades = await accounts.trade_records(pool, idls, party=a)
                assert [(t.seller, t.buyer, t.amount, t.price_per_kwh, t.total_value)
                        for t in trades] == [(a, b, 400, 100, 40_000)]
                assert await accounts.trade_records(pool, idls, party=b) == trades
                t1 = trades[0]
                assert t1.address == str(accounts.trade_record_address(idls, m1.buy_order,
                                                                       m1.sell_order))
                left = await accounts.open_orders(pool, idls)
                assert [(o.side, o.remaining, o.status) for o in left] == [
                    ("sell", 100, "PartiallyFilled")]
                state = await accounts.market(pool, idls)
                assert state is not None and state.total_trades == 1 and state.total_volume == 400

                # -- settle_trade by the seller; bob's GRID account is created on the way
                assert await accounts.token_balances(pool, [bob_ta]) == {str(bob_ta): 0}
                settle1 = SettleTradePayload(
                    trade_record=t1.address, seller=a, buyer=b,
                    seller_token_account=str(alice_ta), buyer_token_account=str(bob_ta), signer=a)
                async with store.write() as tx:
                    await operations.add(tx, new_operation(settle1))
                await wait_for(lambda: all_finalized(store), 60, "settlement by the seller")
                assert await accounts.token_balances(pool, [alice_ta, bob_ta]) == {
                    str(alice_ta): (net_wh - 400) * WH, str(bob_ta): 400 * WH}
                # the same settlement again (another operation): already settled, nothing moves
                async with store.write() as tx:
                    await operations.add(tx, new_operation(settle1, "settle again:1"))
                await wait_for(lambda: all_finalized(store), 60, "repeated settlement")
                assert "already on chain: the trade is already settled" in await reason_of(
                    store, "settle again:1")
                assert await accounts.token_balances(pool, [alice_ta, bob_ta]) == {
                    str(alice_ta): (net_wh - 400) * WH, str(bob_ta): 400 * WH}

                # -- a second trade, settled by the gateway as alice's approved delegate. (Its
                # buyer is carol: bob's next order would land on the PDA index of his completed
                # one, ["order", bob, active_orders], which the program cannot re-create.)
                async with store.write() as tx:
                    await operations.add(tx, new_operation(OrderCreationPayload(
                        owner=c, side="buy", energy_amount=300, price_per_kwh=95), "o:c:1"))
                await wait_for(lambda: all_finalized(store), 60, "second buy order")
                book = await accounts.open_orders(pool, idls)
                traded = {(t.buy_order, t.sell_order) for t in trades}
                matches = match([o for o in book if o.side == "buy"],
                                [o for o in book if o.side == "sell"], traded=traded)
                assert [(m.amount_wh, m.price) for m in matches] == [(100, 92)]  # floor(185/2)
                async with store.write() as tx:
                    await operations.add(tx, new_operation(MatchOrdersPayload(
                        buy_order=matches[0].buy_order, sell_order=matches[0].sell_order,
                        amount=matches[0].amount_wh, epoch=intervals[-1] + 900)))
                await wait_for(lambda: all_finalized(store), 60, "second match")
                t2 = [t for t in await accounts.trade_records(pool, idls, party=a)
                      if t.address != t1.address][0]
                gateway = str(signers.gateway.pubkey())
                await send_as(net.rpc_url, alice, [approve_ix(alice_ta, signers.gateway.pubkey(),
                                                              alice.pubkey(), 1_000 * WH)])
                assert (t2.buyer, t2.amount, t2.price_per_kwh) == (c, 100, 92)
                settle2 = SettleTradePayload(
                    trade_record=t2.address, seller=a, buyer=c,
                    seller_token_account=str(alice_ta), buyer_token_account=str(carol_ta),
                    signer=gateway)
                async with store.write() as tx:
                    await operations.add(tx, new_operation(settle2))
                    await operations.add(tx, new_operation(settle2, "settle again:2"))
                await wait_for(lambda: all_finalized(store), 60, "settlement by the delegate")

                # -- a third trade settled by two operations at once (the seller's and the
                # delegate's, different transactions): one moves the energy, the other ends
                # already settled - in simulation, or on chain when both were sent
                async with store.write() as tx:
                    await operations.add(tx, new_operation(OrderCreationPayload(
                        owner=a, side="sell", energy_amount=150, price_per_kwh=90), "o:a:2"))
                await wait_for(lambda: all_finalized(store), 60, "second sell order")
                book = await accounts.open_orders(pool, idls)
                traded = {(t.buy_order, t.sell_order)
                          for t in await accounts.trade_records(pool, idls)}
                m3 = match([o for o in book if o.side == "buy"],
                           [o for o in book if o.side == "sell"], traded=traded)
                assert [(m.buyer, m.seller, m.amount_wh, m.price) for m in m3] == [
                    (c, a, 150, 92)]
                async with store.write() as tx:
                    await operations.add(tx, new_operation(MatchOrdersPayload(
                        buy_order=m3[0].buy_order, sell_order=m3[0].sell_order, amount=150,
                        epoch=intervals[-1] + 1800)))
                await wait_for(lambda: all_finalized(store), 60, "third match")
                t3 = str(accounts.trade_record_address(idls, m3[0].buy_order, m3[0].sell_order))
                both = [SettleTradePayload(
                    trade_record=t3, seller=a, buyer=c, seller_token_account=str(alice_ta),
                    buyer_token_account=str(carol_ta), signer=who) for who in (a, gateway)]
                async with store.write() as tx:
                    await operations.add(tx, new_operation(both[0]))
                    await operations.add(tx, new_operation(both[1], "settle race:3"))
                await wait_for(lambda: all_finalized(store), 60, "racing settlements")
                race = [await reason_of(store, k) for k in (f"settle_trade:{t3}",
                                                            "settle race:3")]
                assert sum("already settled" in r for r in race) == 1, race
            expected = {str(alice_ta): (net_wh - 650) * WH, str(bob_ta): 400 * WH,
                        str(carol_ta): 250 * WH}
            assert await accounts.token_balances(pool, [alice_ta, bob_ta, carol_ta]) == expected
            settled = await events(store, "TradeSettled")
            assert len(settled) == 3
            marks = await accounts.settlements(pool, idls, [t1.address, t2.address])
            assert marks[t1.address] is not None and marks[t1.address].settled_by == a
            assert marks[t2.address] is not None and marks[t2.address].settled_by == gateway
            assert marks[t2.address].token_amount == 100 * WH
            done = [await reason_of(store, k) for k in (f"settle_trade:{t2.address}",
                                                        "settle again:2")]
            assert sum("already settled" in r for r in done) == 1, done
            # nothing failed, nothing waits for an operator
            assert set((await store.fetchone(
                "SELECT group_concat(DISTINCT status) AS s FROM operations"))["s"].split(",")) \
                == {"finalized"}
        finally:
            await pool.close()
            await store.close()
