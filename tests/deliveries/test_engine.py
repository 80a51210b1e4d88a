"""The engine's rules with a destination written for the test (the engine's own Destination
protocol, in memory): per-item retries keep the order per meter and never spin."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from gridnode.deliveries.engine import Delivery, DeliveryEngine, Item, Outcome, Policy
from gridnode.store import Store, events, now_ms
from gridnode.store.events import Event, EventType
from tests.deliveries.helpers import running, wait_for


class Recorder:
    """Wants interval.closed events; the first answer retries the first item for 1 s and the
    second for 0.05 s (both of meter m) and delivers the rest."""

    name = "memory"
    kind = "test"

    def __init__(self) -> None:
        self.sent: list[list[str]] = []
        self.delivered: list[str] = []

    def select(self, event: Event) -> Item | None:
        if event.type != EventType.INTERVAL_CLOSED:
            return None
        return Item(f"k{event.id}", "x", {"n": event.id}, event.meter_id)

    async def send(self, items: Sequence[Delivery]) -> list[Outcome]:
        keys = [d.idempotency_key for d in items]
        self.sent.append(keys)
        if len(self.sent) == 1:
            return [Outcome.retry(1.0, "busy"), Outcome.retry(0.05, "busy")] + [
                Outcome.delivered()] * (len(items) - 2)
        self.delivered += keys
        return [Outcome.delivered()] * len(items)


class CountingEngine(DeliveryEngine):
    steps = 0

    async def step(self, r):  # type: ignore[no-untyped-def]
        self.steps += 1
        return await super().step(r)


async def test_item_retries_keep_meter_order_without_spinning(store: Store) -> None:
    async with store.write() as tx:
        for meter in ("m", "m", "n"):
            await events.append(tx, EventType.INTERVAL_CLOSED, {}, at_ms=now_ms(),
                                meter_id=meter)
    dest = Recorder()
    engine = CountingEngine(store)
    engine.add(dest, Policy(batch_size=10, retry_base_s=0.01, retry_max_s=0.02, poll_s=0.2))
    async with running(engine):
        await wait_for(lambda: len(dest.delivered) == 2, 5, "both retried items")
        await asyncio.sleep(0.1)
    assert dest.sent[0] == ["k1", "k2", "k3"]
    # k2 was due after 0.05 s but waited for k1 (same meter): they went together, in order
    assert dest.sent[1:] == [["k1", "k2"]]
    assert engine.steps < 20, engine.steps
