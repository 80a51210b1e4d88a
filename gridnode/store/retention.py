"""Retention: which raw readings, events and operation details may go, deleted in small
batches, and the file shrunk after.

A raw reading may be deleted when every rule in RAW_RULES holds for it. Each rule is an SQL
condition on the reading ``r`` (a row of readings), with named parameters: old enough, its
interval finalized on chain, and (with an upstream destination) delivered upstream. Each batch
is its own short write transaction, so the one writer (meter readings, the outbox) never waits
long behind a purge. Events and the details of finalized operations follow below, each with
its rule.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from gridnode.store import transitions
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


# -- details of finalized operations -----------------------------------------------------------
# A finalized operation of a type whose details expire keeps its row (payload, key, status, the
# times of each step), its link to the transaction and the transaction's row with its signature,
# slot and fee. After the retention period what only served its way to finality goes: the audit
# trail (the row's own times say the same for a plain lifecycle), its decoded chain events, and
# the transaction's signed bytes once the transaction is finalized. An operation whose way was
# not plain (more than one transaction, an error on the way) keeps everything, and so does one
# that is not finalized yet when the walk passes it: they are what an operator looks into.
# With a delivery destination, only what every destination has taken goes (the upstream item of
# an interval carries its decoded events).

DETAIL_CURSOR = "operation_details"


@dataclass(frozen=True, slots=True)
class DetailPurgeResult:
    operations: int         # operations whose details went
    audit_rows: int
    chain_events: int
    transactions: int       # transactions whose signed bytes went
    batches: int
    freed_pages: int


async def detail_cutoff(store: Store, cutoff_ms: int) -> int:
    """`cutoff_ms`, or earlier: the time of the oldest event some destination has not taken yet
    (an operation finalized before it has had every event of its finalization taken)."""
    bound = await event_bound(store)
    if bound is None:
        return cutoff_ms
    row = await store.fetchone("SELECT at_ms FROM events WHERE id > ? ORDER BY id LIMIT 1",
                               (bound,))
    return cutoff_ms if row is None else min(cutoff_ms, int(row["at_ms"]))


def _detail_verdict(op: Any, cutoff_ms: int, tx_types: Collection[str]) -> bool | None:
    """True: the operation's details go; False: they stay for good (the walk passes it); None:
    not yet judged (the walk waits here: the operation is young or still on its way)."""
    if op["created_at_ms"] >= cutoff_ms:
        return None
    if op["tx_type"] not in tx_types or op["status"] == transitions.CREATED:
        return False                  # created: held for its API client, perhaps for good
    if op["status"] not in transitions.FINAL:
        return None                   # on its way: it finalizes or parks in bounded time
    if op["status"] != "finalized":
        return False
    if op["finalized_at_ms"] is None or op["finalized_at_ms"] >= cutoff_ms:
        return None
    return op["attempts"] == 1 and op["last_error"] is None and op["links"] == 1


async def delete_details_batch(store: Store, cutoff_ms: int, tx_types: Collection[str],
                               limit: int) -> tuple[int, int, int, int, int]:
    """Judge the next `limit` operations after the cursor, oldest first, and delete the details
    of those the rule allows (one short write transaction). The walk stops at the first
    operation not yet judged (young, or still on its way). Returns (passed, operations, audit
    rows, chain events, transactions)."""
    async with store.write() as tx:
        row = await tx.fetchone("SELECT position FROM retention_cursors WHERE name = ?",
                                (DETAIL_CURSOR,))
        after = int(row["position"]) if row is not None else 0
        ops = await tx.fetchall(
            "SELECT o.id, o.tx_type, o.status, o.created_at_ms, o.finalized_at_ms, o.attempts, "
            "o.last_error, (SELECT count(*) FROM tx_attempt_operations t "
            "WHERE t.operation_id = o.id) AS links "
            "FROM operations o WHERE o.id > ? ORDER BY o.id LIMIT ?", (after, limit))
        passed: list[int] = []
        gone: list[int] = []
        for op in ops:
            verdict = _detail_verdict(op, cutoff_ms, tx_types)
            if verdict is None:
                break
            passed.append(int(op["id"]))
            if verdict:
                gone.append(int(op["id"]))
        audit = events = txs = 0
        for i in range(0, len(gone), 500):
            chunk = gone[i:i + 500]
            m = ",".join("?" * len(chunk))
            audit += (await tx.execute(
                f"DELETE FROM audit_log WHERE entity = 'operation' AND entity_id IN ({m})",
                chunk)).rowcount
            events += (await tx.execute(
                f"DELETE FROM chain_events WHERE operation_id IN ({m})", chunk)).rowcount
            # A finalized transaction is never sent again. CROSS JOIN keeps the links as the
            # outer loop: SQLite would otherwise walk every finalized attempt (its status index).
            txs += (await tx.execute(
                "DELETE FROM tx_bytes WHERE attempt_id IN (SELECT t.attempt_id FROM "
                "tx_attempt_operations t CROSS JOIN tx_attempts a ON a.id = t.attempt_id "
                f"WHERE t.operation_id IN ({m}) AND a.observed_status = 'finalized')",
                chunk)).rowcount
        if passed:
            await tx.execute(
                "INSERT INTO retention_cursors (name, position) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                (DETAIL_CURSOR, passed[-1]))
    return len(passed), len(gone), audit, events, txs


async def purge_details(store: Store, cutoff_ms: int, tx_types: Collection[str], batch: int,
                        pause_s: float = 0.05, max_batches: int = 10_000) -> DetailPurgeResult:
    """Delete the details of finalized operations of `tx_types` finalized before `cutoff_ms`
    (and taken by every delivery destination), `batch` operations per write transaction, then
    shrink the file."""
    cutoff_ms = await detail_cutoff(store, cutoff_ms)
    ops = audit = events = txs = batches = 0
    while batches < max_batches and tx_types:
        looked, n_ops, n_audit, n_events, n_txs = await delete_details_batch(
            store, cutoff_ms, tx_types, batch)
        batches += 1
        ops, audit, events, txs = ops + n_ops, audit + n_audit, events + n_events, txs + n_txs
        if looked < batch:
            break
        await asyncio.sleep(pause_s)
    freed = await incremental_vacuum(store) if ops else 0
    return DetailPurgeResult(ops, audit, events, txs, batches, freed)
