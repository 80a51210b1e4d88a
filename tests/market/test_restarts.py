"""The market subsystem stopped at random points (cancelled mid-round, its transaction rolled
back, as a crash leaves it) and started again from the tables, over and over through two epochs:
the same balances as without, every trade matched and settled exactly once."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

from gridnode.store import settlements
from tests.e2e.harness import wait_for
from tests.market.harness import WH, add_reading, market_node, running, wait_epoch_start
from tests.market.test_epoch_flow import POLICIES, READINGS


async def test_restarted_at_random_points(tmp_path: Path) -> None:
    rng = random.Random(14)
    restarts = 0
    async with market_node(tmp_path, POLICIES, epoch_s=15) as node:
        for k in range(2):
            await wait_epoch_start(node.epoch_s)
            end = int(time.time())
            for i, (p, c) in enumerate(READINGS):
                await add_reading(node.store, f"m{i}", end, p, c)
            deadline = time.monotonic() + 120
            while True:
                async with running(node.market()):
                    await asyncio.sleep(rng.uniform(0.05, 1.5))
                restarts += 1
                rows = await settlements.all_rows(node.store)
                if len(rows) == 3 * (k + 1) and all(s.status == "settled" for s in rows):
                    break
                assert time.monotonic() < deadline, [(s.id, s.status) for s in rows]

        async def no_open_orders() -> bool:
            return not await node.open_orders()
        async with running(node.market()):
            await wait_for(no_open_orders, 30, "the remainders cancelled")
        print(f"\n{restarts} restarts")
        assert restarts >= 20
        rows = await settlements.all_rows(node.store)
        assert len({s.trade_record for s in rows}) == 6
        counts = {r["tx_type"]: r["n"] for r in await node.store.fetchall(
            "SELECT tx_type, count(*) AS n FROM operations GROUP BY tx_type")}
        assert counts["match_orders"] == 6 and counts["settle_trade"] == 6
        assert counts["grid_minting"] == 4 and counts["order_creation"] == 8
        events = await node.store.fetchone(
            "SELECT count(*) AS n FROM chain_events WHERE name = 'TradeSettled'")
        assert events["n"] == 6
        assert await node.balances() == [0, 0, 1000 * WH, 1800 * WH]
