"""The outbox's tables in one place: operations, the transactions that carry them, their recovery
counters and the chain events decoded from them.

Every SQL statement on `operations`, `tx_attempts`, `tx_attempt_operations`, `operation_recovery`
and `chain_events` is here, so a query, an index or a schema change is looked up in one module
and the status groups come from `transitions`. Functions take the connection they run on: a
`WriteTx` for changes (inside the caller's transaction, so a change commits together with the
status it leads to), a `Store` or a `WriteTx` for reads. Rows come back as dataclasses. A status
change goes through `move` (`WriteTx.set_status`: checked against the transition table, audited).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from gridnode.store import transitions
from gridnode.store.db import StoreError, WriteTx, _Reads, dumps, now_ms

Reader = _Reads          # a Store (committed data) or a WriteTx (inside the transaction)
ENTITY = "operation"     # the audit log's and the transition table's name for an operation


class OperationNotFound(StoreError):
    def __init__(self, op_id: int) -> None:
        super().__init__(f"no operation {op_id}")
        self.op_id = op_id


class NotRetryable(StoreError):
    def __init__(self, op_id: int, status: str) -> None:
        super().__init__(
            f"operation {op_id} is {status}; an operator may retry only "
            f"{', '.join(sorted(transitions.OPERATOR_RETRYABLE))} operations")
        self.op_id = op_id
        self.status = status


# -- rows ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class NewOperation:
    """An operation to enqueue: `payload` is JSON-ready (see gridnode.chain.txtypes.new_operation)."""

    tx_type: str
    payload: Mapping[str, Any]
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class Operation:
    """One row of `operations`, its payload decoded from JSON."""

    id: int
    tx_type: str
    payload: dict[str, Any]
    idempotency_key: str
    status: str
    attempts: int
    last_error: str | None
    next_attempt_at_ms: int | None
    created_at_ms: int
    updated_at_ms: int
    submitted_at_ms: int | None
    confirmed_at_ms: int | None
    finalized_at_ms: int | None


@dataclass(frozen=True, slots=True)
class NewAttempt:
    """A signed transaction, persisted before it is first sent."""

    signature: str
    serialized: bytes
    blockhash: str
    last_valid_block_height: int
    compute_unit_limit: int
    priority_fee_micro_lamports: int


@dataclass(frozen=True, slots=True)
class TxAttempt:
    """One row of `tx_attempts`: a signed transaction and what was observed of it (its bytes are
    in `tx_bytes` until retention deletes them)."""

    signature: str
    blockhash: str
    last_valid_block_height: int
    compute_unit_limit: int | None
    priority_fee_micro_lamports: int | None
    created_at_ms: int
    first_sent_at_ms: int | None
    last_sent_at_ms: int | None
    send_count: int
    observed_status: str
    slot: int | None
    err: str | None
    fee_lamports: int | None
    observed_at_ms: int | None


@dataclass(slots=True)
class Attempt:
    """A transaction the monitor follows, with the operations it carries."""

    signature: str
    serialized: bytes
    last_valid_block_height: int
    observed: str
    ops: list[tuple[int, int]] = field(default_factory=list)  # (op id, first ix), by ix index

    def op_at(self, ix_index: int | None) -> int | None:
        """The operation whose instructions include `ix_index` (None: not known)."""
        if ix_index is None:
            return None
        owner = None
        for op_id, first in self.ops:
            if first <= ix_index:
                owner = op_id
        return owner


@dataclass(frozen=True, slots=True)
class Sendable:
    """A transaction that may still land, to be broadcast (again)."""

    signature: str
    serialized: bytes
    last_valid_block_height: int
    observed_status: str


@dataclass(frozen=True, slots=True)
class ChainEvent:
    """An Anchor event decoded from a finalized transaction."""

    signature: str
    operation_id: int | None
    program_id: str
    name: str
    data: str            # JSON
    slot: int | None


CHAIN_EVENT_COLUMNS = "signature, operation_id, program_id, name, data, slot"


def chain_event(r: Any) -> ChainEvent:
    """A ChainEvent from a row of CHAIN_EVENT_COLUMNS."""
    return ChainEvent(r["signature"], r["operation_id"], r["program_id"], r["name"], r["data"],
                      r["slot"])


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One audited status change of an operation."""

    at_ms: int
    old_status: str | None
    new_status: str
    reason: str
    details: str | None   # JSON


def _marks(n: int) -> str:
    return ",".join("?" * n)


_OP_COLUMNS = ", ".join(f.name for f in fields(Operation))
_ATTEMPT_COLUMNS = ", ".join(f"a.{f.name}" for f in fields(TxAttempt))


def _operation(row: Any) -> Operation:
    values = {f.name: row[f.name] for f in fields(Operation)}
    values["payload"] = json.loads(values["payload"])
    return Operation(**values)


# -- operations --------------------------------------------------------------------------------

async def add(tx: WriteTx, op: NewOperation, status: str = transitions.PENDING,
              details: Mapping[str, Any] | None = None) -> tuple[int, bool]:
    """Insert an operation as `status` (`pending`, or `created` to wait for a submit) unless its
    idempotency key exists: (id, created). `details` (what the row does not hold) go to its
    audit row."""
    if status not in transitions.INITIAL:
        raise StoreError(f"an operation starts as one of {sorted(transitions.INITIAL)}, "
                         f"not {status!r}")
    ts = now_ms()
    res = await tx.execute(
        "INSERT INTO operations (tx_type, payload, idempotency_key, status, created_at_ms, "
        "updated_at_ms) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (idempotency_key) DO NOTHING",
        (op.tx_type, dumps(op.payload), op.idempotency_key, status, ts, ts))
    if res.rowcount == 1 and res.lastrowid is not None:
        await tx._audit(ENTITY, res.lastrowid, None, status, "created", details or None, ts)
        return res.lastrowid, True
    row = await tx.fetchone("SELECT id FROM operations WHERE idempotency_key = ?",
                            (op.idempotency_key,))
    assert row is not None  # the conflict that skipped the insert is this row
    return int(row["id"]), False


async def move(tx: WriteTx, op_id: int, new: str, *, reason: str,
               details: Mapping[str, Any] | None = None, last_error: str | None = None) -> str:
    """Move an operation to `new` (checked and audited); returns the old status."""
    return await tx.set_status(ENTITY, op_id, new, reason=reason, details=details,
                               last_error=last_error)


async def get(db: Reader, op_id: int) -> Operation | None:
    row = await db.fetchone(f"SELECT {_OP_COLUMNS} FROM operations WHERE id = ?", (op_id,))
    return None if row is None else _operation(row)


async def by_key(db: Reader, idempotency_key: str) -> Operation | None:
    row = await db.fetchone(f"SELECT {_OP_COLUMNS} FROM operations WHERE idempotency_key = ?",
                            (idempotency_key,))
    return None if row is None else _operation(row)


async def due(db: Reader, limit: int, at_ms: int | None = None) -> list[Operation]:
    """Pending operations whose next attempt is due, oldest first."""
    rows = await db.fetchall(
        f"SELECT {_OP_COLUMNS} FROM operations WHERE status = ? "
        "AND (next_attempt_at_ms IS NULL OR next_attempt_at_ms <= ?) ORDER BY id LIMIT ?",
        (transitions.PENDING, now_ms() if at_ms is None else at_ms, limit))
    return [_operation(r) for r in rows]


async def status_counts(db: Reader) -> dict[str, int]:
    """Number of operations in each status (only statuses that occur), by status name."""
    rows = await db.fetchall(
        "SELECT status, count(*) AS n FROM operations GROUP BY status ORDER BY status")
    return {str(r["status"]): int(r["n"]) for r in rows}


async def status_counts_by_type(db: Reader) -> dict[str, dict[str, int]]:
    """Number of operations in each status, per tx type (only what occurs)."""
    rows = await db.fetchall(
        "SELECT tx_type, status, count(*) AS n FROM operations GROUP BY tx_type, status "
        "ORDER BY tx_type, status")
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        out.setdefault(str(r["tx_type"]), {})[str(r["status"])] = int(r["n"])
    return out


async def oldest(db: Reader, status: str) -> Operation | None:
    """The operation that has been longest in `status`'s queue (by creation)."""
    row = await db.fetchone(
        f"SELECT {_OP_COLUMNS} FROM operations WHERE status = ? ORDER BY created_at_ms, id "
        "LIMIT 1", (status,))
    return None if row is None else _operation(row)


async def newest(db: Reader, limit: int, status: str | None = None) -> list[Operation]:
    """The last `limit` operations, newest first, optionally only those in `status`."""
    where, params = ("WHERE status = ?", [status]) if status else ("", [])
    rows = await db.fetchall(
        f"SELECT {_OP_COLUMNS} FROM operations {where} ORDER BY id DESC LIMIT ?",
        [*params, limit])
    return [_operation(r) for r in rows]


async def get_many(db: Reader, op_ids: Collection[int]) -> dict[int, Operation]:
    """The current rows of `op_ids` (missing ones are left out)."""
    if not op_ids:
        return {}
    rows = await db.fetchall(
        f"SELECT {_OP_COLUMNS} FROM operations WHERE id IN ({_marks(len(op_ids))})",
        list(op_ids))
    return {int(r["id"]): _operation(r) for r in rows}


async def in_status(db: Reader, op_ids: Collection[int], wanted: Collection[str]) -> list[int]:
    """Those of `op_ids` whose status is one of `wanted`."""
    if not op_ids or not wanted:
        return []
    rows = await db.fetchall(
        f"SELECT id FROM operations WHERE id IN ({_marks(len(op_ids))}) "
        f"AND status IN ({_marks(len(wanted))}) ORDER BY id", [*op_ids, *wanted])
    return [int(r["id"]) for r in rows]


async def defer(tx: WriteTx, op_ids: Iterable[int], delay_s: float, error: str) -> None:
    """Not before `delay_s` from now: the next attempt of pending operations, and why."""
    ts = now_ms()
    await tx.executemany(
        "UPDATE operations SET next_attempt_at_ms = ?, last_error = ?, updated_at_ms = ? "
        "WHERE id = ?", [(ts + int(delay_s * 1000), error, ts, op_id) for op_id in op_ids])


async def make_due(tx: WriteTx, op_id: int) -> None:
    """The operation may be built again right away (after it went back to pending)."""
    await tx.execute("UPDATE operations SET next_attempt_at_ms = NULL WHERE id = ?", (op_id,))


async def operator_retry(tx: WriteTx, op_id: int, note: str | None = None) -> str:
    """An operator sends a failed, parked or expired operation back to pending, with a fresh
    attempt count; returns the status it had. Raises OperationNotFound or NotRetryable."""
    row = await tx.fetchone("SELECT status FROM operations WHERE id = ?", (op_id,))
    if row is None:
        raise OperationNotFound(op_id)
    old = str(row["status"])
    if old not in transitions.OPERATOR_RETRYABLE:
        raise NotRetryable(op_id, old)
    await move(tx, op_id, transitions.PENDING, reason="operator retry",
               details={"note": note} if note else None)
    await tx.execute("UPDATE operations SET attempts = 0, next_attempt_at_ms = NULL "
                     "WHERE id = ?", (op_id,))
    return old


async def history(db: Reader, op_id: int) -> list[HistoryEntry]:
    """The audited status changes of an operation, oldest first."""
    rows = await db.fetchall(
        "SELECT at_ms, old_status, new_status, reason, details FROM audit_log "
        "WHERE entity = ? AND entity_id = ? ORDER BY id", (ENTITY, op_id))
    return [HistoryEntry(int(r["at_ms"]), r["old_status"], r["new_status"], r["reason"],
                         r["details"]) for r in rows]


# -- transactions ------------------------------------------------------------------------------

async def record_signed(tx: WriteTx, attempt: NewAttempt, ops: Sequence[tuple[int, int]]) -> None:
    """Persist a signed transaction and move the operations it carries, given as (op id, first
    instruction index), to `signed`: all before the first send."""
    ts = now_ms()
    res = await tx.execute(
        "INSERT INTO tx_attempts (signature, blockhash, last_valid_block_height, "
        "compute_unit_limit, priority_fee_micro_lamports, created_at_ms) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (attempt.signature, attempt.blockhash, attempt.last_valid_block_height,
         attempt.compute_unit_limit, attempt.priority_fee_micro_lamports, ts))
    await tx.execute("INSERT INTO tx_bytes (attempt_id, serialized) VALUES (?, ?)",
                     (res.lastrowid, attempt.serialized))
    # The audit row names the attempt; its blockhash, limits and batch are on the attempt's rows.
    details = {"signature": attempt.signature}
    for op_id, ix_index in ops:
        await tx.execute(
            "INSERT INTO tx_attempt_operations (attempt_id, operation_id, ix_index) "
            "VALUES (?, ?, ?)", (res.lastrowid, op_id, ix_index))
        await move(tx, op_id, "signed", reason="signed", details=details)
        await tx.execute(
            "UPDATE operations SET attempts = attempts + 1, next_attempt_at_ms = NULL "
            "WHERE id = ?", (op_id,))


async def carried_by(db: Reader, signature: str, wanted: Collection[str]) -> list[int]:
    """The operations a transaction carries whose status is one of `wanted`."""
    rows = await db.fetchall(
        "SELECT o.id FROM operations o JOIN tx_attempt_operations t ON t.operation_id = o.id "
        "JOIN tx_attempts a ON a.id = t.attempt_id "
        f"WHERE a.signature = ? AND o.status IN ({_marks(len(wanted))}) ORDER BY o.id",
        (signature, *wanted))
    return [int(r["id"]) for r in rows]


async def record_sent(tx: WriteTx, signature: str) -> list[int]:
    """A send of this transaction was accepted by an endpoint: the operations it carries that
    were not sent yet become `submitted` (returned). The signature is in their `signed` row."""
    ts = now_ms()
    await tx.execute(
        "UPDATE tx_attempts SET observed_status = CASE observed_status WHEN 'unsent' "
        "THEN 'sent' ELSE observed_status END, first_sent_at_ms = COALESCE(first_sent_at_ms, ?), "
        "last_sent_at_ms = ?, send_count = send_count + 1 WHERE signature = ?",
        (ts, ts, signature))
    moved = await carried_by(tx, signature, transitions.UNSENT)
    for op_id in moved:
        await move(tx, op_id, "submitted", reason="sent")
    return moved


async def sendable(db: Reader) -> list[Sendable]:
    """The transactions of unlanded operations not yet seen on chain: re-broadcast them."""
    ops, sent = sorted(transitions.UNLANDED), sorted(transitions.ATTEMPT_SENDABLE)
    rows = await db.fetchall(
        "SELECT DISTINCT a.signature, b.serialized, a.last_valid_block_height, a.observed_status "
        "FROM tx_attempts a JOIN tx_bytes b ON b.attempt_id = a.id "
        "JOIN tx_attempt_operations t ON t.attempt_id = a.id "
        "JOIN operations o ON o.id = t.operation_id "
        f"WHERE o.status IN ({_marks(len(ops))}) AND a.observed_status IN ({_marks(len(sent))})",
        [*ops, *sent])
    return [Sendable(r["signature"], bytes(r["serialized"]), int(r["last_valid_block_height"]),
                     r["observed_status"]) for r in rows]


async def in_flight(db: Reader) -> dict[str, Attempt]:
    """Every transaction of every in-flight operation, with all the operations it carries."""
    wanted = sorted(transitions.IN_FLIGHT)
    rows = await db.fetchall(
        "SELECT a.signature, b.serialized, a.last_valid_block_height, a.observed_status, "
        "t.operation_id, t.ix_index FROM tx_attempts a JOIN tx_bytes b ON b.attempt_id = a.id "
        "JOIN tx_attempt_operations t ON t.attempt_id = a.id "
        "WHERE t.attempt_id IN (SELECT t2.attempt_id FROM tx_attempt_operations t2 "
        "  JOIN operations o ON o.id = t2.operation_id "
        f"  WHERE o.status IN ({_marks(len(wanted))})) "
        "ORDER BY a.signature, t.ix_index", wanted)
    out: dict[str, Attempt] = {}
    for r in rows:
        a = out.get(r["signature"])
        if a is None:
            a = out[r["signature"]] = Attempt(r["signature"], bytes(r["serialized"]),
                                              int(r["last_valid_block_height"]),
                                              r["observed_status"])
        a.ops.append((int(r["operation_id"]), int(r["ix_index"])))
    return out


async def record_observed(tx: WriteTx, signature: str, observed: str, slot: int | None,
                          err: Any) -> None:
    """What the chain says of a transaction now (err: the transaction error, JSON-able)."""
    await tx.execute(
        "UPDATE tx_attempts SET observed_status = ?, slot = COALESCE(?, slot), err = ?, "
        "observed_at_ms = ? WHERE signature = ?",
        (observed, slot, None if err is None else json.dumps(err), now_ms(), signature))


async def finalize(tx: WriteTx, signature: str, fee_lamports: int | None, slot: int | None,
                   events: Sequence[ChainEvent], op_ids: Sequence[int]) -> list[int]:
    """A transaction is finalized: record it (`record_finalized`) and move those of `op_ids`
    still in flight to `finalized` (returned). Signature, slot and events stay on their rows."""
    await record_finalized(tx, signature, fee_lamports, slot, events)
    moved = await in_status(tx, op_ids, transitions.IN_FLIGHT)
    for op_id in moved:
        await move(tx, op_id, "finalized", reason="finalized")
    return moved


async def record_finalized(tx: WriteTx, signature: str, fee_lamports: int | None,
                           slot: int | None, events: Sequence[ChainEvent]) -> None:
    """A transaction is finalized: its fee and slot, and the events decoded from its log."""
    await tx.executemany(
        "INSERT OR IGNORE INTO chain_events (signature, seq, operation_id, program_id, name, "
        "data, slot) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(e.signature, seq, e.operation_id, e.program_id, e.name, e.data, e.slot)
         for seq, e in enumerate(events)])
    await tx.execute(
        "UPDATE tx_attempts SET observed_status = 'finalized', fee_lamports = ?, slot = ?, "
        "observed_at_ms = ? WHERE signature = ?", (fee_lamports, slot, now_ms(), signature))


async def attempts_of(db: Reader, op_id: int) -> list[TxAttempt]:
    """Every transaction ever signed for an operation, oldest first."""
    rows = await db.fetchall(
        f"SELECT {_ATTEMPT_COLUMNS} FROM tx_attempts a "
        "JOIN tx_attempt_operations o ON o.attempt_id = a.id "
        "WHERE o.operation_id = ? ORDER BY a.created_at_ms", (op_id,))
    return [TxAttempt(**{f.name: r[f.name] for f in fields(TxAttempt)}) for r in rows]


async def attempt_count(db: Reader) -> int:
    """Number of transactions ever signed (each is kept, landed or not)."""
    row = await db.fetchone("SELECT count(*) AS n FROM tx_attempts")
    return int(row["n"]) if row is not None else 0


async def events(db: Reader, name: str) -> list[ChainEvent]:
    """The decoded chain events called `name`, in the order they were recorded."""
    rows = await db.fetchall(
        f"SELECT {CHAIN_EVENT_COLUMNS} FROM chain_events WHERE name = ? ORDER BY id", (name,))
    return [chain_event(r) for r in rows]


# -- recovery counters -------------------------------------------------------------------------

async def recovery_count(db: Reader, op_id: int, kind: str) -> int:
    row = await db.fetchone(
        "SELECT count FROM operation_recovery WHERE operation_id = ? AND kind = ?", (op_id, kind))
    return int(row["count"]) if row else 0


async def set_recovery_count(tx: WriteTx, op_id: int, kind: str, count: int) -> None:
    await tx.execute(
        "INSERT INTO operation_recovery (operation_id, kind, count) VALUES (?, ?, ?) "
        "ON CONFLICT (operation_id, kind) DO UPDATE SET count = excluded.count",
        (op_id, kind, count))


async def clear_recovery(tx: WriteTx, op_id: int) -> None:
    await tx.execute("DELETE FROM operation_recovery WHERE operation_id = ?", (op_id,))


async def max_recovery_count(db: Reader, op_ids: Collection[int], kind: str) -> int:
    """The highest count of `kind` among `op_ids` (0 when none was counted)."""
    if not op_ids:
        return 0
    row = await db.fetchone(
        "SELECT max(count) AS n FROM operation_recovery WHERE kind = ? "
        f"AND operation_id IN ({_marks(len(op_ids))})", [kind, *op_ids])
    return int(row["n"]) if row is not None and row["n"] is not None else 0
