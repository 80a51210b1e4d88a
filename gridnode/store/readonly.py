"""Reading a database that another process owns (the running daemon's), never writing to it.

`Store.open` creates the file, applies migrations and opens the writer: right for the daemon and
the operator's commands, wrong for a watcher beside a running node, which must neither migrate
nor create the file while the node is starting. A `ReadOnlyStore` answers the same repository
reads (gridnode.store.operations, gridnode.store.meters) on one read-only connection.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiosqlite

from gridnode.store.db import BUSY_TIMEOUT_MS, StoreError, _Reads


class ReadOnlyStore(_Reads):
    """Committed data of an existing database; open with ``await ReadOnlyStore.open(path)``."""

    def __init__(self, path: Path, conn: aiosqlite.Connection) -> None:
        self.path = path
        self._conn = conn
        self._closed = False

    @classmethod
    async def open(cls, path: str | Path) -> ReadOnlyStore:
        """Open `path` read-only; StoreError when there is no database file there."""
        path = Path(path)
        if not path.is_file():
            raise StoreError(f"no database at {path}")
        conn = await aiosqlite.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        try:
            await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await conn.execute("PRAGMA query_only = ON")
        except BaseException:
            await conn.close()
            raise
        conn.row_factory = sqlite3.Row
        return cls(path, conn)

    async def close(self) -> None:
        """Idempotent."""
        if not self._closed:
            self._closed = True
            await self._conn.close()

    async def __aenter__(self) -> ReadOnlyStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
