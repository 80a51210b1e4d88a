"""Retention: which raw readings may go, deleted in small batches, and the file shrunk after.

A raw reading may be deleted when every rule in RAW_RULES holds for it. Each rule is an SQL
condition on the reading ``r`` (a row of readings), with named parameters: old enough, its
interval finalized on chain, and (with an upstream destination) delivered upstream. Each batch
is its own short write transaction, so the one writer (meter readings, the outbox) never waits
long behind a purge.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from gridnode.store.db import Store

# The reading is older than the retention period.
OLDER_THAN_CUTOFF = "r.read_at_ms < :cutoff_ms"
# The interval the reading lies in is closed and its oracle reading is finalized on chain. The
# interval is the meter's last one starting at or before the reading (one index seek each).
_LAST_INTERVAL = ("FROM intervals i WHERE i.meter_id = r.meter_id "
                  "AND i.interval_start <= r.read_at_ms / 1000 "
                  "ORDER BY i.interval_start DESC LIMIT 1")
INTERVAL_FINALIZED = (
    f"r.read_at_ms < 1000 * (SELECT i.interval_end {_LAST_INTERVAL}) "
    "AND EXISTS (SELECT 1 FROM operations o WHERE o.status = 'finalized' AND o.idempotency_key = "
    f"(SELECT 'meter_reading:' || i.meter_id || ':' || i.interval_end {_LAST_INTERVAL}))")

# When the upstream platform is a delivery destination, the interval is delivered there: its
# destination's cursor is past the moment the interval was finalized (the cursor's event is
# younger than the operation's finalized_at_ms), and no interval item of the meter is still
# pending or parked. Without an upstream destination the rule holds for every reading.
_FINALIZED_AT = ("(SELECT o.finalized_at_ms FROM operations o WHERE o.idempotency_key = "
                 f"(SELECT 'meter_reading:' || i.meter_id || ':' || i.interval_end "
                 f"{_LAST_INTERVAL}))")
DELIVERED_UPSTREAM = (
    "NOT EXISTS (SELECT 1 FROM delivery_destinations dd WHERE dd.name = 'upstream' AND ("
    " dd.cursor = 0"
    " OR COALESCE((SELECT e.at_ms FROM events e WHERE e.id = dd.cursor), 1 << 62)"
    f" <= COALESCE({_FINALIZED_AT}, 1 << 62)"
    " OR EXISTS (SELECT 1 FROM delivery_items d WHERE d.destination = 'upstream'"
    "  AND d.order_key = r.meter_id AND d.kind = 'interval.finalized'"
    "  AND d.status != 'delivered')))")

RAW_RULES: list[str] = [OLDER_THAN_CUTOFF, INTERVAL_FINALIZED, DELIVERED_UPSTREAM]


@dataclass(frozen=True, slots=True)
class PurgeResult:
    deleted: int
    batches: int
    freed_pages: int


async def delete_raw_batch(store: Store, cutoff_ms: int, limit: int) -> int:
    """Delete at most `limit` raw readings that every rule allows, oldest first (through the
    time index); returns how many went."""
    where = " AND ".join(f"({rule})" for rule in RAW_RULES)
    async with store.write() as tx:
        res = await tx.execute(
            "DELETE FROM readings WHERE id IN (SELECT r.id FROM readings r "
            f"WHERE {where} ORDER BY r.read_at_ms LIMIT :limit)",
            {"cutoff_ms": cutoff_ms, "limit": limit})
    return res.rowcount


async def incremental_vacuum(store: Store, max_pages: int = 2000) -> int:
    """Give up to `max_pages` free pages back to the filesystem; returns how many were free."""
    row = await store.fetchone("PRAGMA freelist_count")
    free = int(row[0]) if row is not None else 0
    if free:
        await store.incremental_vacuum(max_pages)
    return free


async def purge_raw(store: Store, cutoff_ms: int, batch: int, pause_s: float = 0.05,
                    max_batches: int = 10_000) -> PurgeResult:
    """Delete what the rules allow, `batch` rows per transaction with a pause between them (the
    other writers get their turn), then shrink the file."""
    deleted = batches = 0
    while batches < max_batches:
        n = await delete_raw_batch(store, cutoff_ms, batch)
        batches += 1
        deleted += n
        if n < batch:
            break
        await asyncio.sleep(pause_s)
    freed = await incremental_vacuum(store) if deleted else 0
    return PurgeResult(deleted, batches, freed)


# -- events ------------------------------------------------------------------------------------
# An event may be deleted when it is older than the retention period and every delivery
# destination has taken it: its cursor is past it, and no item made from it (or from an earlier
# event) is still pending or parked. Delivered items older than the period go with them.

_EVENT_BOUND = (
    "SELECT min(b) AS bound FROM ("
    " SELECT cursor AS b FROM delivery_destinations"
    " UNION ALL SELECT min(event_id) - 1 FROM delivery_items WHERE status != 'delivered')")


@dataclass(frozen=True, slots=True)
class EventPurgeResult:
    events: int
    items: int
    batches: int
    freed_pages: int
    bound: int | None       # the newest event id every destination has (None: no destination)


async def event_bound(store: Store) -> int | None:
    """The newest event id that every destination has taken (None: there is no destination,
    nothing waits for any event)."""
    row = await store.fetchone(_EVENT_BOUND)
    return None if row is None or row["bound"] is None else int(row["bound"])


async def delete_events_batch(store: Store, cutoff_ms: int, bound: int | None,
                              limit: int) -> tuple[int, int]:
    """Delete, oldest first, the events older than `cutoff_ms` with an id up to `bound` among
    the next `limit` (one short write transaction); returns (deleted, looked at)."""
    async with store.write() as tx:
        row = await tx.fetchone(
            "SELECT count(*) AS n FROM (SELECT id FROM events WHERE id <= :bound "
            "ORDER BY id LIMIT :limit)", {"bound": bound if bound is not None else 1 << 62,
                                          "limit": limit})
        res = await tx.execute(
            "DELETE FROM events WHERE id IN (SELECT id FROM (SELECT id, at_ms FROM events "
            "WHERE id <= :bound ORDER BY id LIMIT :limit) WHERE at_ms < :cutoff_ms)",
            {"bound": bound if bound is not None else 1 << 62, "limit": limit,
             "cutoff_ms": cutoff_ms})
    return res.rowcount, int(row["n"]) if row is not None else 0


async def delete_delivered_batch(store: Store, cutoff_ms: int, limit: int) -> int:
    """Delete at most `limit` items delivered before `cutoff_ms`."""
    async with store.write() as tx:
        res = await tx.execute(
            "DELETE FROM delivery_items WHERE id IN (SELECT id FROM delivery_items "
            "WHERE status = 'delivered' AND delivered_at_ms < ? ORDER BY id LIMIT ?)",
            (cutoff_ms, limit))
    return res.rowcount


async def purge_events(store: Store, cutoff_ms: int, batch: int, pause_s: float = 0.05,
                       max_batches: int = 10_000) -> EventPurgeResult:
    """Delete events older than `cutoff_ms` that every destination has taken, and items
    delivered before it, `batch` rows per transaction, then shrink the file. Stops at the
    first event that is too young or not yet taken (ids grow with time)."""
    bound = await event_bound(store)
    n_events = n_items = batches = 0
    while batches < max_batches:
        deleted, looked = await delete_events_batch(store, cutoff_ms, bound, batch)
        batches += 1
        n_events += deleted
        if deleted < looked or looked < batch:
            break           # a young event (or the bound) reached: the rest are younger
        await asyncio.sleep(pause_s)
    while batches < max_batches:
        deleted = await delete_delivered_batch(store, cutoff_ms, batch)
        batches += 1
        n_items += deleted
        if deleted < batch:
            break
        await asyncio.sleep(pause_s)
    freed = await incremental_vacuum(store) if n_events or n_items else 0
    return EventPurgeResult(n_events, n_items, batches, freed, bound)
