"""Alerts as stored state: one row per rule with its current state, and an event per change.

Every SQL statement on `alerts` is here. A change is written with its `alert.raised` or
`alert.cleared` event in the caller's transaction, so the event log and the table never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gridnode.store import events
from gridnode.store.events import EventType

if TYPE_CHECKING:
    from gridnode.store.db import WriteTx, _Reads

RAISED = "raised"
CLEARED = "cleared"


@dataclass(frozen=True)
class Alert:
    name: str
    state: str
    value: float | None
    threshold: float | None
    detail: str
    raised_at_ms: int | None
    changed_at_ms: int

    @property
    def raised(self) -> bool:
        return self.state == RAISED


async def change(tx: WriteTx, name: str, raised: bool, *, value: float | None,
                 threshold: float | None, detail: str, at_ms: int) -> Alert:
    """Record that alert `name` is now raised (or cleared), with its event."""
    state = RAISED if raised else CLEARED
    await tx.execute(
        "INSERT INTO alerts (name, state, value, threshold, detail, raised_at_ms, "
        "changed_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
        "state = excluded.state, value = excluded.value, threshold = excluded.threshold, "
        "detail = excluded.detail, raised_at_ms = coalesce(excluded.raised_at_ms, "
        "alerts.raised_at_ms), changed_at_ms = excluded.changed_at_ms",
        (name, state, value, threshold, detail, at_ms if raised else None, at_ms))
    await events.append(tx, EventType.ALERT_RAISED if raised else EventType.ALERT_CLEARED,
                        {"name": name, "value": value, "threshold": threshold,
                         "detail": detail}, at_ms=at_ms)
    row = await tx.fetchone(
        "SELECT raised_at_ms FROM alerts WHERE name = ?", (name,))
    return Alert(name, state, value, threshold, detail,
                 None if row is None else row[0], at_ms)


async def all_alerts(db: _Reads) -> list[Alert]:
    """Every alert that was ever raised, with its current state, by name."""
    rows = await db.fetchall(
        "SELECT name, state, value, threshold, detail, raised_at_ms, changed_at_ms FROM alerts "
        "ORDER BY name")
    return [Alert(str(r[0]), str(r[1]), r[2], r[3], str(r[4]), r[5], int(r[6])) for r in rows]
