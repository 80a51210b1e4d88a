"""The recorder against a real store: one transaction per batch, restart continuity, and
nothing stored from rejected readings."""

from __future__ import annotations

import json
import math

from gridnode.meters.clock import ManualClock
from gridnode.meters.reading import Reading
from gridnode.store import Store
from tests.meters.conftest import entry, intervals, make_recorder, operations, running

L = 900
B0 = 1_780_000_200 // L * L


def reading(t: float, imp: float, exp: float = 0.0) -> Reading:
    return Reading("m1", int(t * 1000), int(t * 1000), imp, exp)


async def feed(rec, clock, t0: float, t1: float, rate_w: float, base: float) -> float:
    t = t0
    while t < t1:
        clock.advance(t - clock.time())
        rec.submit(reading(t, base + rate_w * (t - t0) / 3600))
        t += 37
    await rec.drain()
    return base + rate_w * (t - 37 - t0) / 3600


async def test_restart_resumes_without_gaps_or_doubles(tmp_path) -> None:
    db = tmp_path / "gridnode.db"
    clock = ManualClock(B0 - 100)
    store = await Store.open(db)
    rec = make_recorder(store, [entry("m1")], clock)
    async with running(rec):
        last = await feed(rec, clock, B0 - 100, B0 + 3 * L, 1200.0, 50_000.0)
    await store.close()
    # the node is down for 20 minutes, then a new process picks up from the database
    store = await Store.open(db)
    rec = make_recorder(store, [entry("m1")], clock)
    async with running(rec):
        await feed(rec, clock, B0 + 3 * L + 1200, B0 + 7 * L, 1200.0, last + 400.0)
        # a duplicate of an old reading after the restart is rejected, not stored
        assert not rec.submit(reading(B0 + 10, 50_000.0))
        await rec.drain()
    ivs = await intervals(store, "m1")
    ops = await operations(store)
    await store.close()
    starts = [iv["interval_start"] for iv in ivs]
    assert starts == list(range(B0, B0 + 5 * L + 1, L))
    assert [iv["backfilled"] for iv in ivs] == [0, 0, 1, 1, 1, 0]   # around the 20 min gap
    assert sum(iv["import_wh"] for iv in ivs) == math.floor(
        ivs[-1]["counter_import_end"] - ivs[0]["counter_import_start"])
    assert [json.loads(o["payload"])["interval_end"] for o in ops] == [s + L for s in starts]
    assert len({o["idempotency_key"] for o in ops}) == len(ops)


async def test_rejected_readings_store_nothing(store) -> None:
    clock = ManualClock(B0)
    rec = make_recorder(store, [entry("m1", rated_power_w=1000)], clock)
    async with running(rec):
        assert rec.submit(reading(B0, 100.0))
        for bad in (reading(B0 + 10, None), reading(B0 + 20, 50.0), reading(B0 + 30, 1e6),
                    reading(B0 + 3600, 100.0), reading(B0, 100.0)):
            assert not rec.submit(bad)
        await rec.drain()
        await rec.flush_health()
    rows = await store.fetchall("SELECT import_wh FROM readings")
    assert [r["import_wh"] for r in rows] == [100.0]
    h = await store.fetchone("SELECT rejections, accepted, rejected FROM meter_health")
    assert json.loads(h["rejections"]) == {"no_data": 1, "backward": 1, "implausible": 1,
                                           "future": 1, "duplicate": 1}
    assert (h["accepted"], h["rejected"]) == (1, 5)


async def test_a_failed_write_loses_nothing_that_was_stored_and_builds_on_nothing_lost(
        store) -> None:
    clock = ManualClock(B0)
    rec = make_recorder(store, [entry("m1")], clock)
    async with running(rec):
        assert rec.submit(reading(B0, 100.0))
        await rec.drain()
        # the database refuses the next batch (a trigger stands in for a full disk)
        async with store.write() as tx:
            await tx.execute("CREATE TRIGGER refuse BEFORE INSERT ON readings "
                             "BEGIN SELECT RAISE(ABORT, 'disk full'); END")
        clock.advance(10)
        assert rec.submit(reading(B0 + 10, 101.0))
        await rec.drain()
        async with store.write() as tx:
            await tx.execute("DROP TRIGGER refuse")
        # the state went back to the last stored reading: 101 Wh was never stored, so a
        # reading of 100.5 Wh after it is not "backward"
        clock.advance(10)
        assert rec.submit(reading(B0 + 20, 100.5))
        await rec.drain()
    rows = await store.fetchall("SELECT import_wh FROM readings ORDER BY read_at_ms")
    assert [r["import_wh"] for r in rows] == [100.0, 100.5]
