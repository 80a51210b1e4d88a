"""The durable store: SQLite (WAL, synchronous=FULL), one writer, audited status changes."""

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
           "StoreReadOnly", "TransitionError", "WriteTx", "dumps", "now_ms", "uninterruptible"]
