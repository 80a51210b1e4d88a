"""One epoch on the localnet: two sellers and two buyers trade their finalized intervals by
policy; the node (market authority) clears, matches, settles; GRID balances and settlement rows
equal the hand-computed values, and each trade is settled exactly once, also after a restart."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from gridnode.chain import accounts
from gridnode.market.matching import midpoint
from gridnode.store import market, settlements
from tests.e2e.harness import wait_for
from tests.market.harness import WH, add_reading, market_node, running, wait_epoch_start

POLICIES = [
    {"policy": "sell_surplus", "min_price_per_kwh": 100_000},
    {"policy": "sell_surplus", "min_price_per_kwh": 120_000},
    {"policy": "buy_deficit", "max_price_per_kwh": 150_000},
    {"policy": "buy_deficit", "max_price_per_kwh": 130_000},
]
# (produced, consumed) Wh of each user's meter in the interval
READINGS = [(1000, 200), (700, 100), (0, 500), (50, 1050)]


async def test_one_epoch_two_sellers_two_buyers(tmp_path: Path) -> None:
    async with market_node(tmp_path, POLICIES, epoch_s=15) as node:
        sub = node.market(certifies=True)       # the node holds the governance authority
        async with running(sub):
            await wait_epoch_start(node.epoch_s)
            end = int(time.time())
            for i, (p, c) in enumerate(READINGS):
                await add_reading(node.store, f"m{i}", end, p, c)

            async def orders_placed() -> bool:
                return len(await market.orders(node.store)) == 4
            await wait_for(orders_placed, 30, "four policy orders")
            views = {v.order.user_name: v.order for v in await market.orders(node.store)}
            assert {(n, o.side, o.energy_wh, o.price_per_kwh, o.source)
                    for n, o in views.items()} == {
                ("u0", "sell", 800, 100_000, "policy"), ("u1", "sell", 600, 120_000, "policy"),
                ("u2", "buy", 500, 150_000, "policy"), ("u3", "buy", 1000, 130_000, "policy")}

            async def all_settled() -> bool:
                rows = await settlements.all_rows(node.store)
                return len(rows) == 3 and all(s.status == "settled" for s in rows)
            await wait_for(all_settled, 90, "three trades settled")

            async def remainder_cancelled() -> bool:
                return not await node.open_orders()
            await wait_for(remainder_cancelled, 30, "the unmatched remainder cancelled")

            async def reported() -> bool:
                return bool(sub.epoch_lines)
            await wait_for(reported, 10, "the epoch's line")
            line = sub.epoch_lines[-1]
            assert "2 sell / 2 buy orders, 3 matches, 1.400 kWh at 0.000 avg, 3 settled" in line

        # Each sell order names the certificate issued and validated for its interval's surplus.
        issued = {json.loads(r["data"])["certificate_id"]: json.loads(r["data"])["energy_amount"]
                  for r in await node.store.fetchall(
                      "SELECT data FROM chain_events WHERE name = 'ErcIssued'")}
        assert issued == {f"{end}-m0": 800, f"{end}-m1": 600}
        validated = await node.store.fetchall(
            "SELECT data FROM chain_events WHERE name = 'ErcValidatedForTrading'")
        assert len(validated) == 2
        sells = await node.store.fetchall(
            "SELECT payload FROM operations WHERE tx_type = 'order_creation' "
            "AND json_extract(payload, '$.side') = 'sell'")
        assert all(json.loads(r["payload"])["erc_certificate"] for r in sells) and len(sells) == 2
        # Hand-computed: bids 150 (500 Wh), 130 (1000 Wh); asks 100 (800 Wh), 120 (600 Wh).
        fee_bps = await node.fee_bps()
        u = [str(k.pubkey()) for k in node.keys]
        expected = [  # seller, buyer, Wh, price
            (u[0], u[2], 500, midpoint(150_000, 100_000)),
            (u[0], u[3], 300, midpoint(130_000, 100_000)),
            (u[1], u[3], 600, midpoint(130_000, 120_000)),
        ]
        rows = await settlements.all_rows(node.store)
        got = sorted((s.seller, s.buyer, s.energy_wh, s.price_per_kwh) for s in rows)
        assert got == sorted(expected)
        for s in rows:
            assert s.total_value == s.energy_wh * s.price_per_kwh
            assert s.fee == s.total_value * fee_bps // 10_000
            assert s.net_to_seller == s.total_value - s.fee
            assert s.token_amount == s.energy_wh * WH
            assert s.signature and s.settled_at_ms and s.epoch
        # minted: u0 800 Wh, u1 600 Wh; delivered: u0 -> 800, u1 -> 600; received u2 500, u3 900
        assert await node.balances() == [0, 0, 500 * WH, 900 * WH]
        print(f"\nsettled {len(rows)} trades: " + ", ".join(
            f"{s.energy_wh} Wh at {s.price_per_kwh}" for s in rows)
              + f"; balances {await node.balances()}")

        # Restart the subsystem: nothing is matched, minted or settled again.
        before = await node.store.fetchall("SELECT tx_type, count(*) AS n FROM operations "
                                           "GROUP BY tx_type ORDER BY tx_type")
        again = node.market(certifies=True)
        async with running(again):
            await asyncio.sleep(node.epoch_s + 3)      # through an epoch end, too
            await wait_for(lambda: _rounds(again), 10, "rounds of the restarted market")
        after = await node.store.fetchall("SELECT tx_type, count(*) AS n FROM operations "
                                          "GROUP BY tx_type ORDER BY tx_type")
        counts = {r["tx_type"]: r["n"] for r in after}
        assert {k: v for k, v in counts.items() if k != "market_clearing"} == \
            {r["tx_type"]: r["n"] for r in before if r["tx_type"] != "market_clearing"}
        assert counts["settle_trade"] == 3 and counts["match_orders"] == 3
        assert len(await settlements.all_rows(node.store)) == 3
        settled = await node.store.fetchone(
            "SELECT count(*) AS n FROM chain_events WHERE name = 'TradeSettled'")
        assert settled["n"] == 3
        markers = await accounts.settlements(node.pipeline.pool, node.pipeline.idls,
                                             [s.trade_record for s in rows])
        assert all(m is not None and m.amount == s.energy_wh for s, m in
                   ((s, markers[s.trade_record]) for s in rows))
        assert await node.balances() == [0, 0, 500 * WH, 900 * WH]
        completed = await node.store.fetchall(
            "SELECT data FROM events WHERE type = 'settlement.completed'")
        assert sorted(json.loads(e["data"])["trade_record"] for e in completed) == \
            sorted(s.trade_record for s in rows)


async def _rounds(sub: object) -> bool:
    return getattr(sub, "rounds", 0) >= 3
