"""The recovery table applied to one operation: count each kind of failure, park when exhausted.

Counters live in `operation_recovery` and change in the same store transaction as the status
they lead to; parking clears them, so an operator's `gridnode outbox retry` starts afresh.
"""

from __future__ import annotations

from typing import Any

from gridnode.config.outbox import RecoveryRule, RecoveryTable
from gridnode.store import WriteTx, now_ms

# Per-operation kinds beyond the configured table: an order whose PDA index moved under it is
# rebuilt from a fresh read of the market this many times before an operator is asked.
EXTRA_RULES = {"rebuild": RecoveryRule(action="revalidate", max=10)}


class Recovery:
    def __init__(self, table: RecoveryTable) -> None:
        self.table = table

    def rule(self, kind: str) -> RecoveryRule:
        return EXTRA_RULES.get(kind) or getattr(self.table, kind)

    async def count(self, tx: WriteTx, op_id: int, kind: str) -> int:
        row = await tx.fetchone(
            "SELECT count FROM operation_recovery WHERE operation_id = ? AND kind = ?",
            (op_id, kind))
        return int(row["count"]) if row else 0

    async def strike(self, tx: WriteTx, op_id: int, kind: str) -> bool:
        """Count one failure of `kind`; True while the budget allows another try."""
        n = await self.count(tx, op_id, kind) + 1
        await tx.execute(
            "INSERT INTO operation_recovery (operation_id, kind, count) VALUES (?, ?, ?) "
            "ON CONFLICT (operation_id, kind) DO UPDATE SET count = excluded.count",
            (op_id, kind, n))
        return n <= self.rule(kind).max

    async def park(self, tx: WriteTx, op_id: int, reason: str, details: dict[str, Any]) -> None:
        await tx.set_status("operation", op_id, "parked", reason=reason, details=details,
                            last_error=reason)
        await tx.execute("DELETE FROM operation_recovery WHERE operation_id = ?", (op_id,))

    async def fail(self, tx: WriteTx, op_id: int, reason: str, details: dict[str, Any]) -> None:
        """A deterministic failure: the operation ends failed (an operator may retry it)."""
        await tx.set_status("operation", op_id, "failed", reason=reason, details=details,
                            last_error=reason)
        await tx.execute("DELETE FROM operation_recovery WHERE operation_id = ?", (op_id,))

    async def retry_pending(self, tx: WriteTx, op_id: int, kind: str, error: str, delay_s: float,
                            details: dict[str, Any] | None = None) -> bool:
        """A pending operation failed before signing: try again after `delay_s`, or park it."""
        if not await self.strike(tx, op_id, kind):
            await self.park(tx, op_id, f"{kind} budget exhausted: {error}", details or {})
            return False
        await tx.execute(
            "UPDATE operations SET next_attempt_at_ms = ?, last_error = ?, updated_at_ms = ? "
            "WHERE id = ?", (now_ms() + int(delay_s * 1000), error, now_ms(), op_id))
        return True

    async def resign(self, tx: WriteTx, op_id: int, kind: str, reason: str,
                     details: dict[str, Any]) -> bool:
        """Every signature of the operation is dead (expired, or landed failed elsewhere in its
        batch): mark it expired, then back to pending for a new transaction, or park it."""
        await tx.set_status("operation", op_id, "expired", reason=reason, details=details)
        if not await self.strike(tx, op_id, kind):
            await self.park(tx, op_id, f"{kind} budget exhausted: {reason}", details)
            return False
        await tx.set_status("operation", op_id, "pending", reason=f"re-sign after {kind}",
                            details=details, last_error=reason)
        await tx.execute("UPDATE operations SET next_attempt_at_ms = NULL WHERE id = ?", (op_id,))
        return True
