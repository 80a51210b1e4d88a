"""Webhook registrations: every SQL statement on `webhooks`.

A webhook's delivery state (cursor, items, failures, disabled) is its destination row
'webhook:<id>' in delivery_destinations, joined here for listings.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gridnode.store.db import now_ms

if TYPE_CHECKING:
    from gridnode.store.db import WriteTx, _Reads

KIND = "webhook"


def destination_name(webhook_id: int) -> str:
    return f"{KIND}:{webhook_id}"


@dataclass(frozen=True, slots=True)
class Webhook:
    id: int
    url: str
    event_types: tuple[str, ...]
    secret: str
    description: str | None
    created_at_ms: int
    # from its delivery destination (None until the daemon has started delivering it)
    status: str | None = None
    failures: int = 0
    last_error: str | None = None
    last_delivered_at_ms: int | None = None
    disabled_reason: str | None = None

    @property
    def destination(self) -> str:
        return destination_name(self.id)


def _webhook(r: Any) -> Webhook:
    return Webhook(int(r["id"]), str(r["url"]), tuple(json.loads(r["event_types"])),
                   str(r["secret"]), r["description"], int(r["created_at_ms"]),
                   r["status"], int(r["failures"] or 0), r["last_error"],
                   r["last_delivered_at_ms"], r["disabled_reason"])


_SELECT = ("SELECT w.id, w.url, w.event_types, w.secret, w.description, w.created_at_ms, "
           "d.status, d.failures, d.last_error, d.last_delivered_at_ms, d.disabled_reason "
           "FROM webhooks w LEFT JOIN delivery_destinations d ON d.name = 'webhook:' || w.id")


async def add(tx: WriteTx, url: str, event_types: Sequence[str], secret: str,
              description: str | None = None) -> Webhook:
    ts = now_ms()
    res = await tx.execute(
        "INSERT INTO webhooks (url, event_types, secret, description, created_at_ms) "
        "VALUES (?, ?, ?, ?, ?)", (url, json.dumps(list(event_types)), secret, description, ts))
    assert res.lastrowid is not None
    return Webhook(res.lastrowid, url, tuple(event_types), secret, description, ts)


async def remove(tx: WriteTx, webhook_id: int) -> bool:
    """Forget a webhook and its deliveries (items go with the destination row)."""
    from gridnode.store import deliveries

    res = await tx.execute("DELETE FROM webhooks WHERE id = ?", (webhook_id,))
    await deliveries.remove_destination(tx, destination_name(webhook_id))
    return res.rowcount == 1


async def get(db: _Reads, webhook_id: int) -> Webhook | None:
    row = await db.fetchone(f"{_SELECT} WHERE w.id = ?", (webhook_id,))
    return None if row is None else _webhook(row)


async def all_webhooks(db: _Reads) -> list[Webhook]:
    return [_webhook(r) for r in await db.fetchall(f"{_SELECT} ORDER BY w.id")]
