"""A forced failure: the seller moves its GRID away behind the node's back after minting. The
settlement can never succeed: within its budget it ends `defaulted`, with a reversal record of
what was not delivered, the seller's open orders cancelled and `settlement.defaulted` in the
event log; an operator retries it (it defaults again) and writes it off, all audited."""

from __future__ import annotations

import json
import time
from pathlib import Path

from gridnode.market.matching import midpoint
from gridnode.store import market, settlements
from tests.e2e.harness import wait_for
from tests.market.harness import (
    WH,
    add_reading,
    market_node,
    running,
    transfer_away,
    wait_epoch_start,
)
from tests.processes import Ran, gridnode

POLICIES = [
    {"policy": "sell_surplus", "min_price_per_kwh": 100_000},
    {"policy": "manual"},
    {"policy": "buy_deficit", "max_price_per_kwh": 150_000},
    {"policy": "manual"},
]


def _combined(ran: Ran) -> tuple[int, str]:
    return ran.returncode, ran.stdout + ran.stderr


async def test_grid_moved_away_ends_defaulted_with_compensation(tmp_path: Path) -> None:
    async with market_node(tmp_path, POLICIES, epoch_s=20, settlement_attempts=2,
                           settlement_retry_s=6.0) as node:
        db = str(tmp_path / "node.sqlite")
        seller, buyer = (str(node.keys[i].pubkey()) for i in (0, 2))
        sub = node.market()
        async with running(sub):
            await wait_epoch_start(node.epoch_s)
            end = int(time.time())
            await add_reading(node.store, "m0", end, 1000, 200)
            await add_reading(node.store, "m2", end, 0, 500)

            async def minted() -> bool:
                row = await node.store.fetchone(
                    "SELECT status FROM operations WHERE tx_type = 'grid_minting'")
                return row is not None and row["status"] == "finalized"
            await wait_for(minted, 30, "u0's generation minted")
            assert (await node.balances())[0] == 800 * WH
            await transfer_away(node, 0, 800 * WH)          # behind the node's back
            assert (await node.balances())[0] == 0

            async def matched() -> bool:
                return len(await settlements.all_rows(node.store)) == 1
            await wait_for(matched, 60, "the orders matched")
            # An order of the seller in the next epoch, open when the settlement defaults. The
            # order PDA index is the market's active_orders, which the match and the remainder's
            # cancel brought back to u0's last order: another user's order moves it on first.
            async def remainder_closed() -> bool:
                views = await market.orders(node.store)
                return all(v.order.closed and v.cancel_status in (None, "finalized")
                           for v in views)
            await wait_for(remainder_closed, 20, "the remainders closed")
            for n in range(2):    # past u0's own index whichever order the first two had
                other_id, _ = await sub.place("u3", "buy", 100, 1, f"other-{n}")

                async def other_on_chain() -> bool:
                    o = await market.order_by_id(node.store, other_id)  # noqa: B023
                    return o is not None and o.order_address is not None
                await wait_for(other_on_chain, 20, "u3's order on chain")
            late_id, _ = await sub.place("u0", "sell", 100, 10_000_000, "late")

            async def late_on_chain() -> bool:
                o = await market.order_by_id(node.store, late_id)
                return o is not None and o.order_address is not None
            await wait_for(late_on_chain, 20, "the late order on chain")
            late = await market.order_by_id(node.store, late_id)
            assert late is not None and late.order_address is not None

            async def defaulted() -> bool:
                rows = await settlements.all_rows(node.store)
                return len(rows) == 1 and rows[0].status == "defaulted"
            await wait_for(defaulted, 60, "the settlement defaulted")

            async def nothing_open() -> bool:
                return not [o for o in await node.open_orders() if o.owner == seller]
            await wait_for(nothing_open, 30, "the seller's orders cancelled")

        s = (await settlements.all_rows(node.store))[0]
        price = midpoint(150_000, 100_000)
        assert (s.seller, s.buyer, s.energy_wh, s.price_per_kwh) == (seller, buyer, 500, price)
        assert s.attempts == 2 and s.settled_at_ms is None
        assert s.reversal is not None
        assert {k: s.reversal[k] for k in ("not_delivered_wh", "not_delivered_token_amount",
                                           "from_seller", "to_buyer", "value_not_to_bill",
                                           "fee_not_to_bill", "cancelled_orders")} == {
            "not_delivered_wh": 500, "not_delivered_token_amount": 500 * WH,
            "from_seller": seller, "to_buyer": buyer, "value_not_to_bill": 500 * price,
            "fee_not_to_bill": s.fee, "cancelled_orders": [late.order_address]}
        events = await node.store.fetchall(
            "SELECT data FROM events WHERE type = 'settlement.defaulted'")
        assert [json.loads(e["data"])["trade_record"] for e in events] == [s.trade_record]
        # the unmatched 300 Wh of the policy order were cancelled at the epoch's end
        policy = [v.order for v in await market.orders(node.store) if v.order.source == "policy"
                  and v.order.side == "sell"][0]
        assert policy.closed == "cancel"
        assert await node.balances() == [0, 0, 0, 0]       # nothing was delivered
        history = [(h.old_status, h.new_status) for h in await settlements.history(node.store,
                                                                                    s.id)]
        assert history[0] == (None, "queued") and history[-1][1] == "defaulted"

        # Operator: list and show name it; retry sends it back (it defaults again: the GRID is
        # still gone), write-off ends it; a second write-off is refused; nothing is deleted.
        rc, out = _combined(await gridnode("settlement", "list", "--db", db))
        assert rc == 0 and "defaulted" in out and s.trade_record in out
        rc, out = _combined(await gridnode("settlement", "show", str(s.id), "--db", db))
        assert rc == 0 and "not_delivered_wh" in out and "defaulted" in out
        rc, out = _combined(await gridnode("settlement", "retry", str(s.id), "--reason",
                                           "topped up?", "--db", db))
        assert rc == 0, out
        assert (await settlements.get(node.store, s.id)).status == "queued"  # type: ignore[union-attr]
        async with running(node.market()):
            await wait_for(defaulted, 60, "defaulted again")
        rc, out = _combined(await gridnode("settlement", "write-off", str(s.id), "--reason",
                                           "lost", "--db", db))
        assert rc == 0, out
        rc, out = _combined(await gridnode("settlement", "write-off", str(s.id), "--db", db))
        assert rc == 1 and "only a defaulted settlement" in out
        final = await settlements.get(node.store, s.id)
        assert final is not None and final.status == "written_off"
        reasons = [h.reason for h in await settlements.history(node.store, s.id)]
        assert "operator retry" in reasons and "operator write-off" in reasons
        assert len(await settlements.all_rows(node.store)) == 1
