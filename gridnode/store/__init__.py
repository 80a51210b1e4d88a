"""The durable store: SQLite (WAL, synchronous=FULL), one writer, audited status changes.

``Store`` (db) opens the database and runs the one writer. The modules next to it hold the SQL
of each group of tables: ``operations`` the outbox, ``meters`` the reads of the meters' tables
for status displays, ``migrate`` the schema; ``transitions`` is the status table every change
is checked against, and ``readonly`` opens a database another process owns, for reading only.
"""

from gridnode.store.db import (
    ExecResult,
    StorageFull,
    StorageIOError,
    Store,
    StoreError,
    StoreReadOnly,
    TransitionError,
    WriteTx,
    dumps,
    now_ms,
    uninterruptible,
)
from gridnode.store.migrate import MigrationError

__all__ = ["ExecResult", "MigrationError", "StorageFull", "StorageIOError", "Store", "StoreError",
           "StoreReadOnly", "TransitionError", "WriteTx", "dumps", "now_ms", "uninterruptible",
           # the modules that hold the SQL of each group of tables
           "meters", "migrate", "operations", "readonly", "transitions"]
