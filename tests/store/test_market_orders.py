"""The node's order rows: an order's address is its owner's event, whatever else the same
transaction created (gateway placeholder orders ride in front of a user's order)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gridnode.store import Store, market, operations
from gridnode.store.operations import ChainEvent, NewOperation

OWNER = "Fy7f6kGmHf3ZGAyxAN2oUMmTbtfKHWQpqrqB4tk9pSLU"
GATEWAY = "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin"
PROGRAM = "GZnqNTJsre6qB4pWCQRE9FiJU2GUeBtBDPp6s7zosctk"


def created(seller: str, order_id: str, op_id: int, ts: int) -> ChainEvent:
    data = {"seller": seller, "order_id": order_id, "amount": 1, "price_per_kwh": 1,
            "timestamp": ts}
    return ChainEvent(f"sig-{op_id}", op_id, PROGRAM, "SellOrderCreated", json.dumps(data), 1)


@pytest.mark.parametrize("owner_first", [True, False])
async def test_the_owners_event_gives_the_order_its_address(tmp_path: Path,
                                                            owner_first: bool) -> None:
    store = await Store.open(tmp_path / "g.db")
    try:
        async with store.write() as tx:
            order_id, _ = await market.add_order(
                tx, market.NewOrder("alice", OWNER, "sell", 500, 120_000, 900, "manual"),
                NewOperation("order_creation", {"owner": OWNER}, "order:alice:1"))
        order = await market.order_by_id(store, order_id)
        assert order is not None
        events = [created(GATEWAY, "PlaceholderOrder1111111111111111111111111111", order.operation_id, 850),
                  created(OWNER, "OwnersOrder11111111111111111111111111111111", order.operation_id, 850)]
        if owner_first:
            events.reverse()
        async with store.write() as tx:
            await operations.record_finalized(tx, f"sig-{order.operation_id}", 5000, 1, events)
            assert await market.resolve_addresses(tx, 900) == 1
        order = await market.order_by_id(store, order_id)
        assert order is not None
        assert order.order_address == "OwnersOrder11111111111111111111111111111111"
        assert order.epoch == 900
    finally:
        await store.close()
