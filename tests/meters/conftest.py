"""Fixtures for the meters tests: a real store in a temporary directory and recorder helpers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from gridnode.meters.clock import Clock
from gridnode.meters.health import MeterHealth
from gridnode.meters.recorder import MeterEntry, Recorder
from gridnode.meters.validation import Limits
from gridnode.store import Store


@pytest.fixture
async def store(tmp_path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "gridnode.db")
    yield s
    await s.close()


def entry(meter_id: str, source: str = "modbus", profile: str = "sdm630",
          rated_power_w: float = 20_000, invert: bool = False, **limits) -> MeterEntry:
    return MeterEntry(meter_id, source, profile, Limits(rated_power_w=rated_power_w, **limits),
                      MeterHealth(meter_id, source, 60.0), invert=invert)


@contextlib.asynccontextmanager
async def running(recorder: Recorder, *tasks) -> AsyncIterator[list[asyncio.Task]]:
    """Start the recorder (and `tasks` coroutines); on exit cancel them and drain the writer."""
    await recorder.start()
    started = [asyncio.create_task(recorder.run())] + [asyncio.create_task(t) for t in tasks]
    try:
        yield started
    finally:
        for t in reversed(started):
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t


async def intervals(store: Store, meter_id: str) -> list:
    return await store.fetchall(
        "SELECT * FROM intervals WHERE meter_id = ? ORDER BY interval_start", (meter_id,))


async def operations(store: Store) -> list:
    return await store.fetchall("SELECT * FROM operations ORDER BY id")


def make_recorder(store: Store, entries: list[MeterEntry], clock: Clock,
                  interval_s: int = 900) -> Recorder:
    return Recorder(store, entries, interval_s=interval_s, clock=clock, health_flush_s=0.2)
