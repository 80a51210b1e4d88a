"""The event log: each operation status change and each closed interval is one event, written in
the same transaction as the change, with ids that only grow."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gridnode.chain.txtypes import new_operation
from gridnode.chain.validation import MeterReadingPayload, UserRegistrationPayload
from gridnode.store import Store, StoreError, TransitionError, events, operations, transitions
from gridnode.store.events import EventType


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "db.sqlite")
    yield opened
    await opened.close()


def reading(meter: str, end: int) -> MeterReadingPayload:
    return MeterReadingPayload(meter_id=meter, interval_start=end - 900, interval_end=end,
                               energy_produced_wh=5, energy_consumed_wh=2)


USER = "4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T"


async def test_every_status_change_is_an_event_with_its_subjects(store: Store) -> None:
    async with store.write() as tx:
        a, _ = await operations.add(tx, new_operation(reading("m1", 900)))
        b, _ = await operations.add(
            tx, new_operation(UserRegistrationPayload(user=USER, user_type="prosumer",
                                                      location="x")),
            status=transitions.CREATED)
        await operations.move(tx, a, "signed", reason="signed")
        await operations.move(tx, b, "pending", reason="submitted by its client")
    got = await events.since(store, 0)
    assert [(e.type, e.operation_id, e.meter_id, e.data["old"], e.data["new"], e.data["tx_type"])
            for e in got] == [
        ("operation.status", a, "m1", None, "pending", "meter_reading"),
        ("operation.status", b, None, None, "created", "user_registration"),
        ("operation.status", a, "m1", "pending", "signed", "meter_reading"),
        ("operation.status", b, None, "created", "pending", "user_registration")]
    assert [e.id for e in got] == sorted({e.id for e in got})
    assert got[2].data["reason"] == "signed"
    # filters: by operation, by meter, by type, after a cursor
    assert [e.id for e in await events.since(store, 0, operation_id=b)] == [got[1].id, got[3].id]
    assert [e.id for e in await events.since(store, 0, meter_id="m1")] == [got[0].id, got[2].id]
    assert await events.since(store, got[3].id) == []
    assert [e.id for e in await events.since(store, got[1].id, limit=1)] == [got[2].id]
    assert await events.since(store, 0, types=[EventType.INTERVAL_CLOSED]) == []
    assert await events.last_id(store) == got[3].id


async def test_a_change_rolled_back_leaves_no_event(store: Store) -> None:
    async with store.write() as tx:
        a, _ = await operations.add(tx, new_operation(reading("m1", 900)))
    before = await events.last_id(store)
    with pytest.raises(TransitionError):
        async with store.write() as tx:
            await operations.move(tx, a, "signed", reason="signed")
            await operations.move(tx, a, "finalized", reason="landed")
            await operations.move(tx, a, "pending", reason="not allowed from finalized")
    assert await events.last_id(store) == before
    assert (await operations.get(store, a)).status == "pending"    # type: ignore[union-attr]
    with pytest.raises(StoreError, match="starts as one of"):
        async with store.write() as tx:
            await operations.add(tx, new_operation(reading("m2", 900)), status="signed")


async def test_ids_keep_growing_after_old_events_are_purged(store: Store) -> None:
    async with store.write() as tx:
        await operations.add(tx, new_operation(reading("m1", 900)))
        first = await events.interval_closed(tx, "m1", 0, 900, 2, 5, False, at_ms=1,
                                             operation_id=None)
    last = await events.last_id(store)
    assert first == last
    async with store.write() as tx:
        await tx.execute("DELETE FROM events")
        again = await events.interval_closed(tx, "m1", 900, 1800, 3, 4, True, at_ms=2)
    assert again > last
    [e] = await events.since(store, 0)
    assert (e.type, e.meter_id, e.data) == ("interval.closed", "m1", {
        "interval_start": 900, "interval_end": 1800, "import_wh": 3, "export_wh": 4,
        "backfilled": True})

