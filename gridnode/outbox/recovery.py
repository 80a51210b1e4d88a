"""The recovery table applied to one operation: count each kind of failure, park when exhausted.

Counters live in `operation_recovery` and change in the same store transaction as the status
they lead to; parking clears them, so an operator's `gridnode outbox retry` starts afresh.
"""

from __future__ import annotations

from typing import Any

from gridnode.config.outbox import RecoveryRule, RecoveryTable
from gridnode.store import WriteTx, operations

# Per-operation kinds beyond the configured table: an order whose PDA index moved under it is
# rebuilt from a fresh read of the market this many times before an operator is asked.
EXTRA_RULES = {"rebuild": RecoveryRule(max=10)}


class Recovery:
    def __init__(self, table: RecoveryTable) -> None:
        self.table = table

    def rule(self, kind: str) -> RecoveryRule:
        return EXTRA_RULES.get(kind) or getattr(self.table, kind)

    async def strike(self, tx: WriteTx, op_id: int, kind: str) -> bool:
        """Count one failure of `kind`; True while the budget allows another try."""
        n = await operations.recovery_count(tx, op_id, kind) + 1
        await operations.set_recovery_count(tx, op_id, kind, n)
        return n <= self.rule(kind).max

    async def park(self, tx: WriteTx, op_id: int, reason: str, details: dict[str, Any]) -> None:
        await operations.move(tx, op_id, "parked", reason=reason, details=details,
                              last_error=reason)
        await operations.clear_recovery(tx, op_id)

    async def fail(self, tx: WriteTx, op_id: int, reason: str, details: dict[str, Any]) -> None:
        """A deterministic failure: the operation ends failed (an operator may retry it)."""
        await operations.move(tx, op_id, "failed", reason=reason, details=details,
                              last_error=reason)
        await operations.clear_recovery(tx, op_id)

    async def done(self, tx: WriteTx, op_id: int, meaning: str, error: str,
                   details: dict[str, Any]) -> None:
        """The program says the operation's effect is already on chain (the row's `done_on`):
        it ends finalized with that meaning as its reason, neither failed nor retried."""
        await operations.move(tx, op_id, "finalized", reason=f"already on chain: {meaning}",
                              details={**details, "already_done": error})
        await operations.clear_recovery(tx, op_id)

    async def retry_pending(self, tx: WriteTx, op_id: int, kind: str, error: str, delay_s: float,
                            details: dict[str, Any] | None = None) -> bool:
        """A pending operation failed before signing: try again after `delay_s`, or park it."""
        if not await self.strike(tx, op_id, kind):
            await self.park(tx, op_id, f"{kind} budget exhausted: {error}", details or {})
            return False
        await operations.defer(tx, [op_id], delay_s, error)
        return True

    async def resign(self, tx: WriteTx, op_id: int, kind: str, reason: str,
                     details: dict[str, Any]) -> bool:
        """Every signature of the operation is dead (expired, or landed failed elsewhere in its
        batch): mark it expired, then back to pending for a new transaction, or park it."""
        await operations.move(tx, op_id, "expired", reason=reason, details=details)
        if not await self.strike(tx, op_id, kind):
            await self.park(tx, op_id, f"{kind} budget exhausted: {reason}", details)
            return False
        await operations.move(tx, op_id, "pending", reason=f"re-sign after {kind}",
                              details=details, last_error=reason)
        await operations.make_due(tx, op_id)
        return True
