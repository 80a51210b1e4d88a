"""getProgramAccounts filters on the localnet answer like a real RPC node (memcmp in base58 and
base64, dataSize, at most four filters, errors named), and gridnode.chain.accounts reads orders
by status through them: a cancelled order is not open, a filled one neither."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
import pytest

from gridnode.chain import accounts
from gridnode.chain.idl import load_idls
from gridnode.chain.rpc import RpcPool, RpcRejected
from gridnode.chain.txtypes import new_operation
from gridnode.chain.validation import OrderCancelPayload, OrderCreationPayload
from gridnode.outbox.pipeline import Pipeline
from gridnode.store import Store, operations
from simulators.chain.localnet import Localnet
from simulators.chain.localnet.encoding import b58encode
from tests.e2e.harness import (
    REPO,
    all_finalized,
    bootstrap_signers,
    chain_config,
    outbox_config,
    register_users,
    running,
    wait_for,
)
from tests.net import pick_free_port


async def gpa(url: str, program: str, filters: list[Any]) -> Any:
    async with httpx.AsyncClient(timeout=5) as client:
        return (await client.post(url, json={
            "jsonrpc": "2.0", "id": 1, "method": "getProgramAccounts",
            "params": [program, {"encoding": "base64", "commitment": "confirmed",
                                 "filters": filters}]})).json()


async def test_filters_and_open_orders_on_the_localnet(tmp_path: Path) -> None:
    idls = load_idls(REPO / "idl")
    trading = idls["trading"]
    disc = trading.account_discriminator("Order")
    async with Localnet(port=pick_free_port(), slot_ms=25, state_dir=tmp_path / "chain") as net:
        signers = bootstrap_signers(net.bootstrap)
        alice, bob = list(signers.users)[:2]
        store = await Store.open(tmp_path / "node.sqlite")
        pool = RpcPool([net.rpc_url], commitment="confirmed")
        try:
            async with running(Pipeline(store, chain_config([net.rpc_url]), outbox_config(),
                                        signers)):
                await register_users(store, [alice, bob])
                await wait_for(lambda: all_finalized(store), 60, "users")
                for i, (who, side) in enumerate([(alice, "sell"), (bob, "buy"), (alice, "sell")]):
                    async with store.write() as tx:
                        await operations.add(tx, new_operation(OrderCreationPayload(
                            owner=who, side=side, energy_amount=100 + i, price_per_kwh=90 + i),
                            f"o:{i}"))
                    await wait_for(lambda: all_finalized(store), 60, f"order {i}")
                book = await accounts.open_orders(pool, idls)
                assert [(o.owner, o.side, o.amount, o.status) for o in
                        sorted(book, key=lambda o: o.amount)] == [
                    (alice, "sell", 100, "Active"), (bob, "buy", 101, "Active"),
                    (alice, "sell", 102, "Active")]
                first = next(o for o in book if o.amount == 100)
                async with store.write() as tx:
                    await operations.add(tx, new_operation(OrderCancelPayload(
                        owner=alice, order=first.address)))
                await wait_for(lambda: all_finalized(store), 60, "cancel")
            assert sorted(o.amount for o in await accounts.open_orders(pool, idls)) == [101, 102]

            program = str(trading.program_id)
            by58 = await gpa(net.rpc_url, program, [{"memcmp": {"offset": 0,
                                                                "bytes": b58encode(disc)}}])
            by64 = await gpa(net.rpc_url, program, [{"memcmp": {
                "offset": 0, "bytes": base64.b64encode(disc).decode(), "encoding": "base64"}}])
            assert len(by58["result"]) == 3 and by58 == by64
            assert base64.b64decode(by64["result"][0]["account"]["data"][0])[:8] == disc
            assert by64["result"][0]["account"]["data"][1] == "base64"
            sized = await gpa(net.rpc_url, program, [{"dataSize": 114}])
            assert len(sized["result"]) == 3            # the three orders, not the market (75)
            cancelled = await gpa(net.rpc_url, program, [
                {"memcmp": {"offset": 0, "bytes": b58encode(disc)}},
                {"memcmp": {"offset": accounts.ORDER_STATUS_OFFSET, "bytes": b58encode(bytes([3]))}}])
            assert [a["pubkey"] for a in cancelled["result"]] == [first.address]
            too_many = await gpa(net.rpc_url, program, [{"dataSize": 114}] * 5)
            assert too_many["error"]["code"] == -32602
            assert "max 4" in too_many["error"]["message"]
            bad = await gpa(net.rpc_url, program, [{"memcmp": {"offset": 0, "bytes": "x",
                                                               "encoding": "hex"}}])
            assert "encoding" in bad["error"]["message"]
            with pytest.raises(RpcRejected):
                await pool.raw("getProgramAccounts", [program, {"filters": [{"memcmp": 5}]}])
            # balances of accounts that do not exist read as 0
            assert await accounts.token_balances(pool, [alice]) == {alice: 0}
        finally:
            await pool.close()
            await store.close()
