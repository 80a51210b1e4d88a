"""GET /api/v1/deliveries and POST /api/v1/deliveries/{id}/replay (operator only): what each
delivery destination (upstream, webhooks, ...) holds, and the operator's replay of a parked
item, as `gridnode deliveries list|replay` do from the shell.

The running engine picks a replayed item up at its next poll; the replay is audited.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from gridnode.api.models import Model, Query, iso
from gridnode.api.problems import Problem
from gridnode.api.server import Call, Reply
from gridnode.store import StoreError
from gridnode.store import deliveries as stored


class DeliveriesQuery(Query):
    destination: str | None = Field(default=None, max_length=200)
    status: Literal["pending", "delivered", "parked"] | None = None
    limit: int = Field(default=50, ge=1, le=500)


class DestinationInfo(Model):
    name: str
    kind: str
    status: str = Field(description="active or disabled")
    cursor: int = Field(description="id of the last event it looked at")
    pending: int
    delivered: int
    parked: int
    failures: int = Field(description="consecutive failed requests")
    failing_since: datetime | None
    next_attempt_at: datetime | None
    last_error: str | None
    last_delivered_at: datetime | None
    disabled_reason: str | None


class DeliveryInfo(Model):
    id: int
    destination: str
    kind: str
    key: str = Field(description="the item's idempotency key")
    order_key: str | None
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    answer: str | None = Field(description="what the destination answered when it parked it")
    payload: dict[str, Any]
    created_at: datetime
    delivered_at: datetime | None


class DeliveryList(Model):
    destinations: list[DestinationInfo]
    items: list[DeliveryInfo] = Field(description="newest first")


class ReplayResult(Model):
    id: int
    old_status: str
    status: str


async def list_deliveries(call: Call) -> Reply:
    """Destinations with their state and item counts, then items newest first."""
    q: DeliveriesQuery = call.query
    db = call.ctx.db
    counts = await stored.status_counts(db)
    dests = [DestinationInfo(
        name=d.name, kind=d.kind, status=d.status, cursor=d.cursor,
        pending=counts.get(d.name, {}).get("pending", 0),
        delivered=counts.get(d.name, {}).get("delivered", 0),
        parked=counts.get(d.name, {}).get("parked", 0), failures=d.failures,
        failing_since=iso(d.failing_since_ms), next_attempt_at=iso(d.next_attempt_at_ms),
        last_error=d.last_error, last_delivered_at=iso(d.last_delivered_at_ms),
        disabled_reason=d.disabled_reason) for d in await stored.destinations(db)]
    rows = await stored.items(db, destination=q.destination, status=q.status, limit=q.limit)
    items = [DeliveryInfo(
        id=r.id, destination=r.destination, kind=r.kind, key=r.idempotency_key,
        order_key=r.order_key, status=r.status, attempts=r.attempts,
        next_attempt_at=iso(r.next_attempt_at_ms), last_error=r.last_error, answer=r.answer,
        payload=r.payload, created_at=iso(r.created_at_ms), delivered_at=iso(r.delivered_at_ms))
        for r in rows]
    return Reply(DeliveryList(destinations=dests, items=items))


async def replay(call: Call) -> Reply:
    """Send a parked (or delivered) item again (audited)."""
    item_id = call.int_param("id")
    note = f"API replay by {call.who.role} {call.who.sub}"
    try:
        old = await stored.replay(call.write, item_id, note)
    except stored.ItemNotFound:
        raise Problem(404, "delivery-not-found", "Not found", f"no delivery {item_id}") from None
    except StoreError as exc:
        raise Problem(409, "not-replayable", "Not replayable", str(exc)) from None
    return Reply(ReplayResult(id=item_id, old_status=old, status=stored.PENDING))
