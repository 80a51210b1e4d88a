"""A seller that keeps its own key: it approved the gateway as SPL delegate of its GRID account,
so the node settles its sale signed by the gateway. Its order comes from elsewhere (here: a
test-made operation signed by the seller), and the trade still becomes one settlement."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from solders.instruction import AccountMeta, Instruction
from solders.pubkey import Pubkey

from gridnode.chain.txtypes import new_operation
from gridnode.chain.validation import OrderCreationPayload
from gridnode.market.minting import mint_operation
from gridnode.market.users import TOKEN_PROGRAM, Users
from gridnode.store import operations, settlements
from tests.e2e.harness import wait_for
from tests.market.harness import WH, add_reading, market_node, running, send_raw, wait_epoch_start

POLICIES = [
    {"policy": "manual"},
    {"policy": "manual"},
    {"policy": "buy_deficit", "max_price_per_kwh": 150_000},
    {"policy": "manual"},
]


async def test_gateway_settles_as_the_sellers_delegate(tmp_path: Path) -> None:
    async with market_node(tmp_path, POLICIES, epoch_s=15) as node:
        seller = node.keys[0]
        # u0 keeps its key: the node knows only its public key (delegate mode)
        node.users = Users([dataclasses.replace(u, holds_key=False) if u.name == "u0" else u
                            for u in node.users])
        gateway = str(node.signers.gateway.pubkey())
        end = int(time.time())
        await add_reading(node.store, "m0", end - 60, 1000, 200)

        async def read() -> bool:
            op = await operations.by_key(node.store, f"meter_reading:m0:{end - 60}")
            return op is not None and op.status == "finalized"
        await wait_for(read, 30, "u0's reading in the registry")
        async with node.store.write() as tx:      # u0's own minting, not the node's
            await operations.add(tx, mint_operation("m0", str(seller.pubkey()),
                                                    node.token_account(0), end - 60))

        async def minted() -> bool:
            return (await node.balances())[0] == 800 * WH
        await wait_for(minted, 30, "u0's GRID minted")
        approve = Instruction(TOKEN_PROGRAM, bytes([4]) + (800 * WH).to_bytes(8, "little"), [
            AccountMeta(Pubkey.from_string(node.token_account(0)), False, True),
            AccountMeta(node.signers.gateway.pubkey(), False, False),
            AccountMeta(seller.pubkey(), True, False)])
        await send_raw(node.net.rpc_url, seller, [approve])

        sub = node.market()
        async with running(sub):
            await wait_epoch_start(node.epoch_s)
            async with node.store.write() as tx:      # u0's order, placed elsewhere
                await operations.add(tx, new_operation(OrderCreationPayload(
                    owner=str(seller.pubkey()), side="sell", energy_amount=800,
                    price_per_kwh=100_000), "elsewhere:u0:1"))
            await add_reading(node.store, "m2", int(time.time()), 0, 500)

            async def settled() -> bool:
                rows = await settlements.all_rows(node.store)
                return len(rows) == 1 and rows[0].status == "settled"
            await wait_for(settled, 90, "the delegate's settlement")
        s = (await settlements.all_rows(node.store))[0]
        op = await operations.get(node.store, s.operation_id or 0)
        assert op is not None and op.payload["signer"] == gateway
        assert (s.seller, s.energy_wh) == (str(seller.pubkey()), 500)
        assert (await node.balances())[:3] == [300 * WH, 0, 500 * WH]
