"""Retention of raw readings: only old readings of finalized intervals go, in small batches, the
file shrinks after (auto_vacuum = INCREMENTAL), and the daemon's scheduler runs the purge. And of
finalized operations' details: only those of plain oracle readings, once every destination has
taken them."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from solders.pubkey import Pubkey

from gridnode import daemon
from gridnode.chain.txtypes import new_operation
from gridnode.chain.validation import MeterReadingPayload, UserRegistrationPayload
from gridnode.config import parse_config
from gridnode.meters.reading import Reading
from gridnode.meters.recorder import Recorder
from gridnode.store import Store, deliveries, dumps, operations, retention, transitions
from gridnode.store.operations import ChainEvent, NewAttempt
from gridnode.systemd import Notifier
from gridnode.testing import ManualClock, drain
from tests.meters.conftest import entry, running
from tests.processes import gridnode

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


# -- details of finalized operations -----------------------------------------------------------

async def _submit(store: Store, ops: list[int], sig: str) -> None:
    """Sign and send one transaction carrying `ops`, as the submitter does."""
    async with store.write() as tx:
        await operations.record_signed(tx, NewAttempt(sig, b"signed " + sig.encode(), "bh", 150,
                                                      20_000, 1),
                                       [(o, i) for i, o in enumerate(ops)])
        await operations.record_sent(tx, sig)


async def _land(store: Store, ops: list[int], sig: str) -> None:
    """The transaction is finalized with one decoded event per operation, as the monitor records."""
    async with store.write() as tx:
        await operations.record_observed(tx, sig, "finalized", 77, None)
        await operations.finalize(tx, sig, 5000, 77, [
            ChainEvent(sig, o, "Oracle", "MeterReadingSubmitted", dumps({"op": o}), 77)
            for o in ops], ops)


async def _reading_ops(store: Store, meters: list[str], end: int,
                       status: str = transitions.PENDING) -> list[int]:
    async with store.write() as tx:
        return [(await operations.add(tx, new_operation(MeterReadingPayload(
            meter_id=m, interval_start=end - L, interval_end=end, energy_produced_wh=1,
            energy_consumed_wh=2)), status))[0] for m in meters]


async def _details(store: Store, op_id: int) -> tuple[int, int, int]:
    """(audit rows, chain events, transactions with their signed bytes) of an operation."""
    audit = len(await operations.history(store, op_id))
    events = len(await store.fetchall("SELECT 1 FROM chain_events WHERE operation_id = ?",
                                      (op_id,)))
    signed = len(await store.fetchall(
        "SELECT 1 FROM tx_bytes b JOIN tx_attempt_operations t ON t.attempt_id = b.attempt_id "
        "WHERE t.operation_id = ?", (op_id,)))
    return audit, events, signed


async def test_details_of_plain_finalized_readings_go_the_rest_stays(store: Store) -> None:
    plain = await _reading_ops(store, ["a", "b"], B0)
    await _submit(store, plain, "sig-plain")
    await _land(store, plain, "sig-plain")
    [twice] = await _reading_ops(store, ["c"], B0)       # its first transaction expired
    await _submit(store, [twice], "sig-expired")
    async with store.write() as tx:
        await operations.record_observed(tx, "sig-expired", "expired", None, None)
        await operations.move(tx, twice, "expired", reason="blockhash expired")
        await operations.move(tx, twice, "pending", reason="re-sign")
    await _submit(store, [twice], "sig-again")
    await _land(store, [twice], "sig-again")
    async with store.write() as tx:                       # a type whose events are read again
        [other] = [(await operations.add(tx, new_operation(UserRegistrationPayload(
            user=str(Pubkey.new_unique()), user_type="prosumer", location="here"),
            "user_registration:x")))[0]]
    await _submit(store, [other], "sig-other")
    await _land(store, [other], "sig-other")
    [held] = await _reading_ops(store, ["h"], B0, transitions.CREATED)  # for its API client
    [on_its_way] = await _reading_ops(store, ["d"], B0)
    await _submit(store, [on_its_way], "sig-flying")
    [behind] = await _reading_ops(store, ["e"], B0)      # finalized, after the one on its way
    await _submit(store, [behind], "sig-behind")
    await _land(store, [behind], "sig-behind")
    await asyncio.sleep(0.01)
    cutoff = operations.now_ms()
    before = {o: await _details(store, o)
              for o in (*plain, twice, other, held, on_its_way, behind)}
    assert before[plain[0]] == (4, 1, 1) and before[twice] == (8, 1, 2)

    done = await retention.purge_details(store, cutoff, {"meter_reading"}, batch=2, pause_s=0)
    after = {o: await _details(store, o) for o in before}
    assert after[plain[0]] == after[plain[1]] == (0, 0, 0)
    assert (done.operations, done.audit_rows, done.chain_events, done.transactions) == (2, 8, 2, 1)
    # kept: more than one transaction, another type, one held, and what the walk has not reached
    for kept in (twice, other, held, on_its_way, behind):
        assert after[kept] == before[kept], kept
    # the rows, their times and signatures stay
    op = await operations.get(store, plain[0])
    assert op is not None and op.status == "finalized" and op.finalized_at_ms is not None
    assert [a.signature for a in await operations.attempts_of(store, plain[0])] == ["sig-plain"]
    shown = await gridnode("outbox", "show", str(plain[0]), "--db", str(store.path))
    assert shown.returncode == 0 and "sig-plain finalized" in shown.stdout
    assert "history: deleted by retention ([retention] detail_days)" in shown.stdout

    # the walk waits at the operation still on its way; once it lands, it goes on from there
    await _land(store, [on_its_way], "sig-flying")
    again = await retention.purge_details(store, cutoff, {"meter_reading"}, batch=2, pause_s=0)
    assert again.operations == 0                           # landed after the cutoff: not yet
    later = await retention.purge_details(store, operations.now_ms() + 1, {"meter_reading"},
                                          batch=2, pause_s=0)
    assert later.operations == 2                           # on_its_way and behind, nothing twice
    assert await _details(store, on_its_way) == await _details(store, behind) == (0, 0, 0)
    assert await _details(store, twice) == before[twice]
    assert await _details(store, held) == before[held] == (1, 0, 0)     # passed, not waited at
    # a restart of the walk finds nothing left to judge
    assert (await retention.purge_details(store, operations.now_ms() + 1, {"meter_reading"},
                                          batch=2, pause_s=0)).operations == 0


async def test_details_wait_for_every_delivery_destination(store: Store) -> None:
    ops = await _reading_ops(store, ["a"], B0)
    await _submit(store, ops, "sig")
    await _land(store, ops, "sig")
    async with store.write() as tx:            # a destination that has taken nothing yet
        await deliveries.ensure_destination(tx, "upstream", "upstream")
    cutoff = operations.now_ms() + 1
    assert (await retention.purge_details(store, cutoff, {"meter_reading"}, 10,
                                          pause_s=0)).operations == 0
    newest = (await store.fetchone("SELECT max(id) FROM events"))[0]
    async with store.write() as tx:            # it took everything
        await deliveries.capture(tx, "upstream", 0, newest, [])
    assert (await retention.purge_details(store, cutoff, {"meter_reading"}, 10,
                                          pause_s=0)).operations == 1


async def test_the_daemon_schedules_the_detail_purge(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    state = tmp_path / "state"
    state.mkdir()
    store = await Store.open(state / "gridnode.db")
    try:
        ops = await _reading_ops(store, ["a", "b"], B0)
        await _submit(store, ops, "sig")
        await _land(store, ops, "sig")
        cfg = parse_config(f'[node]\ndata_dir = "{state}"\n[retention]\ndetail_days = 1\n')
        sched = daemon._scheduler(cfg, store)
        job = sched.get_job("retention-details")
        assert job is not None and job.trigger.interval.total_seconds() == cfg.retention.every_s
        await job.func()                                  # finalized just now: kept
        assert await _details(store, ops[0]) == (4, 1, 1)
        day_later = operations.now_ms() + 86_400_000 + 1000
        monkeypatch.setattr(daemon.time, "time", lambda: day_later / 1000)
        await job.func()
        assert await _details(store, ops[0]) == await _details(store, ops[1]) == (0, 0, 0)
        [line] = [getattr(r, "gridnode_fields", {}) for r in caplog.records
                  if r.getMessage() == "operation details purged"]
        assert (line["operations"], line["audit_rows"], line["transactions"]) == (2, 8, 1)
        off = parse_config(f'[node]\ndata_dir = "{state}"\n[retention]\ndetail_days = 0\n')
        assert daemon._scheduler(off, store).get_job("retention-details") is None
    finally:
        await store.close()
