"""The store keeps its promises: audited transitions, atomic refusal, durable commits."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gridnode.store import (
    MigrationError,
    StorageFull,
    Store,
    StoreError,
    TransitionError,
)
from gridnode.store.migrate import discover
from tests.store.full import fill_up, make_room
from tests.store.nobody import as_nobody

REPO = Path(__file__).resolve().parents[2]


async def test_open_sets_durable_pragmas_and_records_migrations(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "sub" / "gridnode.db")
    try:
        assert [m.version for m in store.applied_now] == [m.version for m in discover()]
        mode = await store.fetchone("PRAGMA journal_mode")
        assert mode is not None and mode[0] == "wal"
        async with store.write() as tx:
            sync = await tx.fetchone("PRAGMA synchronous")
            fk = await tx.fetchone("PRAGMA foreign_keys")
        assert sync is not None and sync[0] == 2      # FULL
        assert fk is not None and fk[0] == 1
        rows = await store.fetchall("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in rows] == [m.version for m in discover()]
    finally:
        await store.close()
    again = await Store.open(tmp_path / "sub" / "gridnode.db")
    assert again.applied_now == []
    await again.close()


async def test_foreign_keys_are_enforced(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "g.db")
    try:
        with pytest.raises(sqlite3.IntegrityError):
            async with store.write() as tx:
                await tx.execute(
                    "INSERT INTO readings (meter_id, read_at_ms, received_at_ms, import_wh) "
                    "VALUES ('nope', 1, 1, 0)")
    finally:
        await store.close()


async def test_add_operation_is_idempotent_and_audited(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "g.db")
    try:
        async with store.write() as tx:
            first = await tx.add_operation("meter_reading", {"b": 1, "a": 2}, "meter_reading:m1:900")
            second = await tx.add_operation("meter_reading", {"b": 1, "a": 2}, "meter_reading:m1:900")
        assert first[1] is True and second == (first[0], False)
        op = await store.fetchone("SELECT * FROM operations WHERE id = ?", (first[0],))
        assert op is not None and op["status"] == "pending"
        assert json.loads(op["payload"]) == {"a": 2, "b": 1}
        audit = await store.fetchall("SELECT * FROM audit_log WHERE entity_id = ?", (first[0],))
        assert [(a["old_status"], a["new_status"]) for a in audit] == [(None, "pending")]
    finally:
        await store.close()


async def test_set_status_walks_the_table_and_stamps_times(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "g.db")
    try:
        async with store.write() as tx:
            op_id, _ = await tx.add_operation("meter_reading", {}, "k1")
            assert await tx.set_status("operation", op_id, "signed", reason="signed") == "pending"
            await tx.set_status("operation", op_id, "submitted", reason="sent",
                                details={"signature": "abc"})
        async with store.write() as tx:
            await tx.set_status("operation", op_id, "finalized", reason="landed")
        op = await store.fetchone("SELECT * FROM operations WHERE id = ?", (op_id,))
        assert op is not None and op["status"] == "finalized"
        assert op["submitted_at_ms"] and op["confirmed_at_ms"] and op["finalized_at_ms"]
        audit = await store.fetchall(
            "SELECT old_status, new_status, reason, details FROM audit_log WHERE entity_id = ? "
            "ORDER BY id", (op_id,))
        assert [(a[0], a[1]) for a in audit] == [
            (None, "pending"), ("pending", "signed"), ("signed", "submitted"),
            ("submitted", "finalized")]
        assert json.loads(audit[2]["details"]) == {"signature": "abc"}
    finally:
        await store.close()


async def test_illegal_transition_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "g.db")
    try:
        async with store.write() as tx:
            op_id, _ = await tx.add_operation("meter_reading", {"x": 1}, "k1")
        before_ops = [tuple(r) for r in await store.fetchall("SELECT * FROM operations")]
        before_audit = [tuple(r) for r in await store.fetchall("SELECT * FROM audit_log")]

        # Other writes earlier in the same transaction must vanish with the refusal.
        with pytest.raises(TransitionError) as err:
            async with store.write() as tx:
                await tx.add_operation("meter_reading", {"x": 2}, "k2")
                await tx.execute("UPDATE operations SET attempts = 7 WHERE id = ?", (op_id,))
                await tx.set_status("operation", op_id, "confirmed", reason="skipping ahead")
        assert "pending -> confirmed is not allowed" in str(err.value)
        assert err.value.old == "pending" and err.value.new == "confirmed"

        assert [tuple(r) for r in await store.fetchall("SELECT * FROM operations")] == before_ops
        assert [tuple(r) for r in await store.fetchall("SELECT * FROM audit_log")] == before_audit

        # A terminal status refuses everything; a missing row is its own error.
        async with store.write() as tx:
            await tx.set_status("operation", op_id, "signed", reason="s")
            await tx.set_status("operation", op_id, "finalized", reason="f")
        with pytest.raises(TransitionError, match="terminal"):
            async with store.write() as tx:
                await tx.set_status("operation", op_id, "pending", reason="retry")
        with pytest.raises(StoreError, match="does not exist"):
            async with store.write() as tx:
                await tx.set_status("operation", 999, "signed", reason="x")
        # The store is still usable after refusals.
        async with store.write() as tx:
            await tx.add_operation("meter_reading", {}, "k3")
    finally:
        await store.close()


async def test_writers_are_serialised_and_close_waits_for_the_write(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "g.db")
    order: list[str] = []

    async def slow_writer() -> None:
        async with store.write() as tx:
            order.append("a-begin")
            await tx.add_operation("t", {}, "a")
            await asyncio.sleep(0.05)
            order.append("a-end")

    async def other_writer() -> None:
        async with store.write() as tx:
            order.append("b-begin")
            await tx.add_operation("t", {}, "b")

    a = asyncio.create_task(slow_writer())
    await asyncio.sleep(0)
    b = asyncio.create_task(other_writer())
    await asyncio.sleep(0.01)
    await store.close()          # waits for a and b, which queued before it
    await asyncio.gather(a, b)
    assert order == ["a-begin", "a-end", "b-begin"]
    reopened = await Store.open(tmp_path / "g.db")
    rows = await reopened.fetchall("SELECT idempotency_key FROM operations ORDER BY id")
    assert [r[0] for r in rows] == ["a", "b"]
    with pytest.raises(StoreError, match="closed"):
        async with store.write():
            pass
    with pytest.raises(StoreError, match="closed"):
        await store.fetchone("SELECT 1")
    await reopened.close()


async def test_cancelled_writer_rolls_back(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "g.db")
    started = asyncio.Event()

    async def writer() -> None:
        async with store.write() as tx:
            await tx.add_operation("t", {}, "never")
            started.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(writer())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await store.fetchone("SELECT count(*) FROM operations"))[0] == 0
    async with store.write() as tx:
        await tx.add_operation("t", {}, "after")
    assert (await store.fetchone("SELECT count(*) FROM operations"))[0] == 1
    await store.close()


async def test_migrations_are_forward_only(tmp_path: Path) -> None:
    mig = tmp_path / "migrations"
    mig.mkdir()
    (mig / "0001_initial.sql").write_text("CREATE TABLE a (x INTEGER) STRICT;\n")
    db = tmp_path / "g.db"
    await (await Store.open(db, migrations_dir=mig)).close()
    # A new file is applied on the next open; a broken one is refused atomically.
    (mig / "0002_more.sql").write_text("-- adds b\nCREATE TABLE b (y TEXT);\n")
    store = await Store.open(db, migrations_dir=mig)
    assert [m.version for m in store.applied_now] == [2]
    await store.close()
    (mig / "0003_broken.sql").write_text("CREATE TABLE c (z);\nCREATE TABLE a (dup);\n")
    with pytest.raises(MigrationError, match="0003_broken.sql failed"):
        await Store.open(db, migrations_dir=mig)
    conn = sqlite3.connect(db)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    conn.close()
    assert "c" not in tables and {"a", "b"} <= tables
    (mig / "0003_broken.sql").unlink()
    # Editing an applied migration, or code older than the database, is refused.
    (mig / "0002_more.sql").write_text("CREATE TABLE b (y INTEGER);\n")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await Store.open(db, migrations_dir=mig)
    (mig / "0002_more.sql").unlink()
    with pytest.raises(MigrationError, match="newer than the code"):
        await Store.open(db, migrations_dir=mig)


BURST_WRITER = r"""
import asyncio, sys
from gridnode.store import Store

async def main(path):
    store = await Store.open(path)
    n = 0
    while True:
        async with store.write() as tx:
            ids = []
            for _ in range(5):
                n += 1
                op_id, _ = await tx.add_operation(
                    "meter_reading", {"meter_id": "m1", "n": n, "pad": "x" * 200},
                    f"meter_reading:m1:{n}")
                ids.append(op_id)
        print(" ".join(map(str, ids)), flush=True)

asyncio.run(main(sys.argv[1]))
"""


def test_sigkill_mid_burst_loses_no_committed_row(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    proc = subprocess.Popen([sys.executable, "-c", BURST_WRITER, str(db)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    committed: list[int] = []
    try:
        assert proc.stdout is not None
        while len(committed) < 400:
            line = proc.stdout.readline()
            assert line, f"writer exited early with {proc.wait()}"
            committed.extend(int(x) for x in line.split())
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # Lines printed after our last read are committed too; read them so the check is complete.
    assert proc.stdout is not None
    committed.extend(int(x) for line in proc.stdout.read().splitlines() for x in line.split())
    proc.stdout.close()

    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        present = {r[0] for r in conn.execute("SELECT id FROM operations")}
        audited = {r[0] for r in conn.execute(
            "SELECT entity_id FROM audit_log WHERE entity = 'operation'")}
    finally:
        conn.close()
    assert set(committed) <= present
    assert present == audited           # each row came with its audit row, or neither did
    assert len(present) >= 400


async def test_cancel_while_waiting_for_another_process_lock_leaves_no_open_transaction(
        tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    store = await Store.open(db)
    other = sqlite3.connect(db, isolation_level=None)      # another process's writer
    other.execute("BEGIN IMMEDIATE")

    async def writer() -> None:
        async with store.write() as tx:
            await tx.add_operation("t", {}, "blocked")

    task = asyncio.create_task(writer())
    await asyncio.sleep(0.2)                # our BEGIN IMMEDIATE now waits in busy_timeout
    task.cancel()
    await asyncio.sleep(0.1)
    other.execute("COMMIT")                 # BEGIN goes through, then must be rolled back
    with pytest.raises(asyncio.CancelledError):
        await task
    other.close()
    async with store.write() as tx:         # would fail inside a dangling transaction
        await tx.add_operation("t", {}, "next")
    rows = await store.fetchall("SELECT idempotency_key FROM operations")
    assert [r[0] for r in rows] == ["next"]
    await store.close()


async def test_nested_write_in_one_task_is_an_error_not_a_deadlock(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "g.db")
    with pytest.raises(StoreError, match="inside store.write"):
        async with store.write() as tx:
            await tx.add_operation("t", {}, "outer")
            async with store.write():
                pass
    assert (await store.fetchone("SELECT count(*) FROM operations"))[0] == 0
    async with store.write() as tx:           # the lock was released
        await tx.add_operation("t", {}, "after")
    await store.close()


async def test_a_full_database_raises_storage_full_writes_nothing_and_recovers(
        tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "g.db")
    try:
        await fill_up(store)
        with pytest.raises(StorageFull, match="storage full") as info:
            async with store.write() as tx:
                await tx.add_operation("t", {"blob": "x" * 200_000}, "big")
        assert isinstance(info.value, StoreError)
        assert (await store.fetchone("SELECT count(*) FROM operations"))[0] == 0
        await store.probe()                   # a full disk does not stop reads or the lock
        await store.check_writable()          # nor is it a read-only database
        await make_room(store)
        async with store.write() as tx:       # the same write goes through once space is back
            await tx.add_operation("t", {"blob": "x" * 200_000}, "big")
        assert (await store.fetchone("SELECT count(*) FROM operations"))[0] == 1
    finally:
        await store.close()


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory everyone may enter and write (pytest's own tmp root is private to its user)."""
    d = Path(tempfile.mkdtemp(prefix="gridnode-ro-"))
    d.chmod(0o777)
    yield d
    shutil.rmtree(d)


def test_a_read_only_database_is_found_before_anything_is_written(open_dir: Path) -> None:
    prefix = as_nobody()
    db = open_dir / "g.db"
    script = (f"import asyncio\nfrom gridnode.store import Store\n"
              f"async def main():\n    s = await Store.open({str(db)!r})\n"
              f"    try:\n        await s.check_writable()\n    finally:\n"
              f"        await s.close()\nasyncio.run(main())\n")
    subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True)   # creates it
    db.chmod(0o444)
    if os.geteuid() == 0:
        os.chown(db, 0, 0)
    out = subprocess.run([*prefix, sys.executable, "-c", script], cwd=REPO, text=True,
                         capture_output=True)
    assert out.returncode == 1
    assert "StoreReadOnly" in out.stderr and "cannot be written" in out.stderr, out.stderr
    db.chmod(0o644)
    ok = subprocess.run([sys.executable, "-c", script], cwd=REPO, text=True, capture_output=True)
    assert ok.returncode == 0, ok.stderr



def test_a_database_in_a_read_only_directory_is_refused_at_open(open_dir: Path) -> None:
    prefix = as_nobody()
    db = open_dir / "g.db"
    script = (f"import asyncio\nfrom gridnode.store import Store\n"
              f"async def main():\n    await (await Store.open({str(db)!r})).close()\n"
              f"asyncio.run(main())\n")
    subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True)
    db.chmod(0o666)
    open_dir.chmod(0o555)            # WAL cannot create its -wal and -shm files here
    out = subprocess.run([*prefix, sys.executable, "-c", script], cwd=REPO, text=True,
                         capture_output=True)
    open_dir.chmod(0o777)
    assert out.returncode == 1
    assert "StoreReadOnly" in out.stderr and "cannot be opened for writing" in out.stderr, \
        out.stderr
