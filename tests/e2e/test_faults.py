"""Fault tests: under each fault, every reading lands exactly once.

Each test feeds readings of a few meters interval by interval while the localnet misbehaves,
then asserts that the oracle's on-chain counter equals the number of readings (no loss, no
duplicate) and that the finalized MeterReadingSubmitted events carry the submitted values.
Meters are not registered here (require_registered_meters = false): the oracle does not consult
the registry, and registration has its own end-to-end test.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from gridnode.outbox.pipeline import Pipeline
from gridnode.store import Store
from simulators.chain.localnet import Localnet
from tests.e2e.harness import (
    add_readings,
    all_finalized,
    assert_events_match,
    bootstrap_signers,
    chain_config,
    oracle_total_readings,
    outbox_config,
    reading_events,
    recent_intervals,
    running,
    status_counts,
    wait_for,
)
from tests.net import pick_free_port

METERS = ["meter-a", "meter-b", "meter-c"]
INTERVALS = 5
SLOT_MS = 25


@contextlib.asynccontextmanager
async def node(tmp_path: Path, net: Localnet, rpc_urls: list[str] | None = None,
               **chain: Any) -> AsyncIterator[tuple[Store, Pipeline]]:
    store = await Store.open(tmp_path / "node.sqlite")
    cfg = chain_config(rpc_urls or [net.rpc_url], [net.ws_url], require_registered_meters=False,
                       **chain)
    pipeline = Pipeline(store, cfg, outbox_config(), bootstrap_signers(net.bootstrap))
    try:
        async with running(pipeline):
            yield store, pipeline
    finally:
        await store.close()


async def feed_and_settle(store: Store, net: Localnet, *, during: Callable[[int], Any] | None = None,
                          settle_s: float = 90) -> list[int]:
    """Add one interval of readings every 0.4 s (calling `during(i)` before each), then wait."""
    intervals = recent_intervals(INTERVALS)
    for i, end in enumerate(intervals):
        if during is not None:
            await during(i)
        await add_readings(store, METERS, [end], first_index=i)
        await asyncio.sleep(0.4)
    net.faults.update({"drop_tx_rate": 0, "send_error_rate": 0, "send_timeout_rate": 0,
                       "http_error_rate": 0, "unhealthy_rate": 0, "stall": False})
    await wait_for(lambda: all_finalized(store), settle_s, "every operation finalized",
                   step_s=0.25)
    return intervals


async def assert_exactly_once(store: Store, net: Localnet, intervals: list[int]) -> None:
    assert await oracle_total_readings(net.rpc_url) == len(METERS) * len(intervals)
    assert_events_match(await reading_events(store), METERS, intervals)
    assert await status_counts(store) == {"finalized": len(METERS) * len(intervals)}


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Localnet]:
    async with Localnet(port=pick_free_port(), lag_port=pick_free_port(), slot_ms=SLOT_MS,
                        state_dir=tmp_path / "chain", faults={"seed": 7}) as chain:
        yield chain


async def test_dropped_transactions(tmp_path: Path, net: Localnet) -> None:
    net.faults.update({"drop_tx_rate": 0.8})
    async with node(tmp_path, net) as (store, _):
        intervals = await feed_and_settle(store, net)
        await assert_exactly_once(store, net, intervals)
        assert net.ledger is not None and net.ledger.dropped   # the drops really happened


async def test_landed_but_response_lost(tmp_path: Path, net: Localnet) -> None:
    net.faults.update({"send_error_rate": 0.4, "send_timeout_rate": 0.3, "timeout_s": 3.0})
    async with node(tmp_path, net, request_timeout_s=1.0) as (store, _):
        intervals = await feed_and_settle(store, net)
        await assert_exactly_once(store, net, intervals)
        unknown = await store.fetchone(
            "SELECT count(*) AS n FROM audit_log WHERE new_status = 'unknown'")
        assert unknown["n"] > 0


async def test_rpc_5xx_bursts(tmp_path: Path, net: Localnet) -> None:
    async def burst(i: int) -> None:
        net.faults.update({"http_error_rate": 0.6 if i % 2 == 0 else 0.0})

    async with node(tmp_path, net) as (store, _):
        intervals = await feed_and_settle(store, net, during=burst)
        await assert_exactly_once(store, net, intervals)


async def test_primary_rpc_down_with_failover(tmp_path: Path, net: Localnet) -> None:
    dead = f"http://127.0.0.1:{pick_free_port()}"   # nothing listens there
    async with node(tmp_path, net, rpc_urls=[dead, net.rpc_url]) as (store, pipeline):
        intervals = await feed_and_settle(store, net)
        await assert_exactly_once(store, net, intervals)
        primary, backup = pipeline.pool.endpoints
        assert not primary.stats.healthy and primary.stats.errors > 0
        assert backup.stats.healthy and backup.stats.requests > primary.stats.requests


async def test_failover_when_only_the_primary_breaks(tmp_path: Path, net: Localnet,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """The primary answers 503 to everything for a while; the other port of the same localnet
    (no lag) keeps answering. Nothing is lost, and the switch is logged once each way."""
    caplog.set_level(logging.INFO, logger="gridnode.chain.rpc")

    async def break_primary(i: int) -> None:
        if i == 1:
            net.faults.update({"http_error_rate": 1.0}, port=net.port)
        if i == 4:
            net.faults.reset_port(net.port)

    async with node(tmp_path, net, rpc_urls=[net.rpc_url, net.lag_rpc_url]) as (store, pipeline):
        intervals = await feed_and_settle(store, net, during=break_primary)
        await assert_exactly_once(store, net, intervals)
        primary, backup = pipeline.pool.endpoints
        await wait_for(lambda: asyncio.sleep(0, primary.stats.healthy), 10, "primary healthy")
        assert primary.stats.errors > 0 and backup.stats.requests > 0
    changes = [(r.levelname, getattr(r, "gridnode_fields", {})) for r in caplog.records
               if r.getMessage() == "rpc endpoint health changed"]
    assert [(level, f["url"], f["healthy"]) for level, f in changes] == [
        ("WARNING", primary.url, False), ("INFO", primary.url, True)], changes
    assert "503 Service Unavailable" in changes[0][1]["error"]


async def test_lagging_rpc(tmp_path: Path, net: Localnet) -> None:
    # Behind, but not enough for the node to call itself unhealthy: gridnode's own slot
    # comparison has to notice, and a status read from it must never be taken for an expiry.
    net.faults.update({"lag_slots": 60})
    async with node(tmp_path, net, rpc_urls=[net.lag_rpc_url, net.rpc_url]) as (store, pipeline):
        intervals = await feed_and_settle(store, net)
        await assert_exactly_once(store, net, intervals)
        lagging = pipeline.pool.endpoints[0].stats
        assert lagging.lag_slots >= 40 and not lagging.healthy


async def test_block_production_stalled_past_blockhash_expiry(tmp_path: Path, net: Localnet) -> None:
    async def stall(i: int) -> None:
        if i == 1:
            net.faults.update({"stall": True})
        if i == 3:
            await asyncio.sleep(150 * SLOT_MS / 1000 + 1.0)   # longer than a blockhash lives
            net.faults.update({"stall": False})

    async with node(tmp_path, net) as (store, _):
        intervals = await feed_and_settle(store, net, during=stall)
        await assert_exactly_once(store, net, intervals)

