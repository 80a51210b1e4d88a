"""The settlements table: one row per matched trade with a local seller, and its state.

Every SQL statement on `settlements` is here. A row is written together with its settle_trade
operation (one transaction), so a settlement never exists without the operation that settles it
nor the other way round. Status changes go through the transition table (`settlement` in
gridnode.store.transitions) with an audit row; settling and defaulting also append their event
(`settlement.completed`, `settlement.defaulted`) in the same transaction. Nothing is deleted: an
operator retries a defaulted settlement or writes it off.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from gridnode.store import events, operations, transitions
from gridnode.store.db import StoreError, WriteTx, _Reads, dumps, now_ms
from gridnode.store.operations import HistoryEntry, NewOperation

Reader = _Reads
ENTITY = "settlement"
WH_BASE_UNITS = 10**6           # GRID base units per Wh (9 decimals, 1 GRID = 1 kWh)


class SettlementNotFound(StoreError):
    def __init__(self, settlement_id: int) -> None:
        super().__init__(f"no settlement {settlement_id}")
        self.settlement_id = settlement_id


class NotDefaulted(StoreError):
    def __init__(self, settlement_id: int, status: str, what: str) -> None:
        super().__init__(f"settlement {settlement_id} is {status}; only a defaulted settlement "
                         f"can be {what}")
        self.status = status


@dataclass(frozen=True, slots=True)
class Trade:
    """What a TradeRecord (or its OrderMatched event) says; amounts as the program keeps them."""

    trade_record: str
    buy_order: str
    sell_order: str
    buyer: str
    seller: str
    energy_wh: int
    price_per_kwh: int
    total_value: int
    fee: int
    epoch: int | None = None

    @property
    def net_to_seller(self) -> int:
        return self.total_value - self.fee

    @property
    def token_amount(self) -> int:
        return self.energy_wh * WH_BASE_UNITS


@dataclass(frozen=True, slots=True)
class Settlement:
    id: int
    trade_record: str
    operation_id: int | None
    status: str
    buy_order: str
    sell_order: str
    buyer: str
    seller: str
    energy_wh: int
    price_per_kwh: int
    total_value: int
    fee: int
    net_to_seller: int
    token_amount: int
    epoch: int | None
    signature: str | None
    attempts: int
    last_error: str | None
    next_attempt_at_ms: int | None
    created_at_ms: int
    updated_at_ms: int
    settled_at_ms: int | None
    reversal: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Working:
    """A settlement the node still works on, with its operation's state."""

    settlement: Settlement
    op_status: str | None
    op_error: str | None


_COLUMNS = ", ".join(f.name for f in fields(Settlement))


def _row(r: Any) -> Settlement:
    values = {f.name: r[f.name] for f in fields(Settlement)}
    values["reversal"] = json.loads(values["reversal"]) if values["reversal"] else None
    return Settlement(**values)


def _marks(n: int) -> str:
    return ",".join("?" * n)


async def add(tx: WriteTx, trade: Trade, op: NewOperation, *, source: str) -> tuple[int, bool]:
    """The settlement of `trade` and its settle_trade operation, unless the trade record has one
    already: (settlement id, created). `source` says how it was found (for the audit row)."""
    row = await tx.fetchone("SELECT id FROM settlements WHERE trade_record = ?",
                            (trade.trade_record,))
    if row is not None:
        return int(row["id"]), False
    op_id, _ = await operations.add(tx, op, details={"trade_record": trade.trade_record})
    ts = now_ms()
    res = await tx.execute(
        "INSERT INTO settlements (trade_record, operation_id, status, payload, buy_order, "
        "sell_order, buyer, seller, energy_wh, price_per_kwh, total_value, fee, net_to_seller, "
        "token_amount, epoch, created_at_ms, updated_at_ms) "
        "VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (trade.trade_record, op_id, dumps(op.payload), trade.buy_order, trade.sell_order,
         trade.buyer, trade.seller, trade.energy_wh, trade.price_per_kwh, trade.total_value,
         trade.fee, trade.net_to_seller, trade.token_amount, trade.epoch, ts, ts))
    assert res.lastrowid is not None
    await tx._audit(ENTITY, res.lastrowid, None, "queued", f"trade found ({source})",
                    {"trade_record": trade.trade_record, "operation_id": op_id}, ts)
    return res.lastrowid, True


async def get(db: Reader, settlement_id: int) -> Settlement | None:
    r = await db.fetchone(f"SELECT {_COLUMNS} FROM settlements WHERE id = ?", (settlement_id,))
    return None if r is None else _row(r)


async def by_trade(db: Reader, trade_record: str) -> Settlement | None:
    r = await db.fetchone(f"SELECT {_COLUMNS} FROM settlements WHERE trade_record = ?",
                          (trade_record,))
    return None if r is None else _row(r)


async def known_trades(db: Reader, trade_records: Collection[str]) -> set[str]:
    """Those of `trade_records` that have a settlement row."""
    if not trade_records:
        return set()
    rows = await db.fetchall(
        f"SELECT trade_record FROM settlements WHERE trade_record IN "
        f"({_marks(len(trade_records))})", list(trade_records))
    return {str(r["trade_record"]) for r in rows}


async def newest(db: Reader, limit: int, status: str | None = None) -> list[Settlement]:
    where, params = ("WHERE status = ?", [status]) if status else ("", [])
    rows = await db.fetchall(
        f"SELECT {_COLUMNS} FROM settlements {where} ORDER BY id DESC LIMIT ?", [*params, limit])
    return [_row(r) for r in rows]


async def all_rows(db: Reader) -> list[Settlement]:
    rows = await db.fetchall(f"SELECT {_COLUMNS} FROM settlements ORDER BY id")
    return [_row(r) for r in rows]


async def working(db: Reader) -> list[Working]:
    """Queued and submitted settlements with their operation's status and error, oldest first."""
    cols = ", ".join(f"s.{f.name}" for f in fields(Settlement))
    wanted = sorted(transitions.SETTLEMENT_QUEUE)
    rows = await db.fetchall(
        f"SELECT {cols}, o.status AS op_status, o.last_error AS op_error FROM settlements s "
        f"LEFT JOIN operations o ON o.id = s.operation_id "
        f"WHERE s.status IN ({_marks(len(wanted))}) ORDER BY s.id", wanted)
    return [Working(_row(r), r["op_status"], r["op_error"]) for r in rows]


async def queue_count(db: Reader) -> int:
    wanted = sorted(transitions.SETTLEMENT_QUEUE)
    r = await db.fetchone(
        f"SELECT count(*) AS n FROM settlements WHERE status IN ({_marks(len(wanted))})", wanted)
    return int(r["n"]) if r is not None else 0


async def status_counts(db: Reader) -> dict[str, int]:
    rows = await db.fetchall(
        "SELECT status, count(*) AS n FROM settlements GROUP BY status ORDER BY status")
    return {str(r["status"]): int(r["n"]) for r in rows}


async def move(tx: WriteTx, settlement_id: int, new: str, *, reason: str,
               details: Mapping[str, Any] | None = None, last_error: str | None = None) -> str:
    """Move a settlement to `new` (checked against the transition table, audited)."""
    return await tx.set_status(ENTITY, settlement_id, new, reason=reason, details=details,
                               last_error=last_error)


async def mark_submitted(tx: WriteTx, settlement_id: int, signature: str | None) -> None:
    await move(tx, settlement_id, "submitted", reason="settle_trade signed",
               details={"signature": signature})
    await tx.execute("UPDATE settlements SET signature = ? WHERE id = ?",
                     (signature, settlement_id))


async def mark_settled(tx: WriteTx, settlement_id: int, signature: str | None,
                       reason: str = "settle_trade finalized") -> Settlement:
    """Settled (from queued through submitted when the signing was not seen): the event
    `settlement.completed` with the row's fields, in this transaction."""
    current = await get(tx, settlement_id)
    if current is None:
        raise SettlementNotFound(settlement_id)
    if current.status == "queued":
        await mark_submitted(tx, settlement_id, signature)
    ts = now_ms()
    await move(tx, settlement_id, "settled", reason=reason, details={"signature": signature})
    await tx.execute(
        "UPDATE settlements SET settled_at_ms = ?, signature = COALESCE(?, signature), "
        "next_attempt_at_ms = NULL WHERE id = ?", (ts, signature, settlement_id))
    done = await get(tx, settlement_id)
    assert done is not None
    await events.append(tx, events.EventType.SETTLEMENT_COMPLETED, done.to_json(), at_ms=ts,
                        operation_id=done.operation_id)
    return done


async def record_failure(tx: WriteTx, settlement_id: int, error: str,
                         retry_at_ms: int | None) -> int:
    """One more failed attempt (and when the next may run); returns the attempt count."""
    await tx.execute(
        "UPDATE settlements SET attempts = attempts + 1, last_error = ?, next_attempt_at_ms = ?, "
        "updated_at_ms = ? WHERE id = ?", (error, retry_at_ms, now_ms(), settlement_id))
    r = await tx.fetchone("SELECT attempts FROM settlements WHERE id = ?", (settlement_id,))
    return int(r["attempts"]) if r is not None else 0


async def clear_retry(tx: WriteTx, settlement_id: int) -> None:
    await tx.execute("UPDATE settlements SET next_attempt_at_ms = NULL WHERE id = ?",
                     (settlement_id,))


async def requeue_operation(tx: WriteTx, op_id: int, *, reason: str,
                            details: Mapping[str, Any] | None = None) -> None:
    """A settlement's failed or parked settle_trade operation goes back to pending for one more
    attempt of the settlement's budget, with a fresh outbox budget (audited)."""
    await operations.move(tx, op_id, transitions.PENDING, reason=reason, details=details)
    await tx.execute("UPDATE operations SET attempts = 0, next_attempt_at_ms = NULL "
                     "WHERE id = ?", (op_id,))
    await operations.clear_recovery(tx, op_id)


async def default(tx: WriteTx, settlement_id: int, reason: str,
                  reversal: Mapping[str, Any]) -> Settlement:
    """Defaulted with its reversal record; the event `settlement.defaulted`, in this
    transaction."""
    ts = now_ms()
    await move(tx, settlement_id, "defaulted", reason=reason, details=reversal,
               last_error=reason)
    await tx.execute("UPDATE settlements SET reversal = ?, next_attempt_at_ms = NULL WHERE id = ?",
                     (dumps(reversal), settlement_id))
    done = await get(tx, settlement_id)
    assert done is not None
    await events.append(tx, events.EventType.SETTLEMENT_DEFAULTED, done.to_json(), at_ms=ts,
                        operation_id=done.operation_id)
    return done


async def operator_retry(tx: WriteTx, settlement_id: int, note: str | None = None) -> Settlement:
    """An operator sends a defaulted settlement back to the queue with a fresh budget; its
    settle_trade operation goes back to pending if it had ended. The reversal record stays (it
    is history); it no longer applies once the settlement is settled."""
    s = await get(tx, settlement_id)
    if s is None:
        raise SettlementNotFound(settlement_id)
    if s.status != "defaulted":
        raise NotDefaulted(settlement_id, s.status, "retried")
    await move(tx, settlement_id, "queued", reason="operator retry",
               details={"note": note} if note else None)
    await tx.execute("UPDATE settlements SET attempts = 0, next_attempt_at_ms = NULL, "
                     "signature = NULL WHERE id = ?", (settlement_id,))
    if s.operation_id is not None:
        op = await operations.get(tx, s.operation_id)
        if op is not None and op.status in transitions.OPERATOR_RETRYABLE:
            await operations.operator_retry(tx, s.operation_id, f"settlement {settlement_id} "
                                            f"retried" + (f": {note}" if note else ""))
    done = await get(tx, settlement_id)
    assert done is not None
    return done


async def write_off(tx: WriteTx, settlement_id: int, note: str | None = None) -> Settlement:
    """An operator accepts that a defaulted settlement will never be settled (audited)."""
    s = await get(tx, settlement_id)
    if s is None:
        raise SettlementNotFound(settlement_id)
    if s.status != "defaulted":
        raise NotDefaulted(settlement_id, s.status, "written off")
    await move(tx, settlement_id, "written_off", reason="operator write-off",
               details={"note": note} if note else None)
    done = await get(tx, settlement_id)
    assert done is not None
    return done


async def history(db: Reader, settlement_id: int) -> list[HistoryEntry]:
    rows = await db.fetchall(
        "SELECT at_ms, old_status, new_status, reason, details FROM audit_log "
        "WHERE entity = ? AND entity_id = ? ORDER BY id", (ENTITY, settlement_id))
    return [HistoryEntry(int(r["at_ms"]), r["old_status"], r["new_status"], r["reason"],
                         r["details"]) for r in rows]


async def op_signature(db: Reader, op_id: int) -> str | None:
    """The signature of the transaction that carried the operation when it landed (or the
    newest one signed)."""
    r = await db.fetchone(
        "SELECT a.signature FROM tx_attempts a JOIN tx_attempt_operations t "
        "ON t.attempt_id = a.id WHERE t.operation_id = ? "
        "ORDER BY (a.observed_status = 'finalized') DESC, a.created_at_ms DESC LIMIT 1",
        (op_id,))
    return None if r is None else str(r["signature"])


@dataclass(frozen=True, slots=True)
class EpochTotals:
    by_status: dict[str, int]
    energy_wh: int          # settled
    total_value: int        # settled


async def epoch_totals(db: Reader, epoch: int) -> EpochTotals:
    """The settlements of the trades matched at `epoch`'s end: counts by status, and the energy
    and value of those settled."""
    rows = await db.fetchall(
        "SELECT status, count(*) AS n, sum(energy_wh) AS wh, sum(total_value) AS v "
        "FROM settlements WHERE epoch = ? GROUP BY status", (epoch,))
    by = {str(r["status"]): int(r["n"]) for r in rows}
    settled = next((r for r in rows if r["status"] == "settled"), None)
    return EpochTotals(by, int(settled["wh"]) if settled else 0,
                       int(settled["v"]) if settled else 0)
