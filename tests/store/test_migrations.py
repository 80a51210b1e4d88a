"""Migrations that reshape tables keep every row of an existing database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gridnode.store import Store, operations
from gridnode.store.migrate import apply, discover
from gridnode.store.operations import ChainEvent


def _at(path: Path, version: int) -> sqlite3.Connection:
    """A database migrated up to `version` (inclusive), as an older gridnode left it."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    apply(conn, [m for m in discover() if m.version <= version])
    return conn


async def test_0080_chain_events_keep_their_rows_and_get_their_place_in_the_log(
        tmp_path: Path) -> None:
    db = tmp_path / "gridnode.db"
    conn = _at(db, 72)
    conn.execute("INSERT INTO operations (id, tx_type, payload, idempotency_key, status, "
                 "created_at_ms, updated_at_ms) VALUES (1, 'meter_reading', '{}', 'k1', "
                 "'finalized', 1, 1), (2, 'meter_reading', '{}', 'k2', 'finalized', 1, 1)")
    old = [("sigA", 1, "Prog", "MeterReadingSubmitted", '{"v":1}', 10),
           ("sigB", 2, "Prog", "MeterReadingSubmitted", '{"v":1}', 11),   # same event, other tx
           ("sigA", 2, "Prog", "MeterReadingSubmitted", '{"v":2}', 10)]
    conn.executemany("INSERT INTO chain_events (signature, operation_id, program_id, name, data, "
                     "slot) VALUES (?, ?, ?, ?, ?, ?)", old)
    conn.close()

    store = await Store.open(db)
    try:
        assert 80 in [m.version for m in store.applied_now]
        rows = await store.fetchall("SELECT id, signature, seq, operation_id, data, slot "
                                    "FROM chain_events ORDER BY id")
        assert [(r["id"], r["signature"], r["seq"], r["operation_id"], r["data"], r["slot"])
                for r in rows] == [(1, "sigA", 0, 1, '{"v":1}', 10),
                                   (2, "sigB", 0, 2, '{"v":1}', 11),
                                   (3, "sigA", 1, 2, '{"v":2}', 10)]
        indexes = {r["name"] for r in await store.fetchall(
            "SELECT name FROM sqlite_master WHERE tbl_name = 'chain_events' AND type = 'index'")}
        assert "chain_events_operation" in indexes

        # the same transaction decoded again adds nothing; a new one is recorded in log order
        again = [ChainEvent("sigA", 1, "Prog", "MeterReadingSubmitted", '{"v":1}', 10),
                 ChainEvent("sigA", 2, "Prog", "MeterReadingSubmitted", '{"v":2}', 10)]
        new = [ChainEvent("sigC", 1, "Prog", "OrderMatched", '{"m":1}', 12),
               ChainEvent("sigC", 1, "Prog", "OrderMatched", '{"m":1}', 12)]  # twice: two events
        async with store.write() as tx:
            await operations.record_finalized(tx, "sigA", 5000, 10, again)
            await operations.record_finalized(tx, "sigC", 5000, 12, new)
        async with store.write() as tx:
            await operations.record_finalized(tx, "sigC", 5000, 12, new)
        got = await store.fetchall("SELECT signature, seq FROM chain_events ORDER BY id")
        assert [(r["signature"], r["seq"]) for r in got] == [
            ("sigA", 0), ("sigB", 0), ("sigA", 1), ("sigC", 0), ("sigC", 1)]
    finally:
        await store.close()


async def test_0081_attempts_get_ids_and_operations_keep_their_transactions(
        tmp_path: Path) -> None:
    db = tmp_path / "gridnode.db"
    conn = _at(db, 80)
    conn.execute("INSERT INTO operations (id, tx_type, payload, idempotency_key, status, "
                 "created_at_ms, updated_at_ms) VALUES (1, 'meter_reading', '{}', 'k1', "
                 "'submitted', 1, 1), (2, 'meter_reading', '{}', 'k2', 'submitted', 1, 1), "
                 "(3, 'meter_reading', '{}', 'k3', 'pending', 1, 1)")
    for sig, at in (("sigOld", 1), ("sigNew", 2)):
        conn.execute("INSERT INTO tx_attempts (signature, serialized, blockhash, "
                     "last_valid_block_height, created_at_ms, observed_status) "
                     "VALUES (?, x'0102', 'bh', 150, ?, 'sent')", (sig, at))
    conn.executemany("INSERT INTO tx_attempt_operations (signature, operation_id, ix_index) "
                     "VALUES (?, ?, ?)", [("sigOld", 1, 0), ("sigOld", 2, 2), ("sigNew", 2, 0)])
    conn.close()

    store = await Store.open(db)
    try:
        assert 81 in [m.version for m in store.applied_now]
        assert [a.signature for a in await operations.attempts_of(store, 2)] == [
            "sigOld", "sigNew"]
        flight = await operations.in_flight(store)
        assert sorted(flight) == ["sigNew", "sigOld"]
        assert flight["sigOld"].ops == [(1, 0), (2, 2)] and flight["sigOld"].serialized == b"\1\2"
        assert await operations.carried_by(store, "sigNew", {"submitted"}) == [2]
        # a new attempt links by its id
        async with store.write() as tx:
            await operations.record_signed(
                tx, operations.NewAttempt("sig3", b"x", "bh2", 300, 20_000, 1), [(3, 0)])
        assert [a.signature for a in await operations.attempts_of(store, 3)] == ["sig3"]
        assert await operations.carried_by(store, "sig3", {"signed"}) == [3]
        fks = await store.fetchall("PRAGMA foreign_key_check")
        assert list(fks) == []
    finally:
        await store.close()


async def test_pages_a_rebuild_freed_are_given_back(tmp_path: Path) -> None:
    """Rebuilding a table frees the old one's pages: a new database must not start with a free
    list (a full disk would then be found hundreds of rows late, and the file is larger)."""
    store = await Store.open(tmp_path / "gridnode.db")
    try:
        row = await store.fetchone("PRAGMA freelist_count")
        assert row is not None and row[0] == 0
    finally:
        await store.close()


async def test_0082_signed_bytes_move_to_their_own_table(tmp_path: Path) -> None:
    db = tmp_path / "gridnode.db"
    conn = _at(db, 81)
    conn.execute("INSERT INTO operations (id, tx_type, payload, idempotency_key, status, "
                 "created_at_ms, updated_at_ms) VALUES (1, 'meter_reading', '{}', 'k1', "
                 "'submitted', 1, 1)")
    conn.execute("INSERT INTO tx_attempts (id, signature, serialized, blockhash, "
                 "last_valid_block_height, created_at_ms, observed_status) "
                 "VALUES (7, 'sig', x'0a0b0c', 'bh', 150, 1, 'sent')")
    conn.execute("INSERT INTO tx_attempt_operations (attempt_id, operation_id, ix_index) "
                 "VALUES (7, 1, 0)")
    conn.close()

    store = await Store.open(db)
    try:
        assert 82 in [m.version for m in store.applied_now]
        columns = {r["name"] for r in await store.fetchall("PRAGMA table_info(tx_attempts)")}
        assert "serialized" not in columns and "signature" in columns
        [sendable] = await operations.sendable(store)
        assert (sendable.signature, sendable.serialized) == ("sig", b"\x0a\x0b\x0c")
        assert (await operations.in_flight(store))["sig"].serialized == b"\x0a\x0b\x0c"
        assert list(await store.fetchall("PRAGMA foreign_key_check")) == []
    finally:
        await store.close()
