"""Writing less, durably: one transaction per bus poll cycle, raw rows at a cadence plus both
sides of every interval boundary, builder states and health at a cadence, and an acknowledged
reading's effect committed before its ack whatever is kept as a raw row."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from gridnode.meters.bus import BusMeter, BusPoller, BusTiming
from gridnode.meters.modbus_link import LinkSettings, ModbusLink
from gridnode.meters.profiles import load_profiles
from gridnode.meters.reading import Reading
from gridnode.meters.recorder import Recorder
from gridnode.store import Store, WriteTx
from gridnode.testing import AcceleratedClock, ManualClock, drain
from simulators.meters.modbus_server import ModbusTcpMeterServer
from simulators.meters.model import SimMeter
from tests.meters.conftest import entry, intervals, running

L = 900
B0 = 1_780_000_200 // L * L


def count_transactions(store: Store) -> list[int]:
    """Count the write transactions `store` runs (the real ones, each a durable commit)."""
    n = [0]
    write: Callable[[], AbstractAsyncContextManager[WriteTx]] = store.write

    @asynccontextmanager
    async def counted() -> AsyncIterator[WriteTx]:
        n[0] += 1
        async with write() as tx:
            yield tx

    store.write = counted  # type: ignore[method-assign]
    return n


async def test_a_bus_cycle_of_many_meters_is_one_transaction(store: Store, free_port: int) -> None:
    clock = AcceleratedClock(B0 + 60, factor=100)
    sims = [SimMeter(f"m{i}", unit=i, clock=clock) for i in range(1, 21)]
    entries = [entry(s.meter_id) for s in sims]
    rec = Recorder(store, entries, interval_s=L, clock=clock, health_flush_s=3600,
                   raw_every_s=0)
    profile = load_profiles()["sdm630"]
    bms = [BusMeter(e.meter_id, s.unit, profile, e.health) for e, s in zip(entries, sims,
                                                                           strict=True)]
    async with ModbusTcpMeterServer([(s, profile) for s in sims], port=free_port):
        link = ModbusLink(LinkSettings("tcp", host="127.0.0.1", tcp_port=free_port,
                                       timeout_s=1.0))
        bus = BusPoller("b", link, bms, rec, BusTiming(poll_interval_s=10), clock)
        await rec.start()
        commits = count_transactions(store)
        async with running(rec, bus.run()):
            await asyncio.sleep(60 / clock.factor)       # six cycles of the bus
            await drain(rec)
            cycles, done = bus.cycles, commits[0]
    assert rec.stored_readings >= 20 * cycles
    # every reading kept (raw_every_s = 0), yet one commit per cycle, not one per reading
    assert done <= cycles + 1, (done, cycles)
    rows = await store.fetchone("SELECT count(*) AS n FROM readings")
    assert rows is not None and rows["n"] == rec.stored_readings


def _reading(t: float, imp: float, meter: str = "m1") -> Reading:
    return Reading(meter, int(t * 1000), int(t * 1000), imp, 0.0)


async def _feed(rec: Recorder, clock: ManualClock, t0: float, t1: float) -> None:
    t = t0
    while t <= t1:
        clock.advance(t - clock.time())
        assert rec.submit(_reading(t, 10_000 + (t - t0) * 0.5))   # 1.8 kW
        await drain(rec)
        t += 10


async def test_raw_rows_at_a_cadence_and_on_both_sides_of_each_boundary(tmp_path: Any) -> None:
    results = {}
    for every in (0.0, 60.0):
        clock = ManualClock(B0 - 305)
        store = await Store.open(tmp_path / f"every{int(every)}.db")
        rec = Recorder(store, [entry("m1")], interval_s=L, clock=clock, health_flush_s=3600,
                       raw_every_s=every)
        async with running(rec):
            await _feed(rec, clock, B0 - 305, B0 + 2 * L + 25)
        raw = [r["read_at_ms"] // 1000 for r in await store.fetchall(
            "SELECT read_at_ms FROM readings ORDER BY read_at_ms")]
        results[every] = ([tuple(iv)[1:] for iv in await intervals(store, "m1")], raw)
        await store.close()
    (ivs_all, raw_all), (ivs_thin, raw_thin) = results[0.0], results[60.0]
    assert ivs_thin == ivs_all and len(ivs_thin) == 2      # the same intervals, to the Wh
    assert len(raw_all) == len(range(B0 - 305, B0 + 2 * L + 26, 10))
    assert len(raw_thin) < len(raw_all) / 4
    for b in (B0, B0 + L, B0 + 2 * L):                   # the readings around each boundary
        assert b - 5 in raw_thin and b + 5 in raw_thin, b
    gaps = [b - a for a, b in zip(raw_thin, raw_thin[1:], strict=False)]
    assert max(gaps) <= 60


async def test_an_acknowledged_reading_is_committed_before_its_ack_even_unkept(store: Store) -> None:
    clock = ManualClock(B0 + 100)
    rec = Recorder(store, [entry("m1", source="mqtt")], interval_s=L, clock=clock,
                   health_flush_s=3600, raw_every_s=600)
    acks: list[bool] = []
    async with running(rec):
        # per-message energies (a delta meter): each one's effect lives only in the state
        for i in range(6):
            clock.advance(10)
            assert rec.submit(_reading(B0 + 110 + 10 * i, 5.0), delta=True, ack=acks.append)
            await drain(rec)
            assert acks == [True] * (i + 1)
            row = await store.fetchone("SELECT last_import_raw FROM meter_state "
                                       "WHERE meter_id = 'm1'")
            # what is durable now, before any shutdown flush, already holds every acked delta
            assert row is not None and math.isclose(row[0], 5.0 * (i + 1))
        # without an ack the state waits for the cadence (or the shutdown)
        clock.advance(10)
        assert rec.submit(_reading(B0 + 170, 5.0), delta=True)
        await drain(rec)
        row = await store.fetchone("SELECT last_import_raw FROM meter_state")
        assert row is not None and math.isclose(row[0], 30.0)
    rows = await store.fetchall("SELECT import_wh FROM readings")
    assert len(rows) == 1                                 # only the first reading is raw
    row = await store.fetchone("SELECT last_import_raw FROM meter_state")
    assert row is not None and math.isclose(row[0], 35.0)   # written at shutdown


async def test_states_and_health_wait_for_the_cadence_and_the_shutdown(store: Store) -> None:
    clock = ManualClock(B0 + 100)
    rec = Recorder(store, [entry("m1"), entry("m2")], interval_s=L, clock=clock,
                   health_flush_s=3600, raw_every_s=600)
    async with running(rec):
        for m in ("m1", "m2"):
            assert rec.submit(_reading(B0 + 100, 1000.0, m))
        await drain(rec)
        commits = count_transactions(store)
        for i in range(1, 30):
            clock.advance(10)
            for m in ("m1", "m2"):
                assert rec.submit(_reading(B0 + 100 + 10 * i, 1000.0 + i, m))
            await drain(rec)
        assert commits[0] == 0          # nothing to keep, no ack: no transaction at all
        accepted = await store.fetchall("SELECT accepted FROM meter_health")
        assert [r[0] for r in accepted] == [1, 1]
    states = await store.fetchall("SELECT last_import_raw FROM meter_state ORDER BY meter_id")
    assert [r[0] for r in states] == [1029.0, 1029.0]
    accepted = await store.fetchall("SELECT accepted FROM meter_health")
    assert [r[0] for r in accepted] == [30, 30]


async def test_one_info_line_per_batch_of_closed_intervals(
        store: Store, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG, logger="gridnode.meters")
    clock = ManualClock(B0 - 20)
    meters = [f"m{i}" for i in range(1, 6)]
    rec = Recorder(store, [entry(m) for m in meters], interval_s=L, clock=clock,
                   health_flush_s=3600, raw_every_s=60)
    async with running(rec):
        for t in (B0 - 20, B0 - 10, B0 + 10, B0 + L - 10, B0 + L + 10):
            clock.advance(t - clock.time())
            rec.submit_cycle([_reading(t, 1000 + (t - B0 + 20) * 0.5, m) for m in meters])
            await drain(rec)
    info = [r for r in caplog.records if r.getMessage() == "intervals closed"]
    each = [r for r in caplog.records if r.getMessage() == "interval closed"]
    assert len(info) == 1 and info[0].levelno == logging.INFO
    assert getattr(info[0], "gridnode_fields", {})["intervals"] == 5
    assert len(each) == 5 and {r.levelno for r in each} == {logging.DEBUG}
