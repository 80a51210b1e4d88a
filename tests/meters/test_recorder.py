"""The recorder against a real store: one transaction per batch, restart continuity, and
nothing stored from rejected readings."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import sqlite3
from collections.abc import Callable

import pytest

from gridnode.meters.reading import Reading
from gridnode.meters.recorder import Recorder
from gridnode.store import StorageFull, Store
from gridnode.testing import ManualClock, drain
from tests.meters.conftest import entry, intervals, make_recorder, operations, running
from tests.store.full import fill_up, make_room

L = 900
B0 = 1_780_000_200 // L * L


def reading(t: float, imp: float, exp: float | None = 0.0) -> Reading:
    return Reading("m1", int(t * 1000), int(t * 1000), imp, exp)


async def feed(rec, clock, t0: float, t1: float, rate_w: float, base: float) -> float:
    t = t0
    while t < t1:
        clock.advance(t - clock.time())
        rec.submit(reading(t, base + rate_w * (t - t0) / 3600))
        t += 37
    await drain(rec)
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
        await drain(rec)
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
        await drain(rec)
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
        await drain(rec)
        # the database refuses the next batch (a trigger stands in for a full disk)
        async with store.write() as tx:
            await tx.execute("CREATE TRIGGER refuse BEFORE INSERT ON readings "
                             "BEGIN SELECT RAISE(ABORT, 'disk full'); END")
        clock.advance(10)
        assert rec.submit(reading(B0 + 10, 101.0))
        await drain(rec)
        async with store.write() as tx:
            await tx.execute("DROP TRIGGER refuse")
        # the state went back to the last stored reading: 101 Wh was never stored, so a
        # reading of 100.5 Wh after it is not "backward"
        clock.advance(10)
        assert rec.submit(reading(B0 + 20, 100.5))
        await drain(rec)
    rows = await store.fetchall("SELECT import_wh FROM readings ORDER BY read_at_ms")
    assert [r["import_wh"] for r in rows] == [100.0, 100.5]


async def test_a_meter_without_export_stays_without_export_across_restarts(tmp_path) -> None:
    db = tmp_path / "gridnode.db"
    clock = ManualClock(B0)
    for n in range(3):              # the first run, then two restarts from the saved state
        store = await Store.open(db)
        rec = make_recorder(store, [entry("m1")], clock)
        async with running(rec):
            clock.advance(60)
            assert rec.submit(reading(clock.time(), 100.0 + n, None)), \
                rec.meters["m1"].health.rejections
            await drain(rec)
        await store.close()
    store = await Store.open(db)
    rows = await store.fetchall("SELECT export_wh FROM readings ORDER BY read_at_ms")
    state = await store.fetchone("SELECT last_export_raw FROM meter_state")
    await store.close()
    assert [r["export_wh"] for r in rows] == [None, None, None]
    assert state is not None and state["last_export_raw"] is None


async def test_a_state_saved_as_export_zero_by_an_older_version_is_repaired(store) -> None:
    clock = ManualClock(B0)
    rec = make_recorder(store, [entry("m1"), entry("m2")], clock)
    async with running(rec):
        assert rec.submit(reading(B0, 100.0, None))
        assert rec.submit(Reading("m2", B0 * 1000, B0 * 1000, 100.0, 0.0))   # export really 0
        await drain(rec)
    async with store.write() as tx:            # what the older version wrote for "no export"
        await tx.execute("UPDATE meter_state SET last_export_raw = 0.0")
    rec = make_recorder(store, [entry("m1"), entry("m2")], clock)
    async with running(rec):
        clock.advance(60)
        assert rec.submit(reading(B0 + 60, 101.0, None))
        # a meter whose export counter showed 0.0 still has one: a reading without it is no data
        assert not rec.submit(Reading("m2", (B0 + 60) * 1000, (B0 + 60) * 1000, 101.0, None))
        await drain(rec)
    assert rec.meters["m2"].health.rejections == {"no_data": 1}


async def test_acks_are_told_after_the_commit_in_order(store) -> None:
    """An ack says True only once what it stands for is committed (read back on another
    connection from inside the ack), rejections included; False when it was not stored."""
    clock = ManualClock(B0)
    rec = make_recorder(store, [entry("m1")], clock)
    told: list[tuple[str, bool, int, str | None]] = []

    def ack(name: str) -> Callable[[bool], None]:
        def tell(ok: bool) -> None:
            with sqlite3.connect(store.path) as c:
                n = c.execute("SELECT count(*) FROM readings").fetchone()[0]
                h = c.execute("SELECT rejections FROM meter_health").fetchone()
            told.append((name, ok, n, h[0] if h else None))
        return tell

    async with running(rec):
        assert rec.submit(reading(B0, 100.0), ack=ack("first"))
        assert not rec.submit(reading(B0, 100.0), ack=ack("duplicate"))
        rec.reject("m1", "malformed", "topic: not JSON", ack("malformed"))
        rec.acknowledge(ack("nothing to store"))
        clock.advance(10)
        assert rec.submit(reading(B0 + 10, 101.0), ack=ack("second"))
        assert told == []                       # nothing is committed yet
        await drain(rec)
        async with store.write() as tx:         # the next write fails (not for lack of space)
            await tx.execute("CREATE TRIGGER refuse BEFORE INSERT ON readings "
                             "BEGIN SELECT RAISE(ABORT, 'refused'); END")
        clock.advance(10)
        assert rec.submit(reading(B0 + 20, 102.0), ack=ack("not stored"))
        await drain(rec)
    both = json.dumps({"duplicate": 1, "malformed": 1}, sort_keys=True)
    assert [t[:2] for t in told] == [("first", True), ("duplicate", True), ("malformed", True),
                                     ("nothing to store", True), ("second", True),
                                     ("not stored", False)]
    assert told[0][2] >= 1 and told[4][2] == 2            # the reading was there when told
    assert told[1][3] == both and told[2][3] == both       # and so was the rejection's count


async def test_a_full_disk_is_a_state_the_writer_waits_out(store, caplog) -> None:
    caplog.set_level(logging.INFO)
    clock = ManualClock(B0 - 100)
    rec = make_recorder(store, [entry("m1")], clock)
    async with running(rec) as tasks:
        assert rec.submit(reading(B0 - 100, 50_000.0))
        await drain(rec)
        await fill_up(store)
        t, n = B0 - 100, 1
        while rec.storage_errors < 3:             # the writer keeps trying, with backoff
            assert not tasks[0].done()
            t += 37
            n += 1
            clock.advance(37)
            assert rec.submit(reading(t, 50_000.0 + 1200 * (t - B0 + 100) / 3600))
            await asyncio.sleep(0.05)
            assert n < 400, "the database never filled up"
        assert rec.storage_full.active and not rec.accepting()
        await make_room(store)
        await asyncio.wait_for(drain(rec), 30)
        assert not rec.storage_full.active
    rows = await store.fetchall("SELECT import_wh FROM readings ORDER BY read_at_ms")
    ivs = await intervals(store, "m1")
    assert len(rows) == n
    assert len(ivs) >= 2 and sum(iv["import_wh"] for iv in ivs) == math.floor(
        ivs[-1]["counter_import_end"] - ivs[0]["counter_import_start"])
    assert len(await operations(store)) == len(ivs)
    lines = [r.getMessage() for r in caplog.records if r.name == "gridnode.meters"]
    assert sum("storage full" in m for m in lines) == 1, lines
    assert sum("storage writable again" in m for m in lines) == 1, lines


async def test_readings_past_the_queue_bound_are_refused_before_they_change_anything(
        store) -> None:
    clock = ManualClock(B0)
    rec = Recorder(store, [entry("m1")], clock=clock, queue_max=3)
    told: list[bool] = []
    async with running(rec):
        assert rec.submit(reading(B0, 100.0))
        await drain(rec)
        await fill_up(store)
        accepted: list[bool] = []
        t = last_ok = B0
        while len(accepted) < 400 and (not rec.storage_full.active or len(accepted) % 20):
            t += 10
            clock.advance(10)
            accepted.append(rec.submit(reading(t, 100.0 + (t - B0) * 2), ack=told.append))
            if accepted[-1]:
                last_ok = t
            await asyncio.sleep(0.01)
        assert rec.refused > 0 and told.count(False) == rec.refused and not accepted[-1]
        # a refused reading changed nothing: the meter stands at the last accepted one
        last = rec.meters["m1"].validator.last
        assert last is not None and last.read_at_ms == last_ok * 1000
        assert rec.meters["m1"].state.last_read_at_ms == last_ok * 1000
        await make_room(store)
        await asyncio.wait_for(drain(rec), 30)
        t += 10
        clock.advance(10)
        assert rec.submit(reading(t, 100.0 + (t - B0) * 2))
        await drain(rec)
    rows = await store.fetchall("SELECT import_wh FROM readings ORDER BY read_at_ms")
    assert len(rows) == 2 + accepted.count(True) and accepted.count(False) == rec.refused
    assert told.count(True) == accepted.count(True)


async def test_starting_on_a_full_disk_waits_for_space_instead_of_failing(store) -> None:
    await fill_up(store)
    with pytest.raises(StorageFull):          # not one more meter fits
        for n in itertools.count():
            async with store.write() as tx:
                await tx.execute("INSERT INTO meters (meter_id, source, profile, created_at_ms, "
                                 "updated_at_ms) VALUES (?, 'modbus', 'x', 0, 0)", (f"f{n:08}",))
    clock = ManualClock(B0)
    rec = make_recorder(store, [entry("new-meter")], clock)
    async with running(rec) as tasks:         # registering the meter needs space too
        assert rec.storage_full.active
        assert rec.submit(Reading("new-meter", B0 * 1000, B0 * 1000, 100.0))
        await asyncio.sleep(1.0)
        assert not tasks[0].done()
        await make_room(store)
        await asyncio.wait_for(drain(rec), 30)
    rows = await store.fetchall("SELECT meter_id, import_wh FROM readings")
    assert [tuple(r) for r in rows] == [("new-meter", 100.0)]
