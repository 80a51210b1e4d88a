"""Stored answers of the API's POST requests that carried an Idempotency-Key.

An answer is written in the same transaction as the change the request made, so a client that
retries after a lost response gets the first answer, and a crash can never leave a change without
its answer (or an answer without its change). Every SQL statement on `api_idempotency` is here.
"""

from __future__ import annotations

from dataclasses import dataclass

from gridnode.store.db import WriteTx, _Reads, now_ms


@dataclass(frozen=True, slots=True)
class Stored:
    request_sha256: str
    status: int
    body: str           # JSON
    created_at_ms: int


async def get(db: _Reads, subject: str, key: str) -> Stored | None:
    row = await db.fetchone(
        "SELECT request_sha256, status, body, created_at_ms FROM api_idempotency "
        "WHERE subject = ? AND key = ?", (subject, key))
    return None if row is None else Stored(str(row["request_sha256"]), int(row["status"]),
                                           str(row["body"]), int(row["created_at_ms"]))


async def put(tx: WriteTx, subject: str, key: str, request_sha256: str, status: int,
              body: str) -> None:
    await tx.execute(
        "INSERT INTO api_idempotency (subject, key, request_sha256, status, body, created_at_ms) "
        "VALUES (?, ?, ?, ?, ?, ?)", (subject, key, request_sha256, status, body, now_ms()))


async def purge(tx: WriteTx, older_than_ms: int) -> int:
    """Forget answers stored before `older_than_ms`; returns how many."""
    res = await tx.execute("DELETE FROM api_idempotency WHERE created_at_ms < ?",
                           (older_than_ms,))
    return res.rowcount
