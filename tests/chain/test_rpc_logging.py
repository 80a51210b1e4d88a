"""What the RPC pool says when endpoints fail: the cause of each failure, and each endpoint's
health change, once each way. Real endpoints: a port nobody listens on, the localnet with faults.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gridnode.chain.blockhash import BlockhashCache
from gridnode.chain.rpc import RpcPool, RpcUnavailable
from simulators.chain.localnet import Localnet
from tests.net import pick_free_port


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Localnet]:
    async with Localnet(port=pick_free_port(), lag_port=pick_free_port(), manual=True,
                        state_dir=tmp_path / "chain") as chain:
        yield chain


def fields(caplog: pytest.LogCaptureFixture, event: str) -> list[tuple[str, dict[str, Any]]]:
    return [(r.levelname, getattr(r, "gridnode_fields", {})) for r in caplog.records
            if r.getMessage() == event]


async def unavailable(pool: RpcPool) -> str:
    try:
        await pool.latest_blockhash()
    except RpcUnavailable as exc:
        return str(exc)
    finally:
        await pool.close()
    raise AssertionError("the request succeeded")


async def test_refused_connection_names_its_cause() -> None:
    dead = f"http://127.0.0.1:{pick_free_port()}"
    text = await unavailable(RpcPool([dead], rounds=1, timeout_s=2))
    # It used to read "getLatestBlockhash: no RPC endpoint answered (SolanaRpcException())".
    assert text.startswith(f"getLatestBlockhash: no RPC endpoint answered (last: {dead}: ")
    assert "ConnectError: All connection attempts failed <- ConnectionRefusedError: " \
           "[Errno 111] Connect call failed" in text
    assert "SolanaRpcException" not in text


async def test_timeout_and_http_status_name_their_cause(net: Localnet) -> None:
    net.faults.update({"latency_ms": 1000})
    text = await unavailable(RpcPool([net.rpc_url], rounds=1, timeout_s=0.2))
    assert text.endswith(f"(last: {net.rpc_url}: ReadTimeout <- TimeoutError)"), text
    net.faults.update({"latency_ms": 0, "http_error_rate": 1.0})
    text = await unavailable(RpcPool([net.rpc_url], rounds=1))
    assert "HTTPStatusError: Server error '503 Service Unavailable'" in text, text


async def test_endpoint_health_changes_are_logged_once_each_way(
        net: Localnet, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gridnode.chain.rpc")
    pool = RpcPool([net.rpc_url, net.lag_rpc_url], rounds=1, unhealthy_after=2)
    primary, backup = pool.endpoints
    try:
        net.faults.update({"http_error_rate": 1.0}, port=net.port)
        for _ in range(2):                  # each fails over; the second makes it unhealthy
            await pool.latest_blockhash()
        for _ in range(3):                  # more failures change nothing
            await pool.check_health()
            await pool.latest_blockhash()
        assert not primary.stats.healthy and backup.stats.healthy
        net.faults.reset_port(net.port)
        for _ in range(3):
            await pool.check_health()
        assert primary.stats.healthy
    finally:
        await pool.close()
    changes = fields(caplog, "rpc endpoint health changed")
    assert [(level, f["url"], f["healthy"]) for level, f in changes] == [
        ("WARNING", primary.url, False), ("INFO", primary.url, True)], changes
    down, up = changes[0][1], changes[1][1]
    assert "503 Service Unavailable" in down["error"] and down["consecutive_errors"] == 2
    assert up["unhealthy_for_s"] is not None and up["lag_slots"] == 0


async def test_a_lagging_endpoint_is_logged_with_its_lag(
        net: Localnet, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gridnode.chain.rpc")
    pool = RpcPool([net.lag_rpc_url, net.rpc_url], commitment="processed", max_slot_lag=5)
    try:
        net.faults.update({"lag_slots": 10})
        await net.advance(12)
        await pool.check_health()
        await pool.check_health()
        net.faults.update({"lag_slots": 0})
        await pool.check_health()
    finally:
        await pool.close()
    changes = fields(caplog, "rpc endpoint health changed")
    assert [(level, f["healthy"], f["lag_slots"]) for level, f in changes] == [
        ("WARNING", False, 10), ("INFO", True, 0)], changes


async def test_blockhash_refresh_failures_are_one_line_with_the_cause(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gridnode.chain.blockhash")
    pool = RpcPool([f"http://127.0.0.1:{pick_free_port()}"], rounds=1)
    cache = BlockhashCache(pool, refresh_s=0.05)
    task = asyncio.create_task(cache.run())
    await asyncio.sleep(1.0)                # about 20 failed refreshes
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await pool.close()
    lines = fields(caplog, "blockhash refresh failed")
    assert len(lines) == 1 and lines[0][0] == "WARNING", lines
    assert lines[0][1]["state"] == "began"
    assert "ConnectionRefusedError: [Errno 111] Connect call failed" in lines[0][1]["error"]
