"""Events are purged after event_days only once every destination has them."""

from __future__ import annotations

from pathlib import Path

from gridnode.store import Store, events, now_ms, retention
from gridnode.store import deliveries as stored
from simulators.platform import PlatformSimulator
from tests.deliveries.helpers import engine_for, finalize_readings, running, wait_for
from tests.processes import gridnode

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


L = 900
B0 = 1_780_000_200 // L * L


async def _record(store: Store, meters: list[str], t0: int, t1: int, step: int = 30) -> None:
    """Readings every `step` s from t0 to t1, every one kept raw, with their intervals and
    outbox operations, as the meters subsystem writes them."""
    from gridnode.meters.reading import Reading
    from gridnode.meters.recorder import Recorder
    from gridnode.testing import ManualClock, drain
    from tests.meters.conftest import entry
    from tests.meters.conftest import running as recording

    clock = ManualClock(t0)
    rec = Recorder(store, [entry(m) for m in meters], interval_s=L, clock=clock,
                   health_flush_s=3600, raw_every_s=0)
    async with recording(rec):
        for t in range(t0, t1 + 1, step):
            clock.advance(t - clock.time())
            rec.submit_cycle([Reading(m, t * 1000, t * 1000, 1000 + (t - t0) * 0.2, 0.0)
                              for m in meters])
            await drain(rec)


async def _finalize_all(store: Store) -> None:
    rows = await store.fetchall("SELECT id FROM operations WHERE status = 'pending'")
    async with store.write() as tx:      # as the pipeline would, each change with its event
        for r in rows:
            for status in ("signed", "submitted", "confirmed", "finalized"):
                await tx.set_status("operation", int(r["id"]), status, reason="test")


async def _raw(store: Store) -> int:
    row = await store.fetchone("SELECT count(*) AS n FROM readings")
    return int(row["n"]) if row else 0


async def test_raw_readings_wait_for_their_interval_upstream(
        store: Store, platform: PlatformSimulator, secret: str) -> None:
    await _record(store, ["a", "b"], B0 - 30, B0 + 2 * L + 30)
    await _finalize_all(store)
    cutoff = (B0 + 3 * L) * 1000
    before = await _raw(store)
    async with store.write() as tx:       # upstream configured, nothing taken yet
        await stored.ensure_destination(tx, "upstream", "upstream", cursor=0)
    assert (await retention.purge_raw(store, cutoff, batch=50, pause_s=0)).deleted == 0
    platform.add_fault(status=503, count=1000, retry_after=60)      # the platform is down
    engine, _ = engine_for(store, platform, [secret])
    async with running(engine):
        await wait_for(lambda: len(platform.requests()) >= 1, 10, "a refused request")
    assert await stored.items(store, status="pending")
    assert (await retention.purge_raw(store, cutoff, batch=50, pause_s=0)).deleted == 0
    platform.faults.clear()
    async with store.write() as tx:        # no need to wait out the Retry-After in a test
        await stored.request_succeeded(tx, "upstream")
    async with running(engine):
        await wait_for(lambda: _all_delivered(store), 10, "the intervals delivered")
    # the last interval was finalized in the millisecond of the cursor's event: held (the rule
    # compares times and errs on keeping) until the destination has seen a later event
    first = await retention.purge_raw(store, cutoff, batch=50, pause_s=0)
    assert first.deleted < 2 * 2 * 30
    async with store.write() as tx:
        await events.append(tx, events.EventType.ALERT_RAISED, {"name": "x"}, at_ms=now_ms() + 1)
    async with running(engine):
        await wait_for(lambda: _cursor_at_end(store), 10, "the cursor at the log's end")
    done = await retention.purge_raw(store, cutoff, batch=50, pause_s=0)
    assert first.deleted + done.deleted == 2 * 2 * 30
    assert await _raw(store) == before - 2 * 2 * 30


async def _cursor_at_end(store: Store) -> bool:
    row = await stored.destination(store, "upstream")
    return row is not None and row.cursor == await events.last_id(store)


async def test_a_destination_no_longer_configured_is_removed_by_the_operator(
        tmp_path: Path, store: Store) -> None:
    await finalize_readings(store, ["m1"], [1_800_000_000])
    async with store.write() as tx:
        await stored.ensure_destination(tx, "upstream", "upstream", cursor=0)
    future = now_ms() + DAY_MS
    assert (await retention.purge_events(store, future, batch=10, pause_s=0)).events == 0
    out = await gridnode("deliveries", "remove", "--db", str(tmp_path / "node" / "gridnode.db"),
              "upstream", "--reason", "platform contract ended")
    assert out.returncode == 0, out.stderr
    assert "destination upstream removed with its items (none)" in out.stdout
    assert (await retention.purge_events(store, future, batch=10, pause_s=0)).events == 5
    row = await store.fetchone("SELECT new_status, details FROM audit_log WHERE entity = "
                               "'delivery_destination' ORDER BY id DESC LIMIT 1")
    assert row is not None and row["new_status"] == "removed"
    assert "platform contract ended" in row["details"]
