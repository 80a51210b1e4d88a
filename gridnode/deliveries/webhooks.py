"""Webhooks: registered receivers get the node's events, one signed request per event.

Event types (the platform design's four plus four of the node's), from the event log:
TransactionSubmitted (an operation became `submitted`), TransactionConfirmed (`finalized`),
TransactionFailed (`failed`), IntervalFinalized (a `meter_reading` operation `finalized`: a
webhook that wants it gets that instead of TransactionConfirmed), SettlementCompleted,
SettlementDefaulted, AlertRaised, AlertCleared.

A request's body is ``{"type": <event type>, "timestamp": <ISO 8601 of the event>, "data":
{...}}``, signed the Standard Webhooks way (gridnode.deliveries.signing) with the webhook's own
``whsec_`` secret: ``webhook-id`` is stable across retries (the receiver's dedupe key),
``webhook-timestamp`` is the attempt's. 2xx delivers; 410 Gone disables the webhook; 429/503
honour Retry-After; 3xx (redirects are not followed), 408, 5xx, timeouts and connection errors
are tried again with backoff; other 4xx park the item with the answer (``gridnode deliveries
replay``). A webhook failing without a break for `[webhooks] disable_after_s` (3 days) is
disabled too; a disabled webhook raises the alert `webhook_disabled:<id>`, cleared once it is
enabled again or removed.

`WebhooksSubsystem` runs a delivery engine of its own with one destination per registration,
and picks up registrations made or removed by the API (at once) or the CLI (within
`sync_every_s`). A new webhook starts at the end of the event log as it was when it was
registered: it gets what happens from then on, not the node's history.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import AnyHttpUrl, TypeAdapter, ValidationError

from gridnode.config import GridnodeConfig
from gridnode.config.webhooks import WebhooksConfig
from gridnode.deliveries import signing
from gridnode.deliveries.backoff import retry_after
from gridnode.deliveries.engine import (
    Delivery,
    DeliveryEngine,
    Item,
    Outcome,
    OutcomeKind,
    Policy,
)
from gridnode.deliveries.http import HttpClient
from gridnode.log import get_logger
from gridnode.store import Store, StoreError, events
from gridnode.store import alerts as stored_alerts
from gridnode.store import deliveries as stored
from gridnode.store import webhooks as registrations
from gridnode.store.db import WriteTx
from gridnode.store.events import Event
from gridnode.store.webhooks import KIND, Webhook

log = get_logger(__name__)

EVENT_TYPES = ("TransactionSubmitted", "TransactionConfirmed", "TransactionFailed",
               "IntervalFinalized", "SettlementCompleted", "SettlementDefaulted",
               "AlertRaised", "AlertCleared")
ALERT_PREFIX = "webhook_disabled:"
ANSWER_MAX = 500
RETRYABLE = frozenset({408, 425, 429})
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_URL: TypeAdapter[AnyHttpUrl] = TypeAdapter(AnyHttpUrl)


def check_url(url: str) -> str:
    """An http(s) URL as given; ValueError says what is allowed."""
    try:
        _URL.validate_python(url)
    except ValidationError:
        raise ValueError(f"{url!r}: expected an http:// or https:// URL") from None
    return url


def candidates(event: Event) -> tuple[str, ...]:
    """The webhook event types an event can be, most specific first."""
    if event.type == "operation.status":
        new = event.data.get("new")
        if new == "submitted":
            return ("TransactionSubmitted",)
        if new == "finalized":
            return (("IntervalFinalized", "TransactionConfirmed")
                    if event.data.get("tx_type") == "meter_reading"
                    else ("TransactionConfirmed",))
        if new == "failed":
            return ("TransactionFailed",)
        return ()
    return {"settlement.completed": ("SettlementCompleted",),
            "settlement.defaulted": ("SettlementDefaulted",),
            "alert.raised": ("AlertRaised",),
            "alert.cleared": ("AlertCleared",)}.get(event.type, ())


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


class WebhookDestination:
    """One registration as a destination of the delivery engine."""

    kind = KIND

    def __init__(self, hook: Webhook, store: Store, node_id: str, timeout_s: float) -> None:
        self.hook = hook
        self.name = hook.destination
        self.store = store
        self.node = _UNSAFE.sub("_", node_id)
        self.node_id = node_id
        self.wanted = frozenset(hook.event_types)
        self.timeout_s = timeout_s
        self.http = HttpClient(timeout_s)

    # -- selection -----------------------------------------------------------------------------
    async def select(self, event: Event) -> Item | None:
        kind = next((t for t in candidates(event) if t in self.wanted), None)
        if kind is None:
            return None
        data: dict[str, Any] = {"node_id": self.node_id, "event_id": event.id}
        if event.type == "operation.status" and event.operation_id is not None:
            facts = await stored.operation_facts(self.store, event.operation_id)
            if facts is None:
                return None
            p = facts.payload
            if kind == "IntervalFinalized":
                data |= {"meter_id": p.get("meter_id"), "interval_start": p.get("interval_start"),
                         "interval_end": p.get("interval_end"),
                         "import_wh": p.get("energy_consumed_wh"),
                         "export_wh": p.get("energy_produced_wh"),
                         "backfilled": bool(p.get("backfilled", False))}
            else:
                data |= {"tx_type": facts.tx_type, "status": event.data.get("new"),
                         "reason": event.data.get("reason"), "payload": p,
                         "error": facts.last_error if kind == "TransactionFailed" else None}
            data |= {"operation_id": facts.operation_id, "signature": facts.signature,
                     "slot": facts.slot}
        else:
            data |= dict(event.data)
        if event.meter_id is not None:
            data.setdefault("meter_id", event.meter_id)
        payload = {"type": kind, "timestamp": _iso(event.at_ms), "data": data}
        return Item(f"msg_{self.node}_{event.id}", kind, payload, event.meter_id)

    # -- sending -------------------------------------------------------------------------------
    async def aclose(self) -> None:
        await self.http.aclose()

    async def send(self, items: Sequence[Delivery]) -> list[Outcome]:
        """One request per item, in order; after a failure the rest wait (not sent)."""
        out: list[Outcome] = []
        for d in items:
            outcome = await self._send_one(d)
            out.append(outcome)
            if outcome.kind in (OutcomeKind.RETRY, OutcomeKind.DISABLE):
                break
        rest = len(items) - len(out)
        return out + [Outcome.retry(None, "not sent: an earlier event failed")] * rest

    async def _send_one(self, d: Delivery) -> Outcome:
        import aiohttp  # loaded by the session already; not at import (see deliveries.http)

        body = json.dumps(d.payload, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json",
                   **signing.sign([self.hook.secret], d.idempotency_key, body)}
        try:
            async with self.http.session().post(self.hook.url, data=body, headers=headers,
                                                allow_redirects=False) as resp:
                status = resp.status
                text = await resp.text(errors="replace")
                after = retry_after(resp.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return Outcome.retry(None, f"{type(exc).__name__}: {exc}"[:ANSWER_MAX])
        answer = f"HTTP {status}: {text[:ANSWER_MAX]}"
        if 200 <= status < 300:
            return Outcome.delivered()
        if status == 410:
            return Outcome.disable(answer)
        if status in (429, 503):
            return Outcome.retry(after, answer)
        if status < 400 or status in RETRYABLE or status >= 500:
            return Outcome.retry(None, answer)
        return Outcome.park(answer)


class WebhooksSubsystem:
    """The `[webhooks]` subsystem (see the module docstring)."""

    name = "webhooks"

    def __init__(self, cfg: WebhooksConfig, store: Store, node_id: str) -> None:
        self.cfg = cfg
        self.store = store
        self.node_id = node_id
        self.engine = DeliveryEngine(store)
        self.alerts: set[int] = set()       # webhooks whose disabled alert is raised
        self._wake = asyncio.Event()
        self._progress = time.monotonic()
        self._waiting = False

    @classmethod
    def from_config(cls, config: GridnodeConfig, store: Store) -> WebhooksSubsystem:
        return cls(config.webhooks, store, config.node.id)

    def progress(self) -> float:
        """The sync loop's progress (waiting between looks counts) or the engine's, the later."""
        if self._waiting:
            self._progress = time.monotonic()
        return max(self._progress, self.engine.progress())

    def wake(self) -> None:
        """Look at the registrations now (one was added or removed)."""
        self._wake.set()

    async def run(self) -> None:
        self.alerts = {int(a.name.removeprefix(ALERT_PREFIX))
                       for a in await stored_alerts.all_alerts(self.store)
                       if a.name.startswith(ALERT_PREFIX) and a.raised}
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.engine.run(), name="webhooks-engine")
            tg.create_task(self._sync_loop(), name="webhooks-sync")

    async def _sync_loop(self) -> None:
        while True:
            self._progress = time.monotonic()
            try:
                await self.sync()
            except StoreError as exc:       # a full disk: the next round tries again
                log.warning("webhooks: registrations not synced", error=str(exc))
            self._waiting = True
            try:
                async with asyncio.timeout(self.cfg.sync_every_s):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._waiting = False
            self._wake.clear()

    def _policy(self, hook: Webhook) -> Policy:
        c = self.cfg
        return Policy(batch_size=c.batch_size, retry_base_s=c.retry_base_s,
                      retry_max_s=c.retry_max_s, start="now", poll_s=c.poll_s,
                      disable_after_s=c.disable_after_s,
                      config={"url": hook.url, "event_types": list(hook.event_types)})

    async def sync(self) -> None:
        """Destinations for the registrations, none for removed ones, and their alerts."""
        # Destinations first: a webhook registered between the two reads then has its
        # registration seen too, and is never mistaken for a removed one (whose destination
        # would be deleted, and the events committed since its registration never sent).
        known = {d.name for d in await stored.destinations(self.store, KIND)}
        hooks = {h.destination: h for h in await registrations.all_webhooks(self.store)}
        running = {d.name for d in self.engine.destinations}
        for name in (running | known) - set(hooks):
            await self.engine.remove(name, forget=True)
            log.info("webhook removed", destination=name)
        for name, hook in hooks.items():
            if name not in running:
                self.engine.add(WebhookDestination(hook, self.store, self.node_id,
                                                   self.cfg.timeout_s), self._policy(hook))
                log.info("webhook delivering", destination=name, url=hook.url,
                         event_types=",".join(hook.event_types))
        await self._alerts(list(hooks.values()))

    async def _alerts(self, hooks: list[Webhook]) -> None:
        disabled = {h.id: h for h in hooks if h.status == stored.DISABLED}
        changes = [(i, True) for i in disabled if i not in self.alerts]
        changes += [(i, False) for i in self.alerts if i not in disabled]
        if not changes:
            return
        now = int(time.time() * 1000)
        async with self.store.write() as tx:
            for hook_id, raised in changes:
                hook = disabled.get(hook_id)
                detail = (f"webhook {hook_id} ({hook.url}) disabled: {hook.disabled_reason}"
                          if hook is not None else f"webhook {hook_id} enabled again or removed")
                await stored_alerts.change(tx, f"{ALERT_PREFIX}{hook_id}", raised, value=None,
                                           threshold=None, detail=detail[:1000], at_ms=now)
        for hook_id, raised in changes:
            if raised:
                self.alerts.add(hook_id)
                log.warning("alert raised", alert=f"{ALERT_PREFIX}{hook_id}",
                            detail=disabled[hook_id].disabled_reason)
            else:
                self.alerts.discard(hook_id)
                log.info("alert cleared", alert=f"{ALERT_PREFIX}{hook_id}")


async def create(tx: WriteTx, url: str, event_types: Sequence[str],
                 description: str | None = None) -> Webhook:
    """Register a webhook with a new secret (the caller shows it once), and its destination
    with the cursor at the log's end in the same transaction: it gets every event committed
    after its registration, however late the daemon starts delivering it."""
    hook = await registrations.add(tx, check_url(url), list(dict.fromkeys(event_types)),
                                   signing.generate_secret(), description)
    await stored.ensure_destination(tx, hook.destination, KIND, cursor=await events.last_id(tx),
                                    config={"url": hook.url,
                                            "event_types": list(hook.event_types)})
    return hook


# -- CLI: gridnode webhooks add|list|remove ------------------------------------------------------

def add_commands(sub: argparse._SubParsersAction,  # type: ignore[type-arg]
                 with_config: Callable[..., argparse.ArgumentParser]) -> None:
    wh = sub.add_parser("webhooks", help="register, list and remove webhooks").add_subparsers(
        dest="webhooks_command", required=True, metavar="COMMAND")
    p = with_config(wh.add_parser("add", help="register a webhook; prints its secret once"),
                    db=True)
    p.add_argument("url")
    p.add_argument("--event", action="append", choices=EVENT_TYPES, metavar="TYPE",
                   help=f"an event type to send (repeatable; default all: "
                        f"{', '.join(EVENT_TYPES)})")
    p.add_argument("--description", default=None)
    p.set_defaults(fn=cmd_add)
    with_config(wh.add_parser("list", help="list webhooks and how their delivery goes"),
                db=True).set_defaults(fn=cmd_list)
    p = with_config(wh.add_parser("remove", help="remove a webhook and its deliveries"),
                    db=True)
    p.add_argument("id", type=int)
    p.set_defaults(fn=cmd_remove)


def cmd_add(args: argparse.Namespace) -> int:
    from gridnode.cli import EXIT_OK, UsageError, _database, _out, _with_store

    try:
        url = check_url(args.url)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.description is not None and len(args.description) > 200:
        raise UsageError("--description: at most 200 characters")

    async def go(store: Store) -> Webhook:
        async with store.write() as tx:
            return await create(tx, url, args.event or EVENT_TYPES, args.description)

    hook = asyncio.run(_with_store(_database(args), go))
    _out(f"webhook {hook.id}: {hook.url}")
    _out(f"events: {', '.join(hook.event_types)}")
    _out(f"secret: {hook.secret}")
    _out("(the secret is shown this once; the running daemon starts delivering within "
         "[webhooks] sync_every_s)")
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    from gridnode.cli import EXIT_OK, _database, _out, _with_store

    hooks = asyncio.run(_with_store(_database(args), registrations.all_webhooks))
    if not hooks:
        _out("no webhooks")
    for h in hooks:
        state = h.status or "not started"
        line = f"{h.id}  {h.url}  [{state}]  events: {', '.join(h.event_types)}"
        if h.failures:
            line += f"  failures: {h.failures} (last: {(h.last_error or '')[:120]})"
        if h.disabled_reason:
            line += f"  disabled: {h.disabled_reason[:120]}"
        _out(line)
    return EXIT_OK


def cmd_remove(args: argparse.Namespace) -> int:
    from gridnode.cli import EXIT_OK, CliError, _database, _out, _with_store

    async def go(store: Store) -> bool:
        async with store.write() as tx:
            return await registrations.remove(tx, args.id)

    if not asyncio.run(_with_store(_database(args), go)):
        raise CliError(f"no webhook {args.id}")
    _out(f"webhook {args.id} removed")
    return EXIT_OK
