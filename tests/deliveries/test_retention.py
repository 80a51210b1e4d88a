"""Events are purged after event_days only once every destination has them."""

from __future__ import annotations

from gridnode.store import Store, events, now_ms, retention
from gridnode.store import deliveries as stored
from simulators.platform import PlatformSimulator
from tests.deliveries.helpers import engine_for, finalize_readings, running, wait_for

DAY_MS = 86_400_000


async def test_events_wait_for_every_destination(store: Store, platform: PlatformSimulator,
                                                 secret: str) -> None:
    await finalize_readings(store, ["m1", "m2"], [1_800_000_000, 1_800_000_900])
    last = await events.last_id(store)
    async with store.write() as tx:       # a destination that has seen nothing yet
        await stored.ensure_destination(tx, "slow", "test", cursor=0)
    future = now_ms() + DAY_MS            # every event counts as old
    done = await retention.purge_events(store, future, batch=3, pause_s=0)
    assert done.events == 0 and done.bound == 0

    async with store.write() as tx:
        await stored.remove_destination(tx, "slow")
    platform.add_fault(status=400)        # the first request's items are parked
    engine, _ = engine_for(store, platform, [secret])
    async with running(engine):
        await wait_for(lambda: _parked(store), 10, "parked items")
    parked = await stored.items(store, status="parked")
    first_parked = min(p.event_id for p in parked)
    done = await retention.purge_events(store, future, batch=3, pause_s=0)
    assert done.bound == first_parked - 1
    assert done.events == first_parked - 1
    left = await events.since(store, 0, limit=1000)
    assert left[0].id == first_parked and left[-1].id == last

    # replayed and delivered: nothing holds the log any more, but young events stay
    async with store.write() as tx:
        for p in parked:
            await stored.replay(tx, p.id)
    async with running(engine):
        await wait_for(lambda: _all_delivered(store), 10, "the replayed items")
    young = await retention.purge_events(store, now_ms() - DAY_MS, batch=3, pause_s=0)
    assert young.events == 0
    done = await retention.purge_events(store, future, batch=3, pause_s=0)
    assert done.events == last - first_parked + 1 and done.items == 4
    assert await events.since(store, 0) == []
    assert await events.last_id(store) == 0
    # ids never repeat after a purge (AUTOINCREMENT): the cursor stays meaningful
    await finalize_readings(store, ["m1"], [1_800_001_800])
    assert (await events.since(store, 0))[0].id > last


async def _parked(store: Store) -> bool:
    return bool(await stored.items(store, status="parked"))


async def _all_delivered(store: Store) -> bool:
    return set((await stored.status_counts(store)).get("upstream", {})) == {"delivered"}
