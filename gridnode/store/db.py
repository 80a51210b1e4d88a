"""The durable store: one SQLite database, one writer, readers on their own connection.

Why this shape: SQLite allows one writer at a time, and aiosqlite runs each connection in its own
thread. Funnelling every write through one connection guarded by an asyncio.Lock, in short
``BEGIN IMMEDIATE`` transactions, keeps writers from ever waiting on each other inside SQLite,
and a separate read-only connection lets queries (API, CLI, monitors) run beside a write. WAL with
``synchronous=FULL`` makes each commit durable on power loss where the storage honours fsync.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from gridnode.store import events, migrate, transitions

T = TypeVar("T")
Params = Sequence[Any] | Mapping[str, Any]

BUSY_TIMEOUT_MS = 10_000
# An I/O error while the filesystem has less than this left is the disk being full: SQLite
# reports ENOSPC on its shared-memory file, and on some filesystems at fsync, as SQLITE_IOERR.
FULL_MARGIN_BYTES = 1 << 20
VACUUM_AT_OPEN_MAX_BYTES = 256 << 20
# Entity name (as in transitions.TRANSITIONS) -> the table that holds its rows.
_ENTITY_TABLES: dict[str, str] = {
    "operation": "operations",
    "settlement": "settlements",
    "upstream_delivery": "upstream_deliveries",
}
# Status -> timestamp column stamped when a row first enters it.
_STATUS_TIMES: dict[str, dict[str, tuple[str, ...]]] = {
    "operation": {
        "submitted": ("submitted_at_ms",),
        "confirmed": ("confirmed_at_ms",),
        "finalized": ("confirmed_at_ms", "finalized_at_ms"),
    },
    "settlement": {},
    "upstream_delivery": {"delivered": ("delivered_at_ms",)},
}


class StoreError(RuntimeError):
    """A store operation could not be carried out (missing row, closed store, bad schema)."""


class StorageFull(StoreError):
    """The database could not be written because its storage is full (SQLITE_FULL).

    Nothing of the transaction was written. It is a state, not a fault: the same write succeeds
    once space returns, so callers keep what they meant to write, retry with backoff and log
    the state change, not each attempt.
    """


class StorageIOError(StoreError):
    """The storage failed a read or write for another reason than space (SQLITE_IOERR).

    Nothing of the transaction was written; what the database holds is still consistent. A
    caller drops what it built on the failed write and takes it up again from the database.
    """


class StoreReadOnly(StoreError):
    """The database (its file, its directory or the filesystem) cannot be written at all."""


class TransitionError(StoreError):
    """A status change that the transition table does not allow; nothing was written."""

    def __init__(self, entity: str, entity_id: int, old: str | None, new: str) -> None:
        allowed = sorted(transitions.TRANSITIONS[entity].get(old or "", frozenset()))
        super().__init__(
            f"{entity} {entity_id}: {old} -> {new} is not allowed "
            f"(from {old}: {', '.join(allowed) or 'nothing, it is terminal'})")
        self.entity = entity
        self.entity_id = entity_id
        self.old = old
        self.new = new


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def dumps(value: Any) -> str:
    """The one JSON encoding used for stored payloads and details (stable key order)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def storage_error(exc: BaseException, path: Path) -> StoreError | None:
    """The typed store error for a SQLite error caused by the storage, else None."""
    if not isinstance(exc, sqlite3.Error):
        return None
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return None
    primary = code & 0xFF
    if primary == sqlite3.SQLITE_FULL:
        return StorageFull(f"{path}: storage full ({exc})")
    if primary == sqlite3.SQLITE_IOERR:
        if _free_bytes(path) < FULL_MARGIN_BYTES:
            return StorageFull(f"{path}: storage full ({exc}, {exc.sqlite_errorname})")
        return StorageIOError(f"{path}: storage I/O error ({exc}, {exc.sqlite_errorname})")
    if primary == sqlite3.SQLITE_READONLY:
        return StoreReadOnly(f"{path}: the database cannot be written ({exc})")
    return None


def _free_bytes(path: Path) -> int:
    try:
        st = os.statvfs(path.parent)
    except OSError:
        return 1 << 62          # unknown: do not call an I/O error a full disk
    return st.f_bavail * st.f_frsize


@dataclass(frozen=True, slots=True)
class ExecResult:
    lastrowid: int | None
    rowcount: int


async def uninterruptible(aw: Awaitable[T]) -> T:
    """Await `aw` to completion even if the caller is cancelled meanwhile, then re-raise.

    A COMMIT or ROLLBACK handed to the database thread runs to its end whatever happens to the
    awaiting task; waiting for it keeps the lock held until the database is really idle.
    """
    fut = asyncio.ensure_future(aw)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(fut)
            break
        except asyncio.CancelledError:
            if fut.done():
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return result


class _Reads:
    """Queries on one connection (the writer's inside a transaction, else the reader's)."""

    _conn: aiosqlite.Connection
    _closed = False

    async def fetchone(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        self._check_open()
        async with self._conn.execute(sql, params) as cur:
            return await cur.fetchone()

    async def fetchall(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        self._check_open()
        async with self._conn.execute(sql, params) as cur:
            return list(await cur.fetchall())

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the store is closed")


class WriteTx(_Reads):
    """The statements of one write transaction; only valid inside ``Store.write()``."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params = ()) -> ExecResult:
        async with self._conn.execute(sql, params) as cur:
            return ExecResult(cur.lastrowid, cur.rowcount)

    async def executemany(self, sql: str, seq: Iterable[Params]) -> ExecResult:
        async with self._conn.executemany(sql, seq) as cur:
            return ExecResult(cur.lastrowid, cur.rowcount)

    async def add_operation(self, tx_type: str, payload: Mapping[str, Any],
                            idempotency_key: str) -> tuple[int, bool]:
        """Insert an outbox operation unless its idempotency key exists: (id, created).

        Producers build the payload model and use gridnode.chain.txtypes.new_operation; the
        statement is in gridnode.store.operations.
        """
        from gridnode.store import operations

        return await operations.add(self, operations.NewOperation(tx_type, payload,
                                                                  idempotency_key))

    async def set_status(self, entity: str, entity_id: int, new: str, *, reason: str,
                         details: Mapping[str, Any] | None = None,
                         last_error: str | None = None) -> str:
        """Move a row to `new` if the transition table allows it; returns the old status.

        Writes the audit row in this same transaction. Raises TransitionError (and writes
        nothing) when the move is not allowed, StoreError when the row does not exist.
        """
        table = _ENTITY_TABLES.get(entity)
        if table is None:
            raise StoreError(f"unknown entity {entity!r} (known: {', '.join(_ENTITY_TABLES)})")
        row = await self.fetchone(f"SELECT status FROM {table} WHERE id = ?", (entity_id,))
        if row is None:
            raise StoreError(f"{entity} {entity_id} does not exist")
        old = str(row["status"])
        if not transitions.is_allowed(entity, old, new):
            raise TransitionError(entity, entity_id, old, new)
        ts = now_ms()
        sets = ["status = ?", "updated_at_ms = ?"]
        params: list[Any] = [new, ts]
        for column in _STATUS_TIMES[entity].get(new, ()):
            sets.append(f"{column} = COALESCE({column}, ?)")
            params.append(ts)
        if last_error is not None:
            sets.append("last_error = ?")
            params.append(last_error)
        params.append(entity_id)
        await self.execute(f"UPDATE {table} SET {', '.join(sets)} WHERE id = ?", params)
        await self._audit(entity, entity_id, old, new, reason, details, ts)
        return old

    async def _audit(self, entity: str, entity_id: int, old: str | None, new: str, reason: str,
                     details: Mapping[str, Any] | None, ts: int) -> None:
        await self.execute(
            "INSERT INTO audit_log (at_ms, entity, entity_id, old_status, new_status, reason, "
            "details) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (ts, entity, entity_id, old, new, reason,
             None if details is None else dumps(details)))
        if entity == "operation":       # the event log reports it in this same transaction
            await events.operation_status(self, entity_id, old, new, reason, ts)


class Store(_Reads):
    """Open with ``await Store.open(path)``; see the module docstring for the design.

    ``fetchone``/``fetchall`` read on the read-only connection: committed data only.
    """

    def __init__(self, path: Path, writer: aiosqlite.Connection,
                 reader: aiosqlite.Connection, applied: list[migrate.Migration]) -> None:
        self.path = path
        self.applied_now = applied          # migrations this open applied
        self._writer = writer
        self._reader = reader
        self._conn = reader
        self._lock = asyncio.Lock()
        self._holder: asyncio.Task[Any] | None = None    # the task inside write(), if any
        self._closed = False
        self.last_commit_monotonic = 0.0    # for liveness checks
        self.on_commit: Callable[[float], None] | None = None   # seconds each COMMIT took

    @classmethod
    async def open(cls, path: str | Path, *,
                   migrations_dir: Path = migrate.MIGRATIONS_DIR) -> Store:
        """Open (creating if needed) the database at `path` and apply pending migrations."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            applied = await asyncio.to_thread(_prepare, path, migrations_dir)
        except sqlite3.Error as exc:
            code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
            if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN):
                # WAL needs to write the file and create -wal/-shm beside it
                raise StoreReadOnly(f"{path}: the database cannot be opened for writing "
                                    f"({exc}; the file and its directory must be writable)"
                                    ) from exc
            raise
        writer = await aiosqlite.connect(path, isolation_level=None)
        try:
            await _configure(writer)
            reader = await aiosqlite.connect(f"file:{path}?mode=ro", uri=True,
                                             isolation_level=None)
        except BaseException:
            await writer.close()
            raise
        try:
            await reader.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await reader.execute("PRAGMA query_only = ON")
        except BaseException:
            await reader.close()
            await writer.close()
            raise
        writer.row_factory = sqlite3.Row
        reader.row_factory = sqlite3.Row
        return cls(path, writer, reader, applied)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[WriteTx]:
        """The single writer: one transaction, committed on exit, rolled back on any exception."""
        task = asyncio.current_task()
        if task is not None and task is self._holder:
            raise StoreError("store.write() inside store.write() in the same task would wait for "
                             "itself; use the transaction already open")
        async with self._lock:
            self._check_open()
            self._holder = task
            try:
                if self._writer.in_transaction:     # a ROLLBACK that failed last time
                    await uninterruptible(self._rollback())
                # BEGIN, body and COMMIT all inside: a cancellation that lands while BEGIN waits
                # for another process's lock must still roll back once BEGIN has gone through.
                await uninterruptible(self._run("BEGIN IMMEDIATE"))
                yield WriteTx(self._writer)
                committing = time.monotonic()
                await uninterruptible(self._run("COMMIT"))
                if self.on_commit is not None:
                    self.on_commit(time.monotonic() - committing)
            except BaseException as exc:
                if self._writer.in_transaction:
                    await uninterruptible(self._rollback())
                typed = storage_error(exc, self.path)
                if typed is not None:
                    raise typed from exc
                raise
            finally:
                self._holder = None
            self.last_commit_monotonic = time.monotonic()

    async def incremental_vacuum(self, max_pages: int) -> None:
        """Give up to `max_pages` free pages back to the filesystem, under the writer's lock.

        Outside BEGIN: the pragma frees one page per step and the sqlite3 module steps a
        statement without result columns only once, so it runs as a script (stepped to its end,
        atomic on its own).
        """
        async with self._lock:
            self._check_open()
            try:
                await uninterruptible(self._writer.executescript(
                    f"PRAGMA incremental_vacuum({int(max_pages)});"))
            except sqlite3.Error as exc:
                typed = storage_error(exc, self.path)
                if typed is not None:
                    raise typed from exc
                raise

    async def _run(self, sql: str) -> None:
        async with self._writer.execute(sql):
            pass

    async def _rollback(self) -> None:
        """Roll back; a ROLLBACK the storage refuses must not hide the error that caused it."""
        try:
            await self._run("ROLLBACK")
        except sqlite3.Error:
            pass        # SQLite rolls back a failed transaction itself when it can; retried

    async def check_writable(self) -> None:
        """Raise StoreReadOnly unless the writer can write: take the lock, change a row, roll back.

        Nothing reaches the disk (the change is rolled back in memory), so it costs no wear and
        also passes on a full disk, which is a state to wait out rather than a refusal to start.
        """
        try:
            await uninterruptible(self._check_writable())
        except StoreReadOnly:
            raise
        except sqlite3.Error as exc:
            typed = storage_error(exc, self.path)
            if isinstance(typed, StorageFull):
                return
            raise StoreReadOnly(f"{self.path}: the database cannot be written ({exc})") from exc

    async def _check_writable(self) -> None:
        async with self._lock:
            self._check_open()
            try:
                await self._run("BEGIN IMMEDIATE")
                await self._run("UPDATE schema_migrations SET version = version")
            finally:
                if self._writer.in_transaction:
                    await self._rollback()

    async def probe(self) -> None:
        """Prove the writer can take the database lock and the reader can read (for the watchdog).

        The probe transaction writes nothing, so it costs no flash wear.
        """
        async with self.write() as tx:
            await tx.fetchone("SELECT max(version) FROM schema_migrations")
        await self.fetchone("SELECT max(version) FROM schema_migrations")

    async def integrity_check(self, *, full: bool = False) -> str:
        """"ok", or the problems SQLite finds (``quick_check``; ``integrity_check`` if `full`)."""
        rows = await self.fetchall("PRAGMA integrity_check" if full else "PRAGMA quick_check")
        return "\n".join(str(r[0]) for r in rows)

    async def close(self) -> None:
        """Wait for the write in flight, then close both connections. Idempotent."""
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            await self._reader.close()
            await self._writer.close()


async def _configure(conn: aiosqlite.Connection) -> None:
    for pragma in (f"busy_timeout = {BUSY_TIMEOUT_MS}", "journal_mode = WAL",
                   "synchronous = FULL", "foreign_keys = ON",
                   "journal_size_limit = 67108864"):
        async with conn.execute(f"PRAGMA {pragma}"):
            pass


def _prepare(path: Path, migrations_dir: Path) -> list[migrate.Migration]:
    """Synchronously set the persistent pragmas and apply migrations before the async connections."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        _incremental_auto_vacuum(conn, path)
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"{path}: cannot switch to WAL mode (got {mode})")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        applied = migrate.apply(conn, migrate.discover(migrations_dir))
        if applied and conn.execute("PRAGMA freelist_count").fetchone()[0]:
            # a migration that rebuilt a table left the old one's pages free: give them back
            # (a script: the pragma frees one page per step)
            with contextlib.suppress(sqlite3.Error):
                conn.executescript("PRAGMA incremental_vacuum;")
        return applied
    finally:
        conn.close()


def _incremental_auto_vacuum(conn: sqlite3.Connection, path: Path) -> None:
    """auto_vacuum = INCREMENTAL, so that `PRAGMA incremental_vacuum` after a retention purge
    gives the freed pages back to the filesystem.

    A new database takes it before its first table. An existing one takes it only through a full
    VACUUM, which rewrites the file and needs as much free space again: it is done once at open
    for a database of at most VACUUM_AT_OPEN_MAX_BYTES; a larger one keeps auto_vacuum = NONE
    (freed pages are reused, the file does not shrink) until `VACUUM` is run by hand while the
    node is stopped. A VACUUM that fails (a full disk) leaves the database as it was.
    """
    if conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2:
        return
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    if not conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
        return                  # new: applies to the tables about to be created
    if path.stat().st_size <= VACUUM_AT_OPEN_MAX_BYTES:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("VACUUM")
