"""Retention of raw readings: only old readings of finalized intervals go, in small batches, the
file shrinks after (auto_vacuum = INCREMENTAL), and the daemon's scheduler runs the purge."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gridnode import daemon
from gridnode.config import parse_config
from gridnode.meters.reading import Reading
from gridnode.meters.recorder import Recorder
from gridnode.store import Store, retention
from gridnode.systemd import Notifier
from gridnode.testing import ManualClock, drain
from tests.meters.conftest import entry, running

L = 900
B0 = 1_780_000_200 // L * L


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "gridnode.db")
    yield s
    await s.close()


async def _record(store: Store, meters: list[str], t0: int, t1: int, step: int = 10) -> None:
    """Readings every `step` s from t0 to t1, every one kept raw, with their intervals and ops."""
    clock = ManualClock(t0)
    rec = Recorder(store, [entry(m) for m in meters], interval_s=L, clock=clock,
                   health_flush_s=3600, raw_every_s=0)
    async with running(rec):
        for t in range(t0, t1 + 1, step):
            clock.advance(t - clock.time())
            rec.submit_cycle([Reading(m, t * 1000, t * 1000, 1000 + (t - t0) * 0.2, 0.0)
                              for m in meters])
            await drain(rec)


async def _finalize_until(store: Store, interval_end: int) -> None:
    async with store.write() as tx:      # as the monitor would have, for the rule under test
        await tx.execute("UPDATE operations SET status = 'finalized' WHERE tx_type = "
                         "'meter_reading' AND CAST(json_extract(payload, '$.interval_end') "
                         "AS INTEGER) <= ?", (interval_end,))


async def test_only_old_readings_of_finalized_intervals_are_deleted(store: Store) -> None:
    await _record(store, ["a", "b"], B0 - 30, B0 + 4 * L + 30)
    await _finalize_until(store, B0 + 2 * L)          # two of the four intervals
    cutoff_ms = (B0 + 3 * L) * 1000                   # the third is old enough, not finalized
    before = await store.fetchall("SELECT meter_id, read_at_ms FROM readings")
    done = await retention.purge_raw(store, cutoff_ms, batch=25, pause_s=0)
    after = {(r[0], r[1]) for r in await store.fetchall(
        "SELECT meter_id, read_at_ms FROM readings")}
    gone = {(r[0], r[1]) for r in before} - after
    # exactly the readings inside the two finalized intervals
    assert gone == {(r[0], r[1]) for r in before if B0 * 1000 <= r[1] < (B0 + 2 * L) * 1000}
    assert done.deleted == len(gone) == 2 * 2 * 90 and done.batches == len(gone) // 25 + 1
    # before the first boundary (no interval yet) and the unfinalized third interval stay
    assert ("a", (B0 - 30) * 1000) in after and ("a", (B0 + 2 * L + 10) * 1000) in after
    assert len(await store.fetchall("SELECT id FROM intervals")) == 8   # intervals untouched


async def test_the_file_shrinks_after_a_purge(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    store = await Store.open(db)
    try:
        assert (await store.fetchone("PRAGMA auto_vacuum"))[0] == 2        # INCREMENTAL
        await _record(store, [f"m{i}" for i in range(10)], B0 - 30, B0 + 3 * L + 30, step=5)
        await _finalize_until(store, B0 + 3 * L)
        pages = (await store.fetchone("PRAGMA page_count"))[0]
        done = await retention.purge_raw(store, (B0 + 4 * L) * 1000, batch=2000, pause_s=0)
        assert done.deleted >= 10 * 3 * 180 and done.freed_pages > 20
        assert (await store.fetchone("PRAGMA page_count"))[0] < pages - 20
        assert (await store.fetchone("PRAGMA freelist_count"))[0] == 0
    finally:
        await store.close()


async def test_an_existing_database_is_switched_to_incremental_auto_vacuum(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as c:          # as an older gridnode left it: auto_vacuum = NONE
        c.execute("CREATE TABLE t (x)")
        c.execute("INSERT INTO t VALUES (1)")
    store = await Store.open(db)
    try:
        assert (await store.fetchone("PRAGMA auto_vacuum"))[0] == 2
        assert (await store.fetchone("SELECT x FROM t"))[0] == 1
    finally:
        await store.close()


async def test_the_daemon_schedules_the_purge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    state = tmp_path / "state"
    state.mkdir()
    store = await Store.open(state / "gridnode.db")
    await _record(store, ["a"], B0 - 30, B0 + 2 * L + 30)       # long ago (2026-05-28)
    await _finalize_until(store, B0 + 2 * L)
    n_before = (await store.fetchone("SELECT count(*) FROM readings"))[0]
    await store.close()
    monkeypatch.setattr(daemon, "RETENTION_FIRST_RUN_S", 0.2)
    monkeypatch.setattr(daemon, "build_subsystems", lambda c, s, k: [])
    cfg = parse_config(f'[node]\ndata_dir = "{state}"\n[retention]\nraw_days = 1\nbatch = 50\n')
    node = daemon.Daemon(cfg, Notifier({}))
    task = asyncio.create_task(node.run())
    for _ in range(100):
        await asyncio.sleep(0.1)
        if any(r.getMessage() == "raw readings purged" for r in caplog.records):
            break
    node.request_stop("test")
    assert await asyncio.wait_for(task, 10) == 0
    lines = [getattr(r, "gridnode_fields", {}) for r in caplog.records
             if r.getMessage() == "raw readings purged"]
    assert len(lines) == 1 and lines[0]["deleted"] == 2 * 90 and lines[0]["batches"] == 4
    with sqlite3.connect(state / "gridnode.db") as c:
        assert c.execute("SELECT count(*) FROM readings").fetchone()[0] == n_before - 180
    assert not [r for r in caplog.records if r.name.startswith("apscheduler")
                and r.levelno < logging.WARNING]
