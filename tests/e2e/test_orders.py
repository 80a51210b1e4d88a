"""The order PDA race: orders created concurrently all land; an owner's next order lands after
its earlier ones were cancelled.

The trading program derives an order's address from Market.active_orders at execution time, so
two orders built from the same reading of the market collide: the second fails with
ConstraintSeeds (2006). gridnode re-reads the market and rebuilds it, and both orders land; a
cancel then goes through the same pipeline.

Orders are never closed and a cancel (or a completion) takes the count down again, so an owner's
next order would land on the address of its own earlier one ("already in use" on every rebuild,
then parked). gridnode prepends as few placeholder orders as move the count past the owner's
taken indices, each signed by a one-off key the gateway derives and funds in the same transaction
(gridnode.chain.txtypes): the tests below check that each order lands,
that the number of placeholders is the least possible for each transaction, and that the
order's address is the owner's event among those of its transaction.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from solders.pubkey import Pubkey

from gridnode.chain import accounts
from gridnode.chain.idl import load_idls
from gridnode.chain.instructions import placeholder_key
from gridnode.chain.rpc import RpcPool
from gridnode.chain.txtypes import (
    ORDER_RENT_LAMPORTS,
    PLACEHOLDER_PRICE,
    PLACEHOLDER_WH,
    new_operation,
)
from gridnode.chain.validation import OrderCancelPayload, OrderCreationPayload
from gridnode.outbox.pipeline import Pipeline
from gridnode.store import Store, operations
from simulators.chain.localnet import Localnet
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


async def active_orders(rpc_url: str) -> int:
    trading = load_idls(REPO / "idl")["trading"]
    market = Pubkey.find_program_address([b"market"], trading.program_id)[0]
    pool = RpcPool([rpc_url], commitment="confirmed")
    try:
        data = (await pool.account_data([market]))[0]
    finally:
        await pool.close()
    assert data is not None
    return int(trading.decode_account("Market", data)["active_orders"])


async def test_concurrent_orders_both_land(tmp_path: Path) -> None:
    async with Localnet(port=pick_free_port(), slot_ms=25, state_dir=tmp_path / "chain") as net:
        signers = bootstrap_signers(net.bootstrap)
        alice, bob = list(signers.users)[:2]
        store = await Store.open(tmp_path / "node.sqlite")
        pipeline = Pipeline(store, chain_config([net.rpc_url], [net.ws_url]),
                            outbox_config(), signers)
        before = await active_orders(net.rpc_url)
        async with running(pipeline):
            await register_users(store, [alice, bob])
            await wait_for(lambda: all_finalized(store), 60, "users registered")
            # Both orders are picked up in one round, built from the same market reading.
            async with store.write() as tx:
                await operations.add(tx, new_operation(OrderCreationPayload(
                    owner=alice, side="sell", energy_amount=500, price_per_kwh=90),
                    "order:alice:1"))
                await operations.add(tx, new_operation(OrderCreationPayload(
                    owner=bob, side="buy", energy_amount=400, price_per_kwh=110),
                    "order:bob:1"))
            await wait_for(lambda: all_finalized(store), 60, "both orders finalized")
            events = await store.fetchall(
                "SELECT name, data FROM chain_events WHERE name IN "
                "('SellOrderCreated', 'BuyOrderCreated') ORDER BY id")
            assert sorted(e["name"] for e in events) == ["BuyOrderCreated", "SellOrderCreated"]
            assert await active_orders(net.rpc_url) == before + 2
            # The race really happened: the order built second was rebuilt from a fresh market
            # reading (on chain it fails ConstraintSeeds, or runs out of the compute budget that
            # was measured for the old index; in simulation, if the first had landed, 2006).
            rebuilt = await store.fetchone(
                "SELECT count(*) AS n FROM audit_log a JOIN operations o ON o.id = a.entity_id "
                "WHERE o.tx_type = 'order_creation' AND (a.new_status = 'expired' "
                "OR a.reason LIKE '%ConstraintSeeds%')")
            in_simulation = await store.fetchone(
                "SELECT count(*) AS n FROM operations WHERE last_error LIKE '%ConstraintSeeds%'")
            assert rebuilt["n"] + in_simulation["n"] > 0
            # Cancel alice's order through the same pipeline.
            order = [e for e in events if e["name"] == "SellOrderCreated"][0]
            order_id = json.loads(order["data"])["order_id"]
            async with store.write() as tx:
                await operations.add(tx, new_operation(
                    OrderCancelPayload(owner=alice, order=order_id)))
            await wait_for(lambda: all_finalized(store), 60, "cancel finalized")
            cancelled = await store.fetchone(
                "SELECT count(*) AS n FROM chain_events WHERE name = 'OrderCancelled'")
            assert cancelled["n"] == 1
        await store.close()


def order_pda(owner: str, index: int) -> str:
    trading = load_idls(REPO / "idl")["trading"]
    return str(Pubkey.find_program_address(
        [b"order", bytes(Pubkey.from_string(owner)), index.to_bytes(8, "little")],
        trading.program_id)[0])


def index_of(owner: str, address: str, upto: int = 200) -> int:
    """The order PDA index at which `owner`'s order `address` was created."""
    for i in range(upto):
        if order_pda(owner, i) == address:
            return i
    raise AssertionError(f"{address} is no order PDA of {owner} below index {upto}")


async def order_events(store: Store, op_id: int) -> list[tuple[str, dict[str, Any]]]:
    rows = await store.fetchall(
        "SELECT name, data FROM chain_events WHERE operation_id = ? AND name IN "
        "('SellOrderCreated', 'BuyOrderCreated') ORDER BY id", (op_id,))
    return [(r["name"], json.loads(r["data"])) for r in rows]


async def create(store: Store, owner: str, side: str, key: str, amount: int = 100,
                 price: int = 100) -> int:
    async with store.write() as tx:
        op_id, created = await operations.add(tx, new_operation(OrderCreationPayload(
            owner=owner, side=side, energy_amount=amount, price_per_kwh=price), key))
    assert created
    return op_id


async def cancel(store: Store, owner: str, order: str) -> None:
    async with store.write() as tx:
        await operations.add(tx, new_operation(OrderCancelPayload(owner=owner, order=order)))


def placeholders_of(events: list[tuple[str, dict[str, Any]]],
                    gateway: str) -> list[tuple[str, str]]:
    """(seller, address) of the placeholder orders among an order_creation's events: sells of
    u64::MAX at u64::MAX, each by a key of its own, never the gateway's."""
    out = []
    for name, f in events:
        if name == "SellOrderCreated" and int(f["price_per_kwh"]) == PLACEHOLDER_PRICE:
            assert int(f["amount"]) == PLACEHOLDER_WH and str(f["seller"]) != gateway
            out.append((str(f["seller"]), str(f["order_id"])))
    assert len({seller for seller, _ in out}) == len(out)
    return out


async def test_an_owners_next_order_after_a_cancel_lands(tmp_path: Path) -> None:
    """alice's order is cancelled (the count goes back), so her next order would be built for
    the index of the first one, whose account exists: one placeholder moves it, and it lands."""
    async with Localnet(port=pick_free_port(), slot_ms=25, state_dir=tmp_path / "chain") as net:
        signers = bootstrap_signers(net.bootstrap)
        alice = list(signers.users)[0]
        gateway = str(signers.fee_payer.pubkey())
        store = await Store.open(tmp_path / "node.sqlite")
        pipeline = Pipeline(store, chain_config([net.rpc_url], [net.ws_url]),
                            outbox_config(), signers)
        async with running(pipeline):
            await register_users(store, [alice])
            await wait_for(lambda: all_finalized(store), 60, "user registered")
            n = await active_orders(net.rpc_url)
            first_op = await create(store, alice, "sell", "order:alice:1")
            await wait_for(lambda: all_finalized(store), 60, "first order finalized")
            first_events = await order_events(store, first_op)
            first = accounts.created_order(first_events, alice)
            assert first == order_pda(alice, n) and placeholders_of(first_events, gateway) == []
            await cancel(store, alice, first)
            await wait_for(lambda: all_finalized(store), 60, "cancel finalized")
            assert await active_orders(net.rpc_url) == n   # the index of `first` comes back

            second_op = await create(store, alice, "buy", "order:alice:2")
            await wait_for(lambda: all_finalized(store), 60, "second order finalized")
            events = await order_events(store, second_op)
            second = accounts.created_order(events, alice)
            # The placeholder comes first in the transaction: the owner's order is not the
            # first event, it is the one whose buyer is alice.
            assert [name for name, _ in events] == ["SellOrderCreated", "BuyOrderCreated"]
            one_off = str(placeholder_key(signers.fee_payer, second_op, n).pubkey())
            assert placeholders_of(events, gateway) == [(one_off, order_pda(one_off, n))]
            assert second == order_pda(alice, n + 1) != first
            assert await active_orders(net.rpc_url) == n + 2   # the placeholder stays
            assert pipeline.builder.placeholders >= 1

            book = await accounts.open_orders(pipeline.pool, pipeline.idls)
            assert [o.address for o in book] == [second]
            everything = await accounts.open_orders(pipeline.pool, pipeline.idls,
                                                    placeholders=True)
            assert sorted(o.address for o in everything) == sorted([second,
                                                                     order_pda(one_off, n)])
            info = await pipeline.pool.raw("getAccountInfo", [order_pda(one_off, n), {
                "encoding": "base64", "commitment": "confirmed"}])
            assert int(info["value"]["lamports"]) == ORDER_RENT_LAMPORTS
            print(f"\nalice's order after a cancel: index {n + 1} behind 1 placeholder "
                  f"({ORDER_RENT_LAMPORTS} lamports locked)")
        await store.close()


async def test_six_rounds_of_create_and_cancel_for_two_users_all_land(tmp_path: Path) -> None:
    """Every round both users order at once (the index race on top), then both orders are
    cancelled: the count is back at its baseline each round. Every order lands, each
    transaction carries the least number of placeholders its owner's taken indices required,
    and each order's address is the owner's event of its transaction."""
    rounds = 6
    async with Localnet(port=pick_free_port(), slot_ms=25, state_dir=tmp_path / "chain") as net:
        signers = bootstrap_signers(net.bootstrap)
        alice, bob = list(signers.users)[:2]
        gateway = str(signers.fee_payer.pubkey())
        store = await Store.open(tmp_path / "node.sqlite")
        pipeline = Pipeline(store, chain_config([net.rpc_url], [net.ws_url]),
                            outbox_config(), signers)
        taken: dict[str, set[int]] = {alice: set(), bob: set()}
        one_offs: set[str] = set()      # the placeholder keys so far: each used once
        per_round: list[int] = []
        async with running(pipeline):
            await register_users(store, [alice, bob])
            await wait_for(lambda: all_finalized(store), 60, "users registered")
            for r in range(rounds):
                base = await active_orders(net.rpc_url)
                ops = {alice: await create(store, alice, "sell", f"order:alice:{r}", price=90),
                       bob: await create(store, bob, "buy", f"order:bob:{r}", price=80)}
                await wait_for(lambda: all_finalized(store), 90, f"round {r} orders finalized")
                count = 0
                landed: dict[str, int] = {}
                for owner, op_id in ops.items():
                    events = await order_events(store, op_id)
                    address = accounts.created_order(events, owner)
                    assert address is not None, f"round {r}: no order event of {owner}"
                    index = index_of(owner, address)
                    placed = placeholders_of(events, gateway)
                    holders = [index_of(seller, a) for seller, a in placed]
                    # Placeholders sit right below the owner's index, one per index ...
                    assert holders == list(range(index - len(holders), index))
                    # ... and only where the owner's own PDA existed before this round: none
                    # could have been left out. The owner's index is one it never used.
                    assert all(i in taken[owner] for i in holders), (r, owner, holders)
                    assert index not in taken[owner]
                    assert not {seller for seller, _ in placed} & one_offs
                    landed[owner] = index
                    one_offs.update(seller for seller, _ in placed)
                    count += len(holders)
                for owner, index in landed.items():
                    taken[owner].add(index)
                    await cancel(store, owner, order_pda(owner, index))
                await wait_for(lambda: all_finalized(store), 60, f"round {r} cancels finalized")
                # Cancels take the count back to where the round started, plus the placeholders.
                assert await active_orders(net.rpc_url) == base + count
                per_round.append(count)
            total = sum(per_round)
            assert await active_orders(net.rpc_url) == len(one_offs) == total
            # The first round reuses nothing; a later one needs at most one per order (which
            # user lands first varies, so a round may need none: each one's minimum is above).
            assert per_round[0] == 0 and all(c <= 2 for c in per_round), per_round
            book = await accounts.open_orders(pipeline.pool, pipeline.idls)
            assert book == []
            held = await accounts.open_orders(pipeline.pool, pipeline.idls, placeholders=True)
            assert len(held) == total and {o.owner for o in held} == one_offs
            print(f"\n{rounds} rounds x 2 orders: placeholders per round {per_round}, total "
                  f"{total} ({total * ORDER_RENT_LAMPORTS} lamports of rent locked)")
        await store.close()
