"""POST/GET/DELETE /api/v1/webhooks: webhook registrations (operator only).

A webhook is made with a new ``whsec_`` secret, answered once in the 201 and never shown again
(the receiver verifies the Standard Webhooks signatures with it). Listing shows each webhook's
delivery state from its destination row. Delivering is gridnode.deliveries.webhooks'.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from aiohttp import web
from pydantic import AnyHttpUrl, Field

from gridnode.api.models import Model, Request, iso
from gridnode.api.problems import Problem
from gridnode.api.server import Call, Reply
from gridnode.deliveries.webhooks import EVENT_TYPES, create
from gridnode.store import webhooks as registrations
from gridnode.store.webhooks import Webhook

EventType = Literal["TransactionSubmitted", "TransactionConfirmed", "TransactionFailed",
                    "IntervalFinalized", "SettlementCompleted", "SettlementDefaulted",
                    "AlertRaised", "AlertCleared"]
assert set(EventType.__args__) == set(EVENT_TYPES)     # type: ignore[attr-defined]


class WebhookCreate(Request):
    url: AnyHttpUrl = Field(description="where the events are POSTed (http or https)")
    event_types: Annotated[list[EventType], Field(min_length=1, max_length=len(EVENT_TYPES))]
    description: str | None = Field(default=None, max_length=200)


class WebhookInfo(Model):
    id: int
    url: str
    event_types: list[str]
    description: str | None
    status: str = Field(description="active, disabled, or pending (not delivering yet)")
    failures: int = Field(description="consecutive failed requests")
    last_error: str | None
    disabled_reason: str | None
    last_delivered_at: datetime | None
    created_at: datetime


class WebhookCreated(WebhookInfo):
    secret: str = Field(description="the whsec_ signing secret: shown this once")


class WebhookList(Model):
    webhooks: list[WebhookInfo]


def _info(h: Webhook) -> dict[str, object]:
    return {"id": h.id, "url": h.url, "event_types": list(h.event_types),
            "description": h.description, "status": h.status or "pending",
            "failures": h.failures, "last_error": h.last_error,
            "disabled_reason": h.disabled_reason,
            "last_delivered_at": iso(h.last_delivered_at_ms), "created_at": iso(h.created_at_ms)}


def _wake(call: Call) -> None:
    sub = call.ctx.subsystem("webhooks")
    if sub is not None:
        call.after_commit.append(sub.wake)


async def add_webhook(call: Call) -> Reply:
    """Register a webhook; the answer holds its secret, shown this once."""
    body: WebhookCreate = call.body
    if not call.ctx.config.webhooks.enabled:
        raise Problem(409, "webhooks-off", "Webhooks are off", "this node delivers no webhooks "
                      "([webhooks] enabled = false): a registration would never be used")
    hook = await create(call.write, str(body.url), body.event_types, body.description)
    _wake(call)
    return Reply(WebhookCreated(secret=hook.secret, **_info(hook)))  # type: ignore[arg-type]


async def list_webhooks(call: Call) -> Reply:
    """Every webhook with its delivery state (never its secret)."""
    hooks = await registrations.all_webhooks(call.ctx.db)
    return Reply(WebhookList(webhooks=[WebhookInfo(**_info(h))  # type: ignore[arg-type]
                                       for h in hooks]))


async def remove_webhook(call: Call) -> web.StreamResponse:
    """Remove a webhook and what was waiting for it."""
    hook_id = call.int_param("id")
    async with call.ctx.store.write() as tx:
        removed = await registrations.remove(tx, hook_id)
    if not removed:
        raise Problem(404, "webhook-not-found", "Not found", f"no webhook {hook_id}")
    sub = call.ctx.subsystem("webhooks")
    if sub is not None:
        sub.wake()
    return web.Response(status=204)
