"""The delivery engine: every destination gets what the event log reports, at least once.

Why this shape. The event log (gridnode.store.events) is durable and its ids only grow, so a
destination needs only a cursor. Each destination's task loops:

1. capture: read the events after its cursor, let the destination `select` what it wants (and
   turn each into its payload), then store those items and the cursor's advance in one write
   transaction. A crash before the commit re-reads the same events; one after it finds the
   items stored. Capture runs ahead of sending by a bounded number of items, so a destination
   that is down for days holds its backlog in the log, not twice.
2. send: the oldest due items (an item waits while an earlier pending item with its order key
   waits: order per meter), `batch_size` at a time, through ``destination.send``; the outcome of
   each is stored after the answer. A kill between the request and that commit sends the items
   again: receivers dedupe on the idempotency key.

Outcomes: `delivered`; `retry(after_s)` (after_s from a Retry-After, else the backoff decides);
`park(answer)` (refused: kept with the answer for an operator's replay, never dropped);
`disable(answer)` (410 Gone: the destination stops until an operator enables it). When no item
of a request got through, the request failed as a whole: the destination waits (exponential
backoff with full jitter between retry_base_s and retry_max_s, or the Retry-After) before its
next request, so a 429 storm or an outage is ridden out without a tight loop.

Each destination runs in its own task with its own errors: one that fails, hangs or is slow
never holds back another, and the pipeline never waits for any of them (the engine only reads
the log and writes its own rows, in short transactions).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import random
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from gridnode.deliveries.backoff import Backoff
from gridnode.log import get_logger
from gridnode.store import StorageFull, Store, events, now_ms
from gridnode.store import deliveries as stored
from gridnode.store.deliveries import ItemRow, NewItem
from gridnode.store.events import Event

if TYPE_CHECKING:
    from gridnode.config import GridnodeConfig

log = get_logger(__name__)

Delivery = ItemRow          # what a destination is asked to send: a stored item
CAPTURE_EVENTS = 500        # events read per capture step
ERROR_PAUSE_S = 5.0         # after an unexpected error in a destination's loop
WARN_EVERY_S = 600.0        # repeat a "still failing" warning at most this often


class OutcomeKind(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    PARK = "park"
    DISABLE = "disable"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one item of a `send`."""

    kind: OutcomeKind
    after_s: float | None = None        # RETRY: wait at least this (Retry-After); None: backoff
    answer: str | None = None           # what the destination said (kept for the operator)

    @classmethod
    def delivered(cls) -> Outcome:
        return cls(OutcomeKind.DELIVERED)

    @classmethod
    def retry(cls, after_s: float | None = None, answer: str | None = None) -> Outcome:
        return cls(OutcomeKind.RETRY, after_s, answer)

    @classmethod
    def park(cls, answer: str) -> Outcome:
        return cls(OutcomeKind.PARK, None, answer)

    @classmethod
    def disable(cls, answer: str) -> Outcome:
        return cls(OutcomeKind.DISABLE, None, answer)


@dataclass(frozen=True, slots=True)
class Item:
    """What a destination makes of one event it wants.

    `key` is the idempotency key: stable (the same event always gives the same key) and unique
    within the destination; an item whose key the destination already holds is not stored
    again. Items with one `order_key` (a meter id) are delivered in event order.
    """

    key: str
    kind: str
    payload: Mapping[str, Any]
    order_key: str | None = None


@runtime_checkable
class Destination(Protocol):
    """A place deliveries go. `select` may be a plain function or a coroutine function (one
    that reads more from the store to build the payload). `send` returns one Outcome per item,
    in order; an exception from it counts as a retry of every item."""

    name: str
    kind: str

    def select(self, event: Event) -> Item | None | Awaitable[Item | None]: ...

    async def send(self, items: Sequence[Delivery]) -> list[Outcome]: ...


@dataclass(frozen=True, slots=True)
class Policy:
    """How the engine treats one destination."""

    batch_size: int = 50
    retry_base_s: float = 5.0
    retry_max_s: float = 600.0
    # A new destination starts at the log's beginning (everything it holds) or its end.
    start: Literal["beginning", "now"] = "beginning"
    # Stored with a new destination (its kind's own settings, e.g. a webhook's URL).
    config: Mapping[str, Any] | None = None
    # Pending items captured ahead of sending at most (None: max(200, 4 x batch_size)).
    capture_ahead: int | None = None
    # Disable the destination after failing without a break for this long (None: never).
    disable_after_s: float | None = None
    poll_s: float = 1.0

    @property
    def ahead(self) -> int:
        return self.capture_ahead or max(200, 4 * self.batch_size)


class _Removed(Exception):
    """The destination's row is gone (removed by an operator while it ran)."""


@dataclass(slots=True)
class _Runner:
    destination: Destination
    policy: Policy
    backoff: Backoff
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    wait_until_ms: int | None = None
    ensured: bool = False
    warned_at: float = -WARN_EVERY_S
    delivered: int = 0
    parked: int = 0
    requests: int = 0
    failed_requests: int = 0


class DeliveryEngine:
    """The deliveries subsystem: one task per destination (see the module docstring)."""

    name = "deliveries"

    def __init__(self, store: Store, *, rng: random.Random | None = None) -> None:
        self.store = store
        self._rng = rng or random.Random()
        self._runners: dict[str, _Runner] = {}
        self._running = False
        self._progress = time.monotonic()

    @classmethod
    def from_config(cls, config: GridnodeConfig, store: Store) -> DeliveryEngine:
        """The engine with every configured destination; ConfigError when one cannot be
        built (a missing or unreadable secret)."""
        engine = cls(store)
        if config.upstream is not None:
            from gridnode.deliveries.upstream import UpstreamDestination

            engine.add(*UpstreamDestination.from_config(config, store))
        return engine

    # -- registration --------------------------------------------------------------------------

    def add(self, destination: Destination, policy: Policy | None = None) -> None:
        """Deliver to `destination` (started at once when the engine runs)."""
        if destination.name in self._runners:
            raise ValueError(f"delivery destination {destination.name!r} is already added")
        policy = policy or Policy()
        runner = _Runner(destination, policy,
                         Backoff(policy.retry_base_s, policy.retry_max_s, self._rng))
        self._runners[destination.name] = runner
        if self._running:
            self._start(runner)

    async def remove(self, name: str, *, forget: bool = False) -> None:
        """Stop delivering to `name`; with `forget`, delete its cursor and items too."""
        runner = self._runners.pop(name, None)
        if runner is not None and runner.task is not None:
            runner.task.cancel()
            await asyncio.gather(runner.task, return_exceptions=True)
        if runner is not None:
            await _close(runner.destination)
        if forget:
            async with self.store.write() as tx:
                await stored.remove_destination(tx, name)

    def wake(self, name: str | None = None) -> None:
        """Look at `name` (or every destination) now rather than at the next poll."""
        for n, runner in self._runners.items():
            if name is None or n == name:
                runner.wake.set()

    @property
    def destinations(self) -> list[Destination]:
        return [r.destination for r in self._runners.values()]

    def stats(self) -> dict[str, dict[str, int]]:
        """Per destination since start: items delivered and parked, requests and failed ones."""
        return {n: {"delivered": r.delivered, "parked": r.parked, "requests": r.requests,
                    "failed_requests": r.failed_requests} for n, r in self._runners.items()}

    # -- subsystem -----------------------------------------------------------------------------

    def progress(self) -> float:
        return self._progress

    async def run(self) -> None:
        self._running = True
        for runner in self._runners.values():
            self._start(runner)
        try:
            await asyncio.Event().wait()
        finally:
            self._running = False
            tasks = [r.task for r in self._runners.values() if r.task is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for runner in self._runners.values():
                runner.task = None
                await _close(runner.destination)

    def _start(self, runner: _Runner) -> None:
        runner.task = asyncio.create_task(self._loop(runner),
                                          name=f"deliveries:{runner.destination.name}")

    # -- one destination -----------------------------------------------------------------------

    async def _loop(self, r: _Runner) -> None:
        name = r.destination.name
        errors = 0
        while True:
            self._progress = time.monotonic()
            try:
                if not r.ensured:       # created once; a row removed later is not brought back
                    await self._ensure(r)
                    r.ensured = True
                busy = await self.step(r)
                errors = 0
            except asyncio.CancelledError:
                raise
            except _Removed:
                log.info("deliveries: destination removed; stopping its deliveries",
                         destination=name)
                return
            except StorageFull as exc:      # a state, not a fault: wait it out
                errors += 1
                if errors == 1:
                    log.warning("deliveries: storage full, waiting", destination=name,
                                error=str(exc))
                await asyncio.sleep(min(ERROR_PAUSE_S * errors, 60.0))
                continue
            except Exception:
                errors += 1
                log.exception("deliveries: destination step failed", destination=name,
                              errors=errors)
                await asyncio.sleep(min(ERROR_PAUSE_S * errors, 300.0))
                continue
            if not busy:
                await self._sleep(r)

    async def _sleep(self, r: _Runner) -> None:
        timeout = r.policy.poll_s
        if r.wait_until_ms is not None:
            timeout = min(timeout, max(0.0, (r.wait_until_ms - now_ms()) / 1000))
        r.wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await r.wake.wait()

    async def step(self, r: _Runner) -> bool:
        """One turn of a destination: capture, then send one batch if one is due; True when it
        did something (the loop goes on at once), False when it may sleep."""
        dest, policy = r.destination, r.policy
        row = await stored.destination(self.store, dest.name)
        if row is None:
            raise _Removed(dest.name)
        captured = await self._capture(r, row.cursor)
        if row.status == stored.DISABLED:
            r.wait_until_ms = None
            return False
        now = now_ms()
        if row.next_attempt_at_ms is not None and row.next_attempt_at_ms > now:
            r.wait_until_ms = row.next_attempt_at_ms
            return captured
        batch = await stored.due(self.store, dest.name, now, policy.batch_size)
        if not batch:
            r.wait_until_ms = await stored.next_item_attempt_ms(self.store, dest.name, now)
            return captured
        r.wait_until_ms = None
        outcomes = await self._send(r, batch)
        await self._record(r, row, batch, outcomes)
        return True

    async def _ensure(self, r: _Runner) -> stored.DestinationRow:
        cursor = 0 if r.policy.start == "beginning" else await events.last_id(self.store)
        async with self.store.write() as tx:
            return await stored.ensure_destination(
                tx, r.destination.name, r.destination.kind, cursor=cursor,
                config=r.policy.config)

    async def _capture(self, r: _Runner, cursor: int) -> bool:
        """Store what the destination selects from the events after `cursor`; True when events
        were taken (there may be more)."""
        dest = r.destination
        if await stored.pending_count(self.store, dest.name) >= r.policy.ahead:
            return False
        evs = await events.since(self.store, cursor, limit=CAPTURE_EVENTS)
        if not evs:
            return False
        new: list[NewItem] = []
        unselectable: list[tuple[str, str]] = []
        for ev in evs:
            try:
                picked = dest.select(ev)
                item = await picked if inspect.isawaitable(picked) else picked
            except Exception as exc:     # kept and parked: never skipped silently
                log.exception("deliveries: cannot make an item of an event",
                              destination=dest.name, event_id=ev.id, type=ev.type)
                key = f"unselectable:{ev.id}"
                unselectable.append((key, f"{type(exc).__name__}: {exc}"))
                item = Item(key, "unselectable", ev.to_json(), None)
            if item is not None:
                new.append(NewItem(ev.id, item.kind, item.key, item.order_key, item.payload))
        async with self.store.write() as tx:
            added = await stored.capture(tx, dest.name, cursor, evs[-1].id, new)
            for key, answer in unselectable:
                await stored.park_key(tx, dest.name, key, answer)
        if added:
            log.debug("deliveries: captured", destination=dest.name, items=added,
                      cursor=evs[-1].id)
        return True

    async def _send(self, r: _Runner, batch: list[Delivery]) -> list[Outcome]:
        r.requests += 1
        try:
            outcomes = await r.destination.send(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            answer = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return [Outcome.retry(None, answer)] * len(batch)
        if len(outcomes) != len(batch):
            log.error("deliveries: destination answered for the wrong number of items",
                      destination=r.destination.name, items=len(batch), outcomes=len(outcomes))
            return [Outcome.retry(None, "destination gave a wrong number of outcomes")] \
                * len(batch)
        return outcomes

    async def _record(self, r: _Runner, row: stored.DestinationRow, batch: list[Delivery],
                      outcomes: list[Outcome]) -> None:
        name = r.destination.name
        now = now_ms()
        delivered = [d.id for d, o in zip(batch, outcomes, strict=True)
                     if o.kind is OutcomeKind.DELIVERED]
        parked = [(d, o) for d, o in zip(batch, outcomes, strict=True)
                  if o.kind is OutcomeKind.PARK]
        retries = [(d, o) for d, o in zip(batch, outcomes, strict=True)
                   if o.kind is OutcomeKind.RETRY]
        disable = next((o for o in outcomes if o.kind is OutcomeKind.DISABLE), None)
        whole = not delivered and not parked
        answer = next((o.answer for o in outcomes if o.kind is not OutcomeKind.DELIVERED
                       and o.answer), "no answer")
        failures = row.failures + 1
        after = [o.after_s for _, o in retries if o.after_s is not None]
        delay = max(after) if after else r.backoff.delay(failures)
        disable_reason = disable.answer if disable is not None else None
        if (whole and disable_reason is None and r.policy.disable_after_s is not None
                and row.failing_since_ms is not None
                and now - row.failing_since_ms >= r.policy.disable_after_s * 1000):
            disable_reason = (f"failing since {row.failing_since_ms} for more than "
                              f"{r.policy.disable_after_s:.0f}s; last answer: {answer}")
        async with self.store.write() as tx:
            await stored.mark_delivered(tx, delivered)
            for d, o in parked:
                await stored.park(tx, d.id, o.answer or "refused")
            if disable_reason is not None:
                await stored.mark_attempted(tx, [d.id for d, o in zip(batch, outcomes,
                                                                      strict=True)
                                                 if o.kind in (OutcomeKind.RETRY,
                                                               OutcomeKind.DISABLE)], answer)
                await stored.disable(tx, name, disable_reason)
            elif whole:
                await stored.mark_attempted(tx, [d.id for d, _ in retries], answer)
                await stored.request_failed(tx, name, failures, now + int(delay * 1000), answer)
            else:
                await stored.request_succeeded(tx, name)
                for d, o in retries:
                    wait = o.after_s if o.after_s is not None else r.backoff.delay(d.attempts + 1)
                    await stored.mark_attempted(tx, [d.id], o.answer or "not acknowledged",
                                                now + int(wait * 1000))
        r.delivered += len(delivered)
        r.parked += len(parked)
        if parked:
            log.warning("deliveries: items parked (refused by the destination)",
                        destination=name, items=len(parked), answer=(parked[0][1].answer or "")
                        [:300], replay="gridnode deliveries replay")
        if disable_reason is not None:
            log.error("deliveries: destination disabled", destination=name,
                      reason=disable_reason[:300],
                      enable=f"gridnode deliveries replay --destination {name}")
        elif whole:
            r.failed_requests += 1
            loop_now = time.monotonic()
            if row.failures == 0 or loop_now - r.warned_at >= WARN_EVERY_S:
                r.warned_at = loop_now
                log.warning("deliveries: destination failing", destination=name,
                            failures=failures, retry_in_s=round(delay, 1), error=answer[:300])
            else:
                log.debug("deliveries: destination still failing", destination=name,
                          failures=failures, retry_in_s=round(delay, 1), error=answer[:300])
        else:
            if row.failures:
                log.info("deliveries: destination recovered", destination=name,
                         failed_requests=row.failures)
            log.debug("deliveries: batch sent", destination=name, delivered=len(delivered),
                      retried=len(retries), parked=len(parked))


async def _close(destination: Destination) -> None:
    close = getattr(destination, "aclose", None)
    if close is None:
        return
    try:
        await close()
    except Exception as exc:       # closing a client is not worth failing a stop for
        log.warning("deliveries: closing a destination failed",
                    destination=destination.name, error=str(exc))


__all__ = ["CAPTURE_EVENTS", "Delivery", "DeliveryEngine", "Destination", "Item", "Outcome",
           "OutcomeKind", "Policy"]
