"""The event log: an append-only, durable record of every state change worth telling.

Each event is written in the same transaction as the change it reports, so a reader never sees a
change without its event nor an event of a change that was rolled back. Ids come from an
AUTOINCREMENT key and the store has one writer, so they are strictly increasing in commit order:
a reader that has seen event N has seen every event before it, and a cursor (``since``) is all a
consumer needs to resume after a disconnect or a restart. Consumers (the API's WebSocket, later
upstream sync and webhooks) each keep their own cursor; nothing here waits for them.

Every SQL statement on `events` is here.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gridnode.store.db import WriteTx, _Reads


class EventType(StrEnum):
    """What an event reports; its `data` fields are listed per type."""

    # old, new, reason, tx_type (old is null when the operation was created)
    OPERATION_STATUS = "operation.status"
    # interval_start, interval_end (Unix s), import_wh, export_wh, backfilled
    INTERVAL_CLOSED = "interval.closed"
    # name, value, threshold, detail (gridnode.store.alerts)
    ALERT_RAISED = "alert.raised"
    ALERT_CLEARED = "alert.cleared"
    # the settlement row's fields (gridnode.store.settlements.Settlement)
    SETTLEMENT_COMPLETED = "settlement.completed"
    SETTLEMENT_DEFAULTED = "settlement.defaulted"


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    at_ms: int
    type: str
    operation_id: int | None
    meter_id: str | None
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "at_ms": self.at_ms, "type": self.type,
                "operation_id": self.operation_id, "meter_id": self.meter_id, "data": self.data}


def _dumps(value: Mapping[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


async def append(tx: WriteTx, type: EventType, data: Mapping[str, Any], *, at_ms: int,
                 operation_id: int | None = None, meter_id: str | None = None) -> int:
    """Append one event inside the caller's transaction; returns its id."""
    res = await tx.execute(
        "INSERT INTO events (at_ms, type, operation_id, meter_id, data) VALUES (?, ?, ?, ?, ?)",
        (at_ms, str(type), operation_id, meter_id, _dumps(data)))
    assert res.lastrowid is not None
    return res.lastrowid


async def operation_status(tx: WriteTx, op_id: int, old: str | None, new: str, reason: str,
                           at_ms: int) -> None:
    """An operation was created (`old` None) or moved to `new`; its tx type and, for a payload
    about one meter, the meter id are taken from the operation row in the same statement."""
    await tx.execute(
        "INSERT INTO events (at_ms, type, operation_id, meter_id, data) "
        "SELECT ?, ?, id, json_extract(payload, '$.meter_id'), "
        "json_object('old', ?, 'new', ?, 'reason', ?, 'tx_type', tx_type) "
        "FROM operations WHERE id = ?",
        (at_ms, str(EventType.OPERATION_STATUS), old, new, reason, op_id))


async def interval_closed(tx: WriteTx, meter_id: str, interval_start: int, interval_end: int,
                          import_wh: int, export_wh: int, backfilled: bool, at_ms: int,
                          operation_id: int | None = None) -> int:
    """A meter's interval was closed and stored (with `operation_id`, its outbox operation)."""
    return await append(tx, EventType.INTERVAL_CLOSED, {
        "interval_start": interval_start, "interval_end": interval_end,
        "import_wh": import_wh, "export_wh": export_wh, "backfilled": bool(backfilled)},
        at_ms=at_ms, operation_id=operation_id, meter_id=meter_id)


async def since(db: _Reads, after_id: int, *, limit: int = 500,
                types: Collection[str] = (), meter_id: str | None = None,
                operation_id: int | None = None) -> list[Event]:
    """Events with an id above `after_id`, oldest first, at most `limit`, optionally only of
    `types`, of one meter or of one operation."""
    where: list[str] = ["id > ?"]
    params: list[Any] = [after_id]
    if types:
        where.append(f"type IN ({','.join('?' * len(types))})")
        params += list(types)
    if meter_id is not None:
        where.append("meter_id = ?")
        params.append(meter_id)
    if operation_id is not None:
        where.append("operation_id = ?")
        params.append(operation_id)
    rows = await db.fetchall(
        "SELECT id, at_ms, type, operation_id, meter_id, data FROM events "
        f"WHERE {' AND '.join(where)} ORDER BY id LIMIT ?", [*params, limit])
    return [Event(int(r["id"]), int(r["at_ms"]), str(r["type"]), r["operation_id"],
                  r["meter_id"], json.loads(r["data"])) for r in rows]


async def last_id(db: _Reads) -> int:
    """The id of the newest event (0 when the log is empty)."""
    row = await db.fetchone("SELECT max(id) AS n FROM events")
    return int(row["n"]) if row is not None and row["n"] is not None else 0
