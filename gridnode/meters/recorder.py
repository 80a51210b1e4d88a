"""From a reading to durable data: validation, interval building and the one write transaction.

Sources (bus pollers, the MQTT ingest) call `Recorder.submit()`. The reading is validated against
the meter's state in memory; an accepted one advances the interval builder, and the reading, the
intervals it closes (each with its outbox operation) and the new builder state are queued. One
writer task drains the queue into the store in batches, each batch a single transaction, so the
reading, its intervals and their operations are durable together or not at all.

A source that must acknowledge what it hands over (MQTT) passes an `Ack`: it is told True only
after the commit that stored the reading, or recorded its rejection, and False when it was not
stored (the message must come again). Acks are told in the order things were submitted.

Writing less: a bus hands over the readings of one poll cycle together, so they land in one
transaction. A reading is kept as a raw row when it is on either side of an interval boundary
(the counters there are the interval's evidence), after a counter reset, and otherwise once every
`raw_every_s` per meter; the cumulative counters make the readings in between derivable. A
reading that is not kept still passes the interval builder; its builder state is written with
the next transaction that writes anything for that meter, at the `health_flush_s` cadence, and
at shutdown. A reading with an ack always has its state committed before the ack, so an
acknowledged message's effect (a delta meter's energy) is never lost. After a crash the builder
resumes from the last written state: the next reading's counter delta covers the gap. While
the disk guard holds them back (`keep_raw` False) no raw row is kept at all.

When the storage is full the batch is kept and retried with backoff (logged once when it starts
and once when it ends); the in-memory state stays valid because nothing after the batch is
written before it. Past `queue_max` waiting items, new readings are refused (and their sources
told False) before they touch any state. Any other failed write reloads the in-memory state of
the meters in that batch from the database, so nothing that is not stored is ever built upon.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from gridnode.chain.txtypes import new_operation
from gridnode.log import Episode
from gridnode.meters.clock import Clock, SystemClock
from gridnode.meters.health import MeterHealth, log
from gridnode.meters.intervals import ClosedInterval, MeterState, advance
from gridnode.meters.reading import Reading
from gridnode.meters.validation import Limits, Validator
from gridnode.store import StorageFull, Store, WriteTx, events, operations, uninterruptible

_STATE_COLUMNS = [f.name for f in fields(MeterState)]
QUEUE_MAX = 10_000              # items waiting for the writer (about 2 KiB each)
STORAGE_RETRY_MIN_S = 0.5
STORAGE_RETRY_MAX_S = 30.0

Ack = Callable[[bool], None]
"""Told once whether what a source handed over is durable (True) or must come again (False)."""
Listener = Callable[[Reading, dict[str, Any]], None]
"""Told, after its commit, of each accepted reading with its meter's builder state (offsets)."""


@dataclass(slots=True)
class MeterEntry:
    meter_id: str
    source: str            # 'modbus' | 'mqtt'
    profile: str           # profile name or payload format
    limits: Limits
    health: MeterHealth
    invert: bool = False
    owner: str | None = None
    validator: Validator = field(init=False)
    state: MeterState = field(init=False)
    kept_at_ms: int | None = None       # read_at_ms of the last reading kept as a raw row
    held: Reading | None = None         # the last accepted reading not kept (yet)

    def __post_init__(self) -> None:
        self.validator = Validator(self.limits)
        self.state = MeterState(self.meter_id)


@dataclass(slots=True)
class _Write:
    """A reading with the builder state it leaves, the intervals it closes and the raw rows it
    keeps (itself, and the reading before a boundary), or (no reading) only an ack waiting for
    what was queued before it; `health` also records the counters."""

    reading: Reading | None
    state: dict[str, Any] | None = None
    intervals: list[ClosedInterval] = field(default_factory=list)
    ack: Ack | None = None
    health: bool = False
    raw: list[Reading] = field(default_factory=list)

    @property
    def durable(self) -> bool:
        """Whether this item needs a commit of its own batch (not only a later one)."""
        return bool(self.raw or self.intervals or self.health
                    or (self.ack is not None and self.reading is not None))


class Recorder:
    """Validates readings, builds intervals and writes both, with their operations, durably."""

    def __init__(
        self, store: Store, meters: list[MeterEntry], interval_s: int = 900,
        clock: Clock | None = None, batch_max: int = 500, health_flush_s: float = 60.0,
        max_backfill_s: float | None = None, queue_max: int = QUEUE_MAX,
        storage_retry_max_s: float = STORAGE_RETRY_MAX_S, raw_every_s: float = 0.0,
    ) -> None:
        """`raw_every_s` 0 keeps every reading as a raw row; `health_flush_s` is the cadence of
        the health counters and of builder states not yet written."""
        self.raw_every_s = raw_every_s
        self.max_backfill_s = max_backfill_s
        self.store = store
        self.meters = {m.meter_id: m for m in meters}
        self.interval_s = interval_s
        self.clock = clock or SystemClock()
        self.batch_max = batch_max
        self.health_flush_s = health_flush_s
        self.queue_max = queue_max
        self.storage_retry_max_s = storage_retry_max_s
        self._queue: asyncio.Queue[_Write] = asyncio.Queue()
        self._retry: list[_Write] = []      # the batch a full disk refused, written first
        self._unsaved: dict[str, dict[str, Any]] = {}   # builder states committed by no batch yet
        self._idle = asyncio.Event()
        self._idle.set()
        self._registered = False
        self.progress_at = time.monotonic()
        self.stored_readings = 0            # readings whose effect is recorded
        self.raw_rows = 0                   # of which kept as raw rows
        self.commits = 0
        self.closed_intervals = 0
        self.storage_errors = 0             # writes refused for lack of space
        self.refused = 0                    # readings refused while too many were waiting
        self.storage_full = Episode(log, "storage full: meter readings wait in memory and are "
                                    "retried", "storage writable again: meter readings stored",
                                    level="error")
        self._refusing = False
        # False while the disk guard holds raw rows back (intervals are still written)
        self.keep_raw = True
        self.listeners: list[Listener] = []     # non-blocking: they only note the values

    # -- startup -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Register the configured meters and load each meter's builder state.

        On a full disk the registration is left to the writer's first commit.
        """
        try:
            async with self.store.write() as tx:
                await self._register(tx)
            self._registered = True
        except StorageFull as e:
            self._storage_full(e, 0)
        for m in self.meters.values():
            await self._load(m)

    async def _register(self, tx: WriteTx) -> None:
        now = self._now_ms()
        for m in self.meters.values():
            await tx.execute(
                "INSERT INTO meters (meter_id, source, profile, owner, created_at_ms, "
                "updated_at_ms) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (meter_id) DO UPDATE "
                "SET source = excluded.source, profile = excluded.profile, "
                "owner = excluded.owner, updated_at_ms = excluded.updated_at_ms",
                (m.meter_id, m.source, m.profile, m.owner, now, now))

    async def _load(self, m: MeterEntry) -> None:
        row = await self.store.fetchone("SELECT * FROM meter_state WHERE meter_id = ?",
                                        (m.meter_id,))
        m.state = MeterState(m.meter_id)
        m.validator = Validator(m.limits)
        m.held = None
        m.kept_at_ms = None
        if row is None:
            return
        for col in _STATE_COLUMNS:
            if col != "meter_id":
                setattr(m.state, col, row[col])
        if m.state.last_export_raw == 0.0 and await self._export_absent(m.state):
            m.state.last_export_raw = None
        if m.state.last_read_at_ms is not None and m.state.last_import_raw is not None:
            m.validator.last = Reading(
                m.meter_id, m.state.last_read_at_ms, m.state.last_read_at_ms,
                m.state.last_import_raw, m.state.last_export_raw)
            m.health.last_good_at_ms = m.state.last_read_at_ms

    async def _export_absent(self, state: MeterState) -> bool:
        """Whether the last stored reading had no export counter: states saved before missing
        export was kept as missing say 0.0 there, which would reject every later reading."""
        row = await self.store.fetchone(
            "SELECT export_wh IS NULL FROM readings WHERE meter_id = ? AND read_at_ms = ?",
            (state.meter_id, state.last_read_at_ms))
        return row is not None and bool(row[0])

    def _now_ms(self) -> int:
        return int(self.clock.time() * 1000)

    # -- the path of a reading ---------------------------------------------------------------
    def reject(self, meter_id: str, reason: str, detail: str, ack: Ack | None = None) -> None:
        """Count a reading a source could not use; `ack` is told once the count is stored."""
        m = self.meters.get(meter_id)
        if m is not None:
            m.health.reject(reason, detail, self.clock.time())
        if ack is not None:
            self._enqueue(_Write(None, ack=ack, health=m is not None))

    def acknowledge(self, ack: Ack | None) -> None:
        """Tell `ack` True once everything submitted before it is stored (nothing to store)."""
        if ack is not None:
            self._enqueue(_Write(None, ack=ack))

    def submit(self, r: Reading, delta: bool = False, ack: Ack | None = None) -> bool:
        """Validate and queue one reading; True when accepted. Never raises for bad data.

        `ack` is told True after the commit that stores the reading (or its rejection), False
        when it is not stored.
        """
        m = self.meters.get(r.meter_id)
        if m is None:
            self.acknowledge(ack)
            return False
        if self._waiting() >= self.queue_max:
            self._refuse(ack)
            return False
        if m.invert:
            r = r.inverted()
        if delta:   # per-period energies: add to the running counters
            last = m.validator.last
            if r.import_wh is not None:
                r.import_wh += last.import_wh if last and last.import_wh is not None else 0.0
            if r.export_wh is not None:
                r.export_wh += last.export_wh if last and last.export_wh is not None else 0.0
        now_ms = self._now_ms()
        verdict = m.validator.check(r, now_ms)
        if not verdict.accepted:
            m.health.reject(verdict.reason or "invalid", f"read_at_ms={r.read_at_ms}",
                            now_ms / 1000)
            if ack is not None:
                self._enqueue(_Write(None, ack=ack, health=True))
            return False
        m.health.good(r.read_at_ms)
        if verdict.dropped:   # implausible instantaneous values, stored as no data
            m.health.reject("implausible_value", "; ".join(verdict.dropped), now_ms / 1000)
        raw = self._keep(m, r, verdict.reset)
        closed = advance(m.state, r, self.interval_s, reset=verdict.reset,
                         max_backfill_s=self.max_backfill_s)
        if verdict.reset:
            log.warning("counter reset accepted", meter_id=m.meter_id,
                        import_offset=m.state.import_offset)
        self._refusing = False
        self._enqueue(_Write(r, m.state.row(), closed, ack, raw=raw))
        return True

    def submit_cycle(self, readings: list[Reading]) -> None:
        """Submit the readings of one bus poll cycle together: queued without a pause between
        them, the writer takes them into one transaction."""
        for r in readings:
            self.submit(r)

    def _keep(self, m: MeterEntry, r: Reading, reset: bool) -> list[Reading]:
        """The raw rows `r` keeps: itself when it is the first after an interval boundary, after
        a reset, or `raw_every_s` after the last kept one, and the reading held from before the
        boundary. Called before the builder advances (it reads the previous reading's time)."""
        prev = m.state.last_read_at_ms
        iv = self.interval_s
        crossed = prev is None or r.read_at_ms // 1000 // iv > prev // 1000 // iv
        out: list[Reading] = []
        if not self.keep_raw:
            m.held = None
            return out
        if crossed and m.held is not None:
            out.append(m.held)
        if (crossed or reset or self.raw_every_s <= 0 or m.kept_at_ms is None
                or r.read_at_ms - m.kept_at_ms >= self.raw_every_s * 1000):
            out.append(r)
            m.kept_at_ms = r.read_at_ms
            m.held = None
        else:
            m.held = r
        return out

    def _enqueue(self, w: _Write) -> None:
        self._idle.clear()
        self._queue.put_nowait(w)

    def _waiting(self) -> int:
        return self._queue.qsize() + len(self._retry)

    def _refuse(self, ack: Ack | None) -> None:
        self.refused += 1
        if not self._refusing:
            self._refusing = True
            log.error("meter readings refused: too many wait for the store",
                      waiting=self._waiting(), storage_full=self.storage_full.active)
        _tell(ack, False)

    def accepting(self) -> bool:
        """Whether a reading submitted now would be queued (the store keeps up)."""
        return not self.storage_full.active and self._waiting() < self.queue_max

    async def run(self) -> None:
        """The writer: drains the queue in batched transactions until cancelled.

        A write in progress is never interrupted: on cancellation it runs to its end, whatever
        is still queued is written too, and only then the cancellation goes on.
        """
        last_flush = -math.inf      # the first batch writes health: monotonic() starts at boot
        delay = STORAGE_RETRY_MIN_S
        try:
            while True:
                if self._retry:
                    batch, self._retry = self._retry, []
                else:
                    batch = await self._next_batch()
                health = (any(w.health for w in batch)
                          or time.monotonic() - last_flush >= self.health_flush_s)
                if await uninterruptible(self._commit(batch, health)):
                    delay = STORAGE_RETRY_MIN_S
                    if health:
                        last_flush = time.monotonic()
                else:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.storage_retry_max_s)
                if self._queue.empty() and not self._retry:
                    self._idle.set()
        except asyncio.CancelledError:
            batch, self._retry = self._retry + self._take(self._queue.qsize()), []
            if not await uninterruptible(self._commit(batch, True, final=True)):
                lost = [w for w in self._retry if w.reading is not None]
                log.error("meter readings not stored at shutdown: the storage is full",
                          readings=len(lost))
                for w in self._retry:
                    _tell(w.ack, False)
                self._retry = []
            self._idle.set()
            raise

    async def _next_batch(self) -> list[_Write]:
        try:
            async with asyncio.timeout(1.0):
                first = await self._queue.get()
        except TimeoutError:
            return []
        return [first] + self._take(self.batch_max - 1)

    def _take(self, n: int) -> list[_Write]:
        out: list[_Write] = []
        while len(out) < n and not self._queue.empty():
            out.append(self._queue.get_nowait())
        return out

    async def _commit(self, batch: list[_Write], health: bool, final: bool = False) -> bool:
        """Write `batch` (and, if `health`, the health counters and the builder states not yet
        written) in one transaction, then tell the acks; no transaction when nothing in it needs
        one. False when the storage is full: the batch is kept in `_retry` for the next try."""
        now = self._now_ms()
        writes = [w for w in batch if w.reading is not None]
        dirty = self._dirty_health(now) if health else []
        states = dict(self._unsaved)
        for w in writes:
            assert w.reading is not None and w.state is not None
            states[w.reading.meter_id] = w.state
        needed = (dirty or not self._registered or any(w.durable for w in writes)
                  or (states and (health or final)))
        closed: list[tuple[ClosedInterval, int]] = []
        try:
            if needed:
                async with self.store.write() as tx:
                    if not self._registered:
                        await self._register(tx)
                    closed = await self._write(tx, writes, states, now)
                    if dirty:
                        await self._write_health(tx, dirty, now)
                self.commits += 1
        except StorageFull as e:
            self._storage_full(e, len(writes))
            self._retry = batch
            return False
        except Exception as e:
            await self._write_failed(e, batch)
            return True
        self._registered = True
        if needed:
            self._unsaved = {}
        else:
            self._unsaved = states
        self._health_flushed(dirty, now)
        if closed:      # one line per batch; each interval's own line is at debug
            log.info("intervals closed", intervals=len(closed),
                     meters=len({iv.meter_id for iv, _ in closed}),
                     interval_end=max(iv.interval_end for iv, _ in closed))
        for iv, op_id in closed:
            self.closed_intervals += 1
            log.debug("interval closed", meter_id=iv.meter_id, interval_end=iv.interval_end,
                     import_wh=iv.import_wh, export_wh=iv.export_wh, backfilled=iv.backfilled,
                     op_id=op_id)
        if writes:
            self._tell_listeners(writes)
            self.stored_readings += len(writes)
            self.raw_rows += sum(len(w.raw) for w in writes)
            self.progress_at = time.monotonic()
        if self.storage_full.active:
            self.storage_full.cleared(readings=len(writes), refused_readings=self.refused)
            self._refusing = False
        for w in batch:
            _tell(w.ack, True)
        return True

    def _tell_listeners(self, writes: list[_Write]) -> None:
        for fn in self.listeners:
            for w in writes:
                assert w.reading is not None and w.state is not None
                try:
                    fn(w.reading, w.state)
                except Exception as e:      # a listener's bug must not stop the writer
                    log.error("reading listener failed", error=repr(e))

    def _storage_full(self, e: StorageFull, readings: int) -> None:
        self.storage_errors += 1
        self.storage_full.occurred(error=str(e), readings=readings, waiting=self._waiting())

    async def _write_failed(self, e: Exception, batch: list[_Write]) -> None:
        failed = {w.reading.meter_id for w in batch if w.reading is not None}
        log.error("meter readings not stored; reloading state", error=repr(e),
                  readings=sum(w.reading is not None for w in batch))
        # queued readings of these meters were built on what was just lost: drop them too
        for w in self._take(self._queue.qsize()):
            if w.reading is not None and w.reading.meter_id in failed:
                _tell(w.ack, False)
            else:
                self._queue.put_nowait(w)
        for w in batch:
            _tell(w.ack, False)
        for meter_id in failed:
            self._unsaved.pop(meter_id, None)
            await self._load(self.meters[meter_id])

    async def _write(self, tx: WriteTx, batch: list[_Write], states: dict[str, dict[str, Any]],
                     now: int) -> list[tuple[ClosedInterval, int]]:
        """The raw rows, the intervals they close with their operations, and the new states."""
        closed: list[tuple[ClosedInterval, int]] = []
        rows = [(r.meter_id, r.read_at_ms, r.received_at_ms, r.import_wh, r.export_wh, r.power_w,
                 r.voltage_v, r.current_a, r.frequency_hz) for w in batch for r in w.raw]
        if rows:
            await tx.executemany(
                "INSERT INTO readings (meter_id, read_at_ms, received_at_ms, import_wh, "
                "export_wh, power_w, voltage_v, current_a, frequency_hz) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", rows)
        for w in batch:
            for iv in w.intervals:
                op_id = await self._write_interval(tx, iv, now)
                if op_id is not None:
                    closed.append((iv, op_id))
        if not states:
            return closed
        cols = ", ".join(_STATE_COLUMNS)
        marks = ", ".join("?" for _ in _STATE_COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in _STATE_COLUMNS[1:])
        await tx.executemany(
            f"INSERT INTO meter_state ({cols}, updated_at_ms) VALUES ({marks}, ?) "
            f"ON CONFLICT (meter_id) DO UPDATE SET {updates}, "
            "updated_at_ms = excluded.updated_at_ms",
            [[s[c] for c in _STATE_COLUMNS] + [now] for s in states.values()])
        return closed

    async def _write_interval(self, tx: WriteTx, iv: ClosedInterval, now: int) -> int | None:
        res = await tx.execute(
            "INSERT INTO intervals (meter_id, interval_start, interval_end, import_wh, export_wh, "
            "counter_import_start, counter_import_end, counter_export_start, counter_export_end, "
            "backfilled, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (meter_id, interval_start) DO NOTHING",
            (iv.meter_id, iv.interval_start, iv.interval_end, iv.import_wh, iv.export_wh,
             iv.counter_import_start, iv.counter_import_end, iv.counter_export_start,
             iv.counter_export_end, int(iv.backfilled), now))
        if res.rowcount != 1:
            log.warning("interval already closed; not written again", meter_id=iv.meter_id,
                        interval_end=iv.interval_end)
            return None
        op_id, _ = await operations.add(tx, new_operation(iv.operation_payload()))
        await events.interval_closed(tx, iv.meter_id, iv.interval_start, iv.interval_end,
                                     iv.import_wh, iv.export_wh, iv.backfilled, now, op_id)
        return op_id

    # -- health ------------------------------------------------------------------------------
    async def flush_health(self) -> None:
        """Write the changed health counters now (the writer does it every `health_flush_s`)."""
        now = self._now_ms()
        dirty = self._dirty_health(now)
        if not dirty:
            return
        async with self.store.write() as tx:
            await self._write_health(tx, dirty, now)
        self._health_flushed(dirty, now)

    def _dirty_health(self, now: int) -> list[MeterHealth]:
        # changed counters, or a state that moved on by itself (online -> stale)
        return [m.health for m in self.meters.values()
                if m.health.dirty or m.health.flushed_state != m.health.state(now)]

    @staticmethod
    def _health_flushed(flushed: list[MeterHealth], now: int) -> None:
        for h in flushed:
            h.dirty = False
            h.flushed_state = h.state(now)

    @staticmethod
    async def _write_health(tx: WriteTx, dirty: list[MeterHealth], now: int) -> None:
        await tx.executemany(
            "INSERT INTO meter_health (meter_id, source, requests, errors, accepted, rejected, "
            "rejections, last_good_at_ms, last_error, state, updated_at_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (meter_id) DO UPDATE SET "
            "source = excluded.source, requests = excluded.requests, "
            "errors = excluded.errors, accepted = excluded.accepted, "
            "rejected = excluded.rejected, rejections = excluded.rejections, "
            "last_good_at_ms = excluded.last_good_at_ms, last_error = excluded.last_error, "
            "state = excluded.state, updated_at_ms = excluded.updated_at_ms",
            [(h.meter_id, h.source, h.requests, h.errors, h.accepted, h.rejected,
              json.dumps(dict(h.rejections), sort_keys=True), h.last_good_at_ms,
              h.last_error, h.state(now), now) for h in dirty])

    def snapshot(self) -> list[dict[str, Any]]:
        """Per-meter health, in memory (for the local API)."""
        now = self._now_ms()
        return [m.health.snapshot(now) for m in self.meters.values()]


def _tell(ack: Ack | None, ok: bool) -> None:
    if ack is None:
        return
    try:
        ack(ok)
    except Exception as e:      # a source's bug must not stop the writer
        log.error("acknowledgement failed", error=repr(e))
