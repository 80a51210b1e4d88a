"""The market subsystem's loop: a chain outage is one state in the log, not a line per round."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from tests.market.harness import market_node, running


async def test_an_rpc_outage_is_logged_as_a_state(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gridnode.market.service")
    async with market_node(tmp_path, [{"policy": "manual"}] * 4) as node:
        async with running(node.market()) as market:
            await asyncio.sleep(1.0)
            node.net.faults.update({"http_error_rate": 1.0})   # every request answered 503
            for _ in range(100):                    # each round waits out the RPC's retries
                await asyncio.sleep(0.2)
                if market.failing.occurrences >= 3:
                    break
            assert market.failing.occurrences >= 3
            node.net.faults.update({"http_error_rate": 0.0})
            for _ in range(50):
                await asyncio.sleep(0.2)
                if not market.failing.active:
                    break
    lines = [(r.getMessage(), getattr(r, "gridnode_fields", {}).get("state"))
             for r in caplog.records if r.name == "gridnode.market.service"
             and r.getMessage().startswith("market round")]
    assert lines == [("market round failed; retried", "began"),
                     ("market rounds succeed again", "ended")]
