"""Shared pieces of the deliveries tests: a store with finalized meter readings, the engine with
the upstream destination aimed at a real platform simulator, and waiting."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from gridnode.deliveries.engine import DeliveryEngine, Policy
from gridnode.deliveries.upstream import UpstreamDestination
from gridnode.store import Store
from simulators.platform import PlatformSimulator

NODE = "test-node"


def reading(meter_id: str, end: int, produced: int, consumed: int) -> dict[str, Any]:
    return {"meter_id": meter_id, "interval_start": end - 900, "interval_end": end,
            "energy_produced_wh": produced, "energy_consumed_wh": consumed, "backfilled": False}


async def finalize_readings(store: Store, meters: list[str], ends: list[int]) -> list[int]:
    """Meter-reading operations taken through the outbox's statuses to `finalized` (each status
    change writes its event, as the pipeline's do); returns their ids."""
    ids = []
    async with store.write() as tx:
        for i, end in enumerate(ends):
            for m, meter in enumerate(meters):
                op_id, _ = await tx.add_operation(
                    "meter_reading", reading(meter, end, 1000 + m * 37 + i, 200 + i),
                    f"meter_reading:{meter}:{end}")
                for status in ("signed", "submitted", "confirmed", "finalized"):
                    await tx.set_status("operation", op_id, status, reason="test")
                ids.append(op_id)
    return ids


def engine_for(store: Store, platform: PlatformSimulator, secrets: list[str], *,
               batch_size: int = 50, retry_base_s: float = 0.05, retry_max_s: float = 0.5,
               timeout_s: float = 2.0) -> tuple[DeliveryEngine, UpstreamDestination]:
    engine = DeliveryEngine(store)
    dest = UpstreamDestination(store, NODE, platform.url, secrets, timeout_s=timeout_s)
    engine.add(dest, Policy(batch_size=batch_size, retry_base_s=retry_base_s,
                            retry_max_s=retry_max_s, poll_s=0.05))
    return engine, dest


@contextlib.asynccontextmanager
async def running(engine: DeliveryEngine) -> AsyncIterator[DeliveryEngine]:
    task = asyncio.create_task(engine.run())
    try:
        yield engine
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def wait_for(check: Callable[[], Awaitable[bool] | bool], timeout_s: float,
                   what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.05)


def assert_in_order_once(platform: PlatformSimulator, meters: list[str], ends: list[int]) -> None:
    """The platform holds one interval item per (meter, end), each meter's in interval order."""
    held = platform.items(type="interval.finalized")
    keys = [h["key"] for h in held]
    assert len(keys) == len(set(keys)), "an item is held twice"
    for meter in meters:
        got = [h["item"]["data"]["interval_end"] for h in held if h["meter_id"] == meter]
        assert got == ends, (meter, got)
    assert len(held) == len(meters) * len(ends)


def db_path(tmp: Path) -> Path:
    return tmp / "node" / "gridnode.db"
