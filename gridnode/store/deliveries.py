"""Deliveries as stored state: destinations with their cursor into the event log, and one row
per item a destination selected, with its status.

Every SQL statement on `delivery_destinations` and `delivery_items` is here (the purge of old
events that every destination has is in `gridnode.store.retention`). Item statuses:

    pending    to be sent (now, or at `next_attempt_at_ms`)
    delivered  the destination acknowledged it (terminal unless an operator replays it)
    parked     the destination refused it (its answer is kept); waits for an operator's replay

Parking, replaying, disabling and enabling are written to the audit log (entities `delivery`
and `delivery_destination`); routine deliveries are not (they would double the writes).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from gridnode.store.db import StoreError, dumps, now_ms

if TYPE_CHECKING:
    from gridnode.store.db import WriteTx, _Reads

PENDING: Final = "pending"
DELIVERED: Final = "delivered"
PARKED: Final = "parked"
ITEM_STATUSES: Final = (PENDING, DELIVERED, PARKED)
# What may follow what (a new item starts pending); replay sends parked or delivered back.
ITEM_TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    PENDING: frozenset({DELIVERED, PARKED}),
    DELIVERED: frozenset({PENDING}),
    PARKED: frozenset({PENDING}),
}
ACTIVE: Final = "active"
DISABLED: Final = "disabled"


class ItemNotFound(StoreError):
    def __init__(self, item_id: int) -> None:
        super().__init__(f"delivery {item_id} does not exist")


@dataclass(frozen=True, slots=True)
class DestinationRow:
    id: int
    name: str
    kind: str
    cursor: int
    status: str
    config: dict[str, Any] | None
    failures: int
    failing_since_ms: int | None
    next_attempt_at_ms: int | None
    last_error: str | None
    last_delivered_at_ms: int | None
    disabled_reason: str | None
    created_at_ms: int
    updated_at_ms: int


@dataclass(frozen=True, slots=True)
class NewItem:
    """What a destination made of one event, to be stored beside the cursor's advance."""

    event_id: int
    kind: str
    idempotency_key: str
    order_key: str | None
    payload: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ItemRow:
    id: int
    destination: str
    event_id: int
    kind: str
    idempotency_key: str
    order_key: str | None
    payload: dict[str, Any]
    status: str
    attempts: int
    next_attempt_at_ms: int | None
    last_error: str | None
    answer: str | None
    created_at_ms: int
    updated_at_ms: int
    delivered_at_ms: int | None


_DEST_COLUMNS = ("id, name, kind, cursor, status, config, failures, failing_since_ms, "
                 "next_attempt_at_ms, last_error, last_delivered_at_ms, disabled_reason, "
                 "created_at_ms, updated_at_ms")
_ITEM_COLUMNS = ("id, destination, event_id, kind, idempotency_key, order_key, payload, status, "
                 "attempts, next_attempt_at_ms, last_error, answer, created_at_ms, "
                 "updated_at_ms, delivered_at_ms")


def _dest(r: Any) -> DestinationRow:
    return DestinationRow(
        int(r["id"]), r["name"], r["kind"], int(r["cursor"]), r["status"],
        None if r["config"] is None else json.loads(r["config"]), int(r["failures"]),
        r["failing_since_ms"], r["next_attempt_at_ms"], r["last_error"],
        r["last_delivered_at_ms"], r["disabled_reason"], int(r["created_at_ms"]),
        int(r["updated_at_ms"]))


def _item(r: Any) -> ItemRow:
    return ItemRow(
        int(r["id"]), r["destination"], int(r["event_id"]), r["kind"], r["idempotency_key"],
        r["order_key"], json.loads(r["payload"]), r["status"], int(r["attempts"]),
        r["next_attempt_at_ms"], r["last_error"], r["answer"], int(r["created_at_ms"]),
        int(r["updated_at_ms"]), r["delivered_at_ms"])


async def _audit(tx: WriteTx, entity: str, entity_id: int, old: str | None, new: str,
                 reason: str, details: Mapping[str, Any] | None, at_ms: int) -> None:
    await tx.execute(
        "INSERT INTO audit_log (at_ms, entity, entity_id, old_status, new_status, reason, "
        "details) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (at_ms, entity, entity_id, old, new, reason, None if details is None else dumps(details)))


# -- destinations ------------------------------------------------------------------------------

async def ensure_destination(tx: WriteTx, name: str, kind: str, *, cursor: int = 0,
                             config: Mapping[str, Any] | None = None) -> DestinationRow:
    """The destination `name`, created with `cursor` (and `config`) if it does not exist yet;
    an existing one keeps its cursor and state."""
    ts = now_ms()
    await tx.execute(
        "INSERT INTO delivery_destinations (name, kind, cursor, config, created_at_ms, "
        "updated_at_ms) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
        (name, kind, cursor, None if config is None else dumps(config), ts, ts))
    row = await tx.fetchone(f"SELECT {_DEST_COLUMNS} FROM delivery_destinations WHERE name = ?",
                            (name,))
    assert row is not None
    return _dest(row)


async def set_config(tx: WriteTx, name: str, config: Mapping[str, Any] | None) -> None:
    await tx.execute("UPDATE delivery_destinations SET config = ?, updated_at_ms = ? "
                     "WHERE name = ?", (None if config is None else dumps(config), now_ms(), name))


async def remove_destination(tx: WriteTx, name: str, note: str | None = None) -> bool:
    """Delete a destination and its items (a removed webhook, an upstream no longer
    configured), audited; False when it did not exist."""
    row = await destination(tx, name)
    if row is None:
        return False
    await tx.execute("DELETE FROM delivery_destinations WHERE name = ?", (name,))
    await _audit(tx, "delivery_destination", row.id, row.status, "removed", "removed",
                 {"name": name, "note": note} if note else {"name": name}, now_ms())
    return True


async def destination(db: _Reads, name: str) -> DestinationRow | None:
    row = await db.fetchone(f"SELECT {_DEST_COLUMNS} FROM delivery_destinations WHERE name = ?",
                            (name,))
    return None if row is None else _dest(row)


async def destinations(db: _Reads, kind: str | None = None) -> list[DestinationRow]:
    rows = await db.fetchall(
        f"SELECT {_DEST_COLUMNS} FROM delivery_destinations "
        + ("WHERE kind = ? " if kind else "") + "ORDER BY name", (kind,) if kind else ())
    return [_dest(r) for r in rows]


async def request_failed(tx: WriteTx, name: str, failures: int, next_attempt_at_ms: int,
                         error: str) -> None:
    """A request to the destination failed as a whole: no request before `next_attempt_at_ms`."""
    ts = now_ms()
    await tx.execute(
        "UPDATE delivery_destinations SET failures = ?, next_attempt_at_ms = ?, last_error = ?, "
        "failing_since_ms = COALESCE(failing_since_ms, ?), updated_at_ms = ? WHERE name = ?",
        (failures, next_attempt_at_ms, error[:2000], ts, ts, name))


async def request_succeeded(tx: WriteTx, name: str) -> None:
    """The destination answered: its failure run is over."""
    ts = now_ms()
    await tx.execute(
        "UPDATE delivery_destinations SET failures = 0, next_attempt_at_ms = NULL, "
        "failing_since_ms = NULL, last_delivered_at_ms = ?, updated_at_ms = ? WHERE name = ?",
        (ts, ts, name))


async def disable(tx: WriteTx, name: str, reason: str) -> bool:
    """Disable a destination (it said 410 Gone, or failed too long); audited. False when it was
    not active."""
    row = await destination(tx, name)
    if row is None or row.status == DISABLED:
        return False
    ts = now_ms()
    await tx.execute("UPDATE delivery_destinations SET status = ?, disabled_reason = ?, "
                     "updated_at_ms = ? WHERE name = ?", (DISABLED, reason[:2000], ts, name))
    await _audit(tx, "delivery_destination", row.id, row.status, DISABLED, reason[:2000], None,
                 ts)
    return True


async def enable(tx: WriteTx, name: str, note: str | None = None) -> bool:
    """Enable a disabled destination again (operator); audited. False when it was active."""
    row = await destination(tx, name)
    if row is None:
        raise StoreError(f"no delivery destination {name!r}")
    if row.status == ACTIVE:
        return False
    ts = now_ms()
    await tx.execute(
        "UPDATE delivery_destinations SET status = ?, disabled_reason = NULL, failures = 0, "
        "failing_since_ms = NULL, next_attempt_at_ms = NULL, updated_at_ms = ? WHERE name = ?",
        (ACTIVE, ts, name))
    await _audit(tx, "delivery_destination", row.id, row.status, ACTIVE, "operator enable",
                 {"note": note} if note else None, ts)
    return True


# -- items -------------------------------------------------------------------------------------

async def capture(tx: WriteTx, name: str, cursor_was: int, cursor: int,
                  items: Sequence[NewItem]) -> int:
    """Store `items` and move the destination's cursor from `cursor_was` to `cursor`, in the
    caller's transaction; an item whose key the destination already holds is skipped. Returns
    how many were new. Raises StoreError when the cursor moved meanwhile (two engines)."""
    ts = now_ms()
    res = await tx.execute(
        "UPDATE delivery_destinations SET cursor = ?, updated_at_ms = ? "
        "WHERE name = ? AND cursor = ?", (cursor, ts, name, cursor_was))
    if res.rowcount != 1:
        raise StoreError(f"delivery destination {name!r}: its cursor is not at {cursor_was} "
                         "(removed, or moved by another writer)")
    if not items:
        return 0
    res = await tx.executemany(
        "INSERT OR IGNORE INTO delivery_items (destination, event_id, kind, idempotency_key, "
        "order_key, payload, status, created_at_ms, updated_at_ms) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(name, i.event_id, i.kind, i.idempotency_key, i.order_key, dumps(i.payload), PENDING,
          ts, ts) for i in items])
    return max(res.rowcount, 0)


async def pending_count(db: _Reads, name: str) -> int:
    row = await db.fetchone("SELECT count(*) AS n FROM delivery_items "
                            "WHERE destination = ? AND status = ?", (name, PENDING))
    return int(row["n"]) if row is not None else 0


async def due(db: _Reads, name: str, at_ms: int, limit: int) -> list[ItemRow]:
    """Pending items that may go now, oldest first: an item waits while an earlier pending item
    with its order key waits (order per meter); parked items hold nothing back."""
    rows = await db.fetchall(
        f"SELECT {_ITEM_COLUMNS} FROM delivery_items d "
        "WHERE d.destination = :name AND d.status = 'pending' "
        "AND (d.next_attempt_at_ms IS NULL OR d.next_attempt_at_ms <= :now) "
        "AND (d.order_key IS NULL OR NOT EXISTS (SELECT 1 FROM delivery_items e "
        "  WHERE e.destination = d.destination AND e.order_key = d.order_key "
        "  AND e.status = 'pending' AND e.id < d.id AND e.next_attempt_at_ms > :now)) "
        "ORDER BY d.id LIMIT :limit", {"name": name, "now": at_ms, "limit": limit})
    return [_item(r) for r in rows]


async def next_item_attempt_ms(db: _Reads, name: str, at_ms: int) -> int | None:
    """The next time after `at_ms` at which a waiting pending item becomes due (None: none
    waits). An item due already but held back by an earlier one of its order key becomes due
    with that one, so only future times count."""
    row = await db.fetchone(
        "SELECT min(next_attempt_at_ms) AS t FROM delivery_items "
        "WHERE destination = ? AND status = 'pending' AND next_attempt_at_ms > ?",
        (name, at_ms))
    return None if row is None or row["t"] is None else int(row["t"])


async def mark_delivered(tx: WriteTx, ids: Sequence[int]) -> None:
    ts = now_ms()
    await tx.executemany(
        "UPDATE delivery_items SET status = 'delivered', attempts = attempts + 1, "
        "next_attempt_at_ms = NULL, last_error = NULL, delivered_at_ms = ?, updated_at_ms = ? "
        "WHERE id = ? AND status = 'pending'", [(ts, ts, i) for i in ids])


async def mark_attempted(tx: WriteTx, ids: Sequence[int], error: str,
                         next_attempt_at_ms: int | None = None) -> None:
    """A try that did not deliver: counted, its error kept; with `next_attempt_at_ms` the items
    themselves wait (else the destination's own backoff holds them)."""
    ts = now_ms()
    await tx.executemany(
        "UPDATE delivery_items SET attempts = attempts + 1, last_error = ?, "
        "next_attempt_at_ms = ?, updated_at_ms = ? WHERE id = ? AND status = 'pending'",
        [(error[:2000], next_attempt_at_ms, ts, i) for i in ids])


async def park(tx: WriteTx, item_id: int, answer: str) -> None:
    """The destination refused the item: parked with its answer, for an operator (audited)."""
    ts = now_ms()
    res = await tx.execute(
        "UPDATE delivery_items SET status = 'parked', attempts = attempts + 1, answer = ?, "
        "last_error = ?, next_attempt_at_ms = NULL, updated_at_ms = ? "
        "WHERE id = ? AND status = 'pending'", (answer[:8000], answer[:2000], ts, item_id))
    if res.rowcount:
        await _audit(tx, "delivery", item_id, PENDING, PARKED, "refused by the destination",
                     {"answer": answer[:2000]}, ts)


async def park_key(tx: WriteTx, name: str, key: str, answer: str) -> None:
    """Park the pending item `key` of destination `name` (one it could not even build)."""
    row = await tx.fetchone("SELECT id FROM delivery_items WHERE destination = ? AND "
                            "idempotency_key = ?", (name, key))
    if row is not None:
        await park(tx, int(row["id"]), answer)


async def replay(tx: WriteTx, item_id: int, note: str | None = None) -> str:
    """Send a parked (or delivered) item again: back to pending, due now (audited); returns the
    old status. Raises StoreError when it is pending already."""
    row = await tx.fetchone("SELECT status FROM delivery_items WHERE id = ?", (item_id,))
    if row is None:
        raise ItemNotFound(item_id)
    old = str(row["status"])
    if PENDING not in ITEM_TRANSITIONS.get(old, frozenset()):
        raise StoreError(f"delivery {item_id} is {old}: only parked or delivered items are "
                         "replayed")
    ts = now_ms()
    await tx.execute(
        "UPDATE delivery_items SET status = 'pending', next_attempt_at_ms = NULL, "
        "updated_at_ms = ? WHERE id = ?", (ts, item_id))
    await _audit(tx, "delivery", item_id, old, PENDING, "operator replay",
                 {"note": note} if note else None, ts)
    return old


async def parked_ids(db: _Reads, name: str) -> list[int]:
    rows = await db.fetchall("SELECT id FROM delivery_items WHERE destination = ? AND "
                             "status = 'parked' ORDER BY id", (name,))
    return [int(r["id"]) for r in rows]


async def item(db: _Reads, item_id: int) -> ItemRow | None:
    row = await db.fetchone(f"SELECT {_ITEM_COLUMNS} FROM delivery_items WHERE id = ?",
                            (item_id,))
    return None if row is None else _item(row)


async def items(db: _Reads, *, destination: str | None = None, status: str | None = None,
                limit: int = 50) -> list[ItemRow]:
    """Items, newest first, optionally of one destination and status."""
    where, params = [], []
    if destination is not None:
        where.append("destination = ?")
        params.append(destination)
    if status is not None:
        where.append("status = ?")
        params.append(status)
    rows = await db.fetchall(
        f"SELECT {_ITEM_COLUMNS} FROM delivery_items "
        + (f"WHERE {' AND '.join(where)} " if where else "") + "ORDER BY id DESC LIMIT ?",
        [*params, limit])
    return [_item(r) for r in rows]


async def status_counts(db: _Reads) -> dict[str, dict[str, int]]:
    """destination -> status -> items."""
    rows = await db.fetchall("SELECT destination, status, count(*) AS n FROM delivery_items "
                             "GROUP BY destination, status")
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        out.setdefault(r["destination"], {})[r["status"]] = int(r["n"])
    return out


async def history(db: _Reads, item_id: int) -> list[tuple[int, str | None, str, str,
                                                           str | None]]:
    """The audited changes of an item: (at_ms, old, new, reason, details JSON)."""
    rows = await db.fetchall(
        "SELECT at_ms, old_status, new_status, reason, details FROM audit_log "
        "WHERE entity = 'delivery' AND entity_id = ? ORDER BY id", (item_id,))
    return [(int(r["at_ms"]), r["old_status"], r["new_status"], r["reason"], r["details"])
            for r in rows]


# -- reads of the outbox for the items made from it --------------------------------------------

@dataclass(frozen=True, slots=True)
class OperationFacts:
    """What the upstream item of an operation reports: the operation and, once it landed,
    its finalized transaction's signature, slot and decoded events."""

    operation_id: int
    tx_type: str
    idempotency_key: str
    status: str
    payload: dict[str, Any]
    last_error: str | None
    signature: str | None
    slot: int | None
    chain_events: list[dict[str, Any]]


async def operation_facts(db: _Reads, op_id: int) -> OperationFacts | None:
    row = await db.fetchone("SELECT id, tx_type, idempotency_key, status, payload, last_error "
                            "FROM operations WHERE id = ?", (op_id,))
    if row is None:
        return None
    landed = await db.fetchone(
        "SELECT a.signature, a.slot FROM tx_attempts a JOIN tx_attempt_operations o "
        "ON o.attempt_id = a.id WHERE o.operation_id = ? "
        "AND a.observed_status IN ('finalized', 'confirmed', 'failed') "
        "ORDER BY a.observed_status = 'finalized' DESC, a.created_at_ms DESC LIMIT 1", (op_id,))
    evs = await db.fetchall("SELECT program_id, name, data, slot FROM chain_events "
                            "WHERE operation_id = ? ORDER BY id", (op_id,))
    return OperationFacts(
        int(row["id"]), row["tx_type"], row["idempotency_key"], row["status"],
        json.loads(row["payload"]), row["last_error"],
        None if landed is None else landed["signature"],
        None if landed is None else landed["slot"],
        [{"program_id": e["program_id"], "name": e["name"], "data": json.loads(e["data"]),
          "slot": e["slot"]} for e in evs])


async def replay_counts(db: _Reads, item_ids: Sequence[int]) -> dict[int, int]:
    """How often an operator replayed each item (absent: never)."""
    if not item_ids:
        return {}
    rows = await db.fetchall(
        "SELECT entity_id, count(*) AS n FROM audit_log WHERE entity = 'delivery' AND "
        f"reason = 'operator replay' AND entity_id IN ({','.join('?' * len(item_ids))}) "
        "GROUP BY entity_id", list(item_ids))
    return {int(r["entity_id"]): int(r["n"]) for r in rows}
