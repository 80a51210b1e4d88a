"""Three epochs in a row with the same two sellers and two buyers: the order PDA index moves
under concurrent orders, cancels and completed matches (rebuilt by the outbox), and every epoch
still ends with the hand-computed balances; nine trades, each settled once."""

from __future__ import annotations

import time
from pathlib import Path

from gridnode.store import settlements
from tests.e2e.harness import wait_for
from tests.market.harness import WH, add_reading, market_node, running, wait_epoch_start
from tests.market.test_epoch_flow import POLICIES, READINGS


async def test_three_epochs(tmp_path: Path) -> None:
    async with market_node(tmp_path, POLICIES, epoch_s=15) as node:
        async with running(node.market()):
            for k in range(3):
                await wait_epoch_start(node.epoch_s)
                end = int(time.time())
                for i, (p, c) in enumerate(READINGS):
                    await add_reading(node.store, f"m{i}", end, p, c)

                async def done(n: int = 3 * (k + 1)) -> bool:
                    rows = await settlements.all_rows(node.store)
                    return len(rows) == n and all(s.status == "settled" for s in rows)
                await wait_for(done, 90, f"epoch {k + 1} settled")
                assert await node.balances() == [0, 0, 500 * WH * (k + 1), 900 * WH * (k + 1)]
        rows = await settlements.all_rows(node.store)
        assert len({s.trade_record for s in rows}) == 9
        assert len({s.epoch for s in rows}) == 3
        settled = await node.store.fetchone(
            "SELECT count(*) AS n FROM chain_events WHERE name = 'TradeSettled'")
        assert settled["n"] == 9
