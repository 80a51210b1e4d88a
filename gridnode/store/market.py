"""The market subsystem's tables: the node's own orders, the epochs it cleared, its cursors.

Every SQL statement on `market_orders`, `market_epochs` and `market_cursors` is here. An order
row is written in the transaction that enqueues its order_creation operation; its address comes
from the finalized SellOrderCreated/BuyOrderCreated event of that operation (chain_events).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any

from gridnode.store import operations
from gridnode.store.db import WriteTx, _Reads, now_ms
from gridnode.store.operations import NewOperation

Reader = _Reads
ORDER_EVENTS = ("SellOrderCreated", "BuyOrderCreated")


@dataclass(frozen=True, slots=True)
class NewOrder:
    user_name: str
    owner: str
    side: str
    energy_wh: int
    price_per_kwh: int
    epoch: int
    source: str                      # "policy" | "manual"
    meter_id: str | None = None
    interval_end: int | None = None


@dataclass(frozen=True, slots=True)
class MarketOrder:
    id: int
    operation_id: int
    user_name: str
    owner: str
    side: str
    energy_wh: int
    price_per_kwh: int
    epoch: int
    source: str
    meter_id: str | None
    interval_end: int | None
    order_address: str | None
    cancel_operation_id: int | None
    closed: str | None
    created_at_ms: int


@dataclass(frozen=True, slots=True)
class OrderView:
    """An order with the state of its creation and cancel operations."""

    order: MarketOrder
    op_status: str
    cancel_status: str | None


@dataclass(frozen=True, slots=True)
class FinalizedOp:
    """An operation that reached `finalized`, seen through the event log (cursor order)."""

    event_id: int
    operation: operations.Operation


_COLUMNS = ", ".join(f.name for f in fields(MarketOrder))


def _order(r: Any) -> MarketOrder:
    return MarketOrder(**{f.name: r[f.name] for f in fields(MarketOrder)})


# -- cursors -----------------------------------------------------------------------------------

async def cursor(db: Reader, name: str) -> int:
    r = await db.fetchone("SELECT value FROM market_cursors WHERE name = ?", (name,))
    return int(r["value"]) if r is not None else 0


async def set_cursor(tx: WriteTx, name: str, value: int) -> None:
    await tx.execute("INSERT INTO market_cursors (name, value) VALUES (?, ?) "
                     "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (name, value))


async def finalized_since(db: Reader, after_event_id: int, tx_types: tuple[str, ...],
                          limit: int) -> list[FinalizedOp]:
    """Operations of `tx_types` that became finalized after event `after_event_id`, in the order
    the event log recorded it (ids increase in commit order, so a cursor misses none)."""
    cols = ", ".join(f"o.{f.name}" for f in fields(operations.Operation))
    rows = await db.fetchall(
        f"SELECT e.id AS event_id, {cols} FROM events e JOIN operations o ON o.id = e.operation_id "
        "WHERE e.id > ? AND e.type = 'operation.status' "
        "AND json_extract(e.data, '$.new') = 'finalized' "
        f"AND o.tx_type IN ({','.join('?' * len(tx_types))}) ORDER BY e.id LIMIT ?",
        [after_event_id, *tx_types, limit])
    return [FinalizedOp(int(r["event_id"]), operations._operation(r)) for r in rows]


async def last_event_id(db: Reader) -> int:
    r = await db.fetchone("SELECT max(id) AS n FROM events")
    return int(r["n"]) if r is not None and r["n"] is not None else 0


# -- orders ------------------------------------------------------------------------------------

async def add_order(tx: WriteTx, order: NewOrder, op: NewOperation) -> tuple[int, bool]:
    """Enqueue an order's order_creation operation and record it: (order id, created). The
    same idempotency key adds nothing."""
    op_id, created = await operations.add(tx, op, details={"user": order.user_name,
                                                           "source": order.source})
    if not created:
        r = await tx.fetchone("SELECT id FROM market_orders WHERE operation_id = ?", (op_id,))
        if r is not None:
            return int(r["id"]), False
    res = await tx.execute(
        "INSERT INTO market_orders (operation_id, user_name, owner, side, energy_wh, "
        "price_per_kwh, epoch, source, meter_id, interval_end, created_at_ms) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (op_id, order.user_name, order.owner, order.side, order.energy_wh, order.price_per_kwh,
         order.epoch, order.source, order.meter_id, order.interval_end, now_ms()))
    assert res.lastrowid is not None
    return res.lastrowid, created


async def unresolved(db: Reader) -> bool:
    """Whether an order's creation event is there and its address not yet taken from it."""
    r = await db.fetchone(
        "SELECT 1 FROM market_orders m JOIN chain_events c ON c.operation_id = m.operation_id "
        f"WHERE m.order_address IS NULL AND c.name IN ({','.join('?' * len(ORDER_EVENTS))}) "
        "LIMIT 1", list(ORDER_EVENTS))
    return r is not None


async def resolve_addresses(tx: WriteTx, epoch_s: int) -> int:
    """Give each order whose creation is finalized its address, and its epoch from the chain's
    timestamp of the creation (the epoch it really trades in); returns how many were set."""
    rows = await tx.fetchall(
        "SELECT m.id, c.data FROM market_orders m JOIN chain_events c "
        "ON c.operation_id = m.operation_id "
        # The same transaction may carry gateway placeholder orders: the owner's is the one.
        "AND m.owner = coalesce(json_extract(c.data, '$.seller'), json_extract(c.data, '$.buyer')) "
        f"WHERE m.order_address IS NULL AND c.name IN ({','.join('?' * len(ORDER_EVENTS))})",
        list(ORDER_EVENTS))
    for r in rows:
        data = json.loads(r["data"])
        ts = int(data.get("timestamp") or 0)
        epoch = -(-ts // epoch_s) * epoch_s if ts else None
        if epoch == ts:         # an order created exactly at a boundary trades in the next one
            epoch = ts + epoch_s
        await tx.execute(
            "UPDATE market_orders SET order_address = ?, epoch = COALESCE(?, epoch) WHERE id = ?",
            (str(data["order_id"]), epoch, int(r["id"])))
    return len(rows)


async def orders_to_cancel(db: Reader, epoch_at_most: int) -> list[MarketOrder]:
    """Orders with an address, of an epoch that ended at or before `epoch_at_most`, not yet
    given a cancel."""
    rows = await db.fetchall(
        f"SELECT {_COLUMNS} FROM market_orders WHERE order_address IS NOT NULL "
        "AND closed IS NULL AND epoch <= ? ORDER BY id", (epoch_at_most,))
    return [_order(r) for r in rows]


async def close(tx: WriteTx, order_id: int, how: str, cancel_op_id: int | None = None) -> None:
    """The order's epoch is over: `how` is 'cancel' (with its order_cancel operation), 'filled'
    or 'not_open' (no longer open on chain for another reason)."""
    await tx.execute("UPDATE market_orders SET closed = ?, cancel_operation_id = ? WHERE id = ?",
                     (how, cancel_op_id, order_id))


async def orders(db: Reader, limit: int = 50, epoch: int | None = None,
                 owner: str | None = None) -> list[OrderView]:
    where: list[str] = []
    params: list[Any] = []
    if epoch is not None:
        where.append("m.epoch = ?")
        params.append(epoch)
    if owner is not None:
        where.append("m.owner = ?")
        params.append(owner)
    cols = ", ".join(f"m.{f.name}" for f in fields(MarketOrder))
    rows = await db.fetchall(
        f"SELECT {cols}, o.status AS op_status, c.status AS cancel_status FROM market_orders m "
        "JOIN operations o ON o.id = m.operation_id "
        "LEFT JOIN operations c ON c.id = m.cancel_operation_id "
        + (f"WHERE {' AND '.join(where)} " if where else "") + "ORDER BY m.id DESC LIMIT ?",
        [*params, limit])
    return [OrderView(_order(r), str(r["op_status"]), r["cancel_status"]) for r in rows]


async def order_by_id(db: Reader, order_id: int) -> MarketOrder | None:
    r = await db.fetchone(f"SELECT {_COLUMNS} FROM market_orders WHERE id = ?", (order_id,))
    return None if r is None else _order(r)


async def order_by_address(db: Reader, address: str) -> MarketOrder | None:
    r = await db.fetchone(f"SELECT {_COLUMNS} FROM market_orders WHERE order_address = ?",
                          (address,))
    return None if r is None else _order(r)


async def epoch_counts(db: Reader, epoch: int) -> dict[str, int]:
    """Orders of an epoch by side (for the per-epoch line)."""
    rows = await db.fetchall(
        "SELECT side, count(*) AS n FROM market_orders WHERE epoch = ? GROUP BY side", (epoch,))
    return {str(r["side"]): int(r["n"]) for r in rows}


# -- epochs ------------------------------------------------------------------------------------

async def epoch_cleared(db: Reader, epoch: int) -> bool:
    r = await db.fetchone("SELECT 1 FROM market_epochs WHERE epoch = ?", (epoch,))
    return r is not None


async def record_epoch(tx: WriteTx, epoch: int, orders_seen: int, matches: int,
                       energy_wh: int) -> None:
    await tx.execute(
        "INSERT INTO market_epochs (epoch, orders, matches, energy_wh, cleared_at_ms) "
        "VALUES (?, ?, ?, ?, ?)", (epoch, orders_seen, matches, energy_wh, now_ms()))


async def last_cleared(db: Reader) -> int | None:
    r = await db.fetchone("SELECT max(epoch) AS e FROM market_epochs")
    return None if r is None or r["e"] is None else int(r["e"])


async def unfinished_ops(db: Reader, tx_type: str) -> int:
    """Operations of `tx_type` that have not reached a final status (finalized, failed, parked)."""
    r = await db.fetchone(
        "SELECT count(*) AS n FROM operations WHERE tx_type = ? "
        "AND status NOT IN ('finalized', 'failed', 'parked')", (tx_type,))
    return int(r["n"]) if r is not None else 0


async def matched_events(db: Reader, op_id: int) -> list[dict[str, Any]]:
    """The OrderMatched events of a finalized match operation."""
    rows = await db.fetchall(
        "SELECT data FROM chain_events WHERE operation_id = ? AND name = 'OrderMatched' "
        "ORDER BY id", (op_id,))
    return [json.loads(r["data"]) for r in rows]


async def epoch_match_ops(db: Reader, epoch: int) -> list[operations.Operation]:
    cols = ", ".join(f.name for f in fields(operations.Operation))
    rows = await db.fetchall(
        f"SELECT {cols} FROM operations WHERE tx_type = 'match_orders' "
        "AND json_extract(payload, '$.epoch') = ? ORDER BY id", (epoch,))
    return [operations._operation(r) for r in rows]


@dataclass(frozen=True, slots=True)
class EpochRow:
    epoch: int
    orders: int
    matches: int
    energy_wh: int
    cleared_at_ms: int


async def epochs_since(db: Reader, after_epoch: int) -> list[EpochRow]:
    """Cleared epochs ending after `after_epoch`, oldest first."""
    rows = await db.fetchall(
        "SELECT epoch, orders, matches, energy_wh, cleared_at_ms FROM market_epochs "
        "WHERE epoch > ? ORDER BY epoch", (after_epoch,))
    return [EpochRow(int(r["epoch"]), int(r["orders"]), int(r["matches"]), int(r["energy_wh"]),
                     int(r["cleared_at_ms"])) for r in rows]


async def erc_dead_ends(db: Reader, limit: int = 100) -> list[operations.Operation]:
    """Certificate operations that ended failed or parked while carrying an order plan whose
    order does not exist yet (it is then placed without a certificate)."""
    cols = ", ".join(f"o.{f.name}" for f in fields(operations.Operation))
    rows = await db.fetchall(
        f"SELECT {cols} FROM operations o WHERE o.tx_type IN ('erc_issuance', 'erc_validation') "
        "AND o.status IN ('failed', 'parked') "
        "AND json_extract(o.payload, '$.order_plan.key') IS NOT NULL "
        "AND NOT EXISTS (SELECT 1 FROM operations p WHERE p.idempotency_key = "
        "json_extract(o.payload, '$.order_plan.key')) ORDER BY o.id LIMIT ?", (limit,))
    return [operations._operation(r) for r in rows]
