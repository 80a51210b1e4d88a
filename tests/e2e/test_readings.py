"""Readings from the outbox end as finalized MeterReadingSubmitted events, one per meter per
interval, with the right values; meters are registered on chain first through the outbox."""

from __future__ import annotations

import asyncio
from pathlib import Path

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
    register,
    running,
    wait_for,
)
from tests.net import pick_free_port


async def test_registered_meters_readings_finalize_in_batches(tmp_path: Path) -> None:
    meters = [f"house-{i}" for i in range(8)]
    async with Localnet(port=pick_free_port(), slot_ms=25, state_dir=tmp_path / "chain") as net:
        signers = bootstrap_signers(net.bootstrap)
        owner = next(iter(signers.users.values()))
        store = await Store.open(tmp_path / "node.sqlite")
        pipeline = Pipeline(store, chain_config([net.rpc_url], [net.ws_url]), outbox_config(),
                            signers)
        intervals = recent_intervals(3)
        # Readings arrive before the meters exist on chain: they wait, they are not lost.
        await add_readings(store, meters, intervals)
        await register(store, owner, meters)
        async with running(pipeline):
            await wait_for(lambda: all_finalized(store), 90, "every operation finalized")
        assert await oracle_total_readings(net.rpc_url) == len(meters) * len(intervals)
        events = await reading_events(store)
        assert_events_match(events, meters, intervals)
        # Each event is stored with the operation whose instruction emitted it.
        ops = {r["id"]: r for r in await store.fetchall("SELECT id, payload FROM operations")}
        for e in events:
            assert f'"meter_id":"{e["meter_id"]}"' in ops[e["operation_id"]]["payload"]
        # Readings of many meters for one interval travelled together.
        sizes = await store.fetchall(
            "SELECT t.attempt_id, count(*) AS n FROM tx_attempt_operations t JOIN operations o "
            "ON o.id = t.operation_id WHERE o.tx_type = 'meter_reading' GROUP BY t.attempt_id")
        assert max(r["n"] for r in sizes) >= len(meters)
        registered = await store.fetchall(
            "SELECT name FROM chain_events WHERE name IN ('UserRegistered', 'MeterRegistered')")
        assert sorted(r["name"] for r in registered) == ["MeterRegistered"] * len(meters) + [
            "UserRegistered"]
        waited = await store.fetchone(
            "SELECT count(*) AS n FROM operations WHERE tx_type = 'meter_reading' "
            "AND last_error LIKE 'meter_not_active%'")
        assert waited["n"] > 0   # the rule really held them back until registration
        await store.close()


async def test_subscriptions_drive_finality_through_websocket_drops(tmp_path: Path) -> None:
    """With status polling every 30 s, readings still finalize within seconds: signature
    notifications wake the monitor, and after every reconnect (the localnet closes sockets
    instead of notifying, at random) the catch-up poll finds what the lost notifications said."""
    meters = ["ws-a", "ws-b"]
    async with Localnet(port=pick_free_port(), slot_ms=25, state_dir=tmp_path / "chain",
                        faults={"seed": 3, "ws_close_rate": 0.5}) as net:
        store = await Store.open(tmp_path / "node.sqlite")
        pipeline = Pipeline(store, chain_config([net.rpc_url], [net.ws_url],
                                                require_registered_meters=False),
                            outbox_config(poll_interval_s=30), bootstrap_signers(net.bootstrap))
        intervals = recent_intervals(4)
        async with running(pipeline):
            await asyncio.sleep(1.0)   # the first poll has run; the next is 30 s away
            for i, end in enumerate(intervals):
                await add_readings(store, meters, [end], first_index=i)
                await asyncio.sleep(0.5)
            await wait_for(lambda: all_finalized(store), 20, "finalized by notifications")
        assert pipeline.subscriber is not None
        assert pipeline.subscriber.notifications > 0
        assert pipeline.subscriber.reconnects > 0
        assert await oracle_total_readings(net.rpc_url) == len(meters) * len(intervals)
        assert_events_match(await reading_events(store), meters, intervals)
        await store.close()
