"""From a reading to durable data: validation, interval building and the one write transaction.

Sources (bus pollers, the MQTT ingest) call `Recorder.submit()`. The reading is validated against
the meter's state in memory; an accepted one advances the interval builder, and the reading, the
intervals it closes (each with its outbox operation) and the new builder state are queued. One
writer task drains the queue into the store in batches, each batch a single transaction, so the
reading, its intervals and their operations are durable together or not at all. If a write fails,
the in-memory state of the meters in that batch is reloaded from the database, so nothing that
is not stored is ever built upon.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field, fields

from gridnode.meters.clock import Clock, SystemClock
from gridnode.meters.health import MeterHealth, log
from gridnode.meters.intervals import ClosedInterval, MeterState, advance
from gridnode.meters.reading import Reading
from gridnode.meters.validation import Limits, Validator
from gridnode.store import Store, uninterruptible

TX_TYPE = "meter_reading"
_STATE_COLUMNS = [f.name for f in fields(MeterState)]


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

    def __post_init__(self) -> None:
        self.validator = Validator(self.limits)
        self.state = MeterState(self.meter_id)


@dataclass(slots=True)
class _Write:
    reading: Reading
    state: dict
    intervals: list[ClosedInterval]


class Recorder:
    def __init__(
        self, store: Store, meters: list[MeterEntry], interval_s: int = 900,
        clock: Clock | None = None, batch_max: int = 500, health_flush_s: float = 5.0,
        max_backfill_s: float | None = None,
    ) -> None:
        self.max_backfill_s = max_backfill_s
        self.store = store
        self.meters = {m.meter_id: m for m in meters}
        self.interval_s = interval_s
        self.clock = clock or SystemClock()
        self.batch_max = batch_max
        self.health_flush_s = health_flush_s
        self._queue: asyncio.Queue[_Write] = asyncio.Queue()
        self._idle = asyncio.Event()
        self._idle.set()
        self.progress_at = time.monotonic()
        self.stored_readings = 0
        self.closed_intervals = 0

    # -- startup -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Register the configured meters and load each meter's builder state."""
        now = self._now_ms()
        async with self.store.write() as tx:
            for m in self.meters.values():
                await tx.execute(
                    "INSERT INTO meters (meter_id, source, profile, owner, created_at_ms, "
                    "updated_at_ms) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (meter_id) DO UPDATE "
                    "SET source = excluded.source, profile = excluded.profile, "
                    "owner = excluded.owner, updated_at_ms = excluded.updated_at_ms",
                    (m.meter_id, m.source, m.profile, m.owner, now, now))
        for m in self.meters.values():
            await self._load(m)

    async def _load(self, m: MeterEntry) -> None:
        row = await self.store.fetchone("SELECT * FROM meter_state WHERE meter_id = ?",
                                        (m.meter_id,))
        m.state = MeterState(m.meter_id)
        m.validator = Validator(m.limits)
        if row is None:
            return
        for col in _STATE_COLUMNS:
            if col != "meter_id":
                setattr(m.state, col, row[col])
        if m.state.last_read_at_ms is not None and m.state.last_import_raw is not None:
            m.validator.last = Reading(
                m.meter_id, m.state.last_read_at_ms, m.state.last_read_at_ms,
                m.state.last_import_raw, m.state.last_export_raw)
            m.health.last_good_at_ms = m.state.last_read_at_ms

    def _now_ms(self) -> int:
        return int(self.clock.time() * 1000)

    # -- the path of a reading ---------------------------------------------------------------
    def reject(self, meter_id: str, reason: str, detail: str) -> None:
        m = self.meters.get(meter_id)
        if m is not None:
            m.health.reject(reason, detail, self.clock.time())

    def submit(self, r: Reading, delta: bool = False) -> bool:
        """Validate and queue one reading; True when accepted. Never raises for bad data."""
        m = self.meters.get(r.meter_id)
        if m is None:
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
            return False
        m.health.good(r.read_at_ms)
        closed = advance(m.state, r, self.interval_s, reset=verdict.reset,
                         max_backfill_s=self.max_backfill_s)
        if verdict.reset:
            log.warning("counter reset accepted", meter_id=m.meter_id,
                        import_offset=m.state.import_offset)
        self._idle.clear()
        self._queue.put_nowait(_Write(r, m.state.row(), closed))
        return True

    async def drain(self) -> None:
        """Wait until everything submitted so far is written (or its write failed)."""
        while not self._queue.empty() or not self._idle.is_set():
            await self._idle.wait()
            await asyncio.sleep(0)

    async def run(self) -> None:
        """The writer: drains the queue in batched transactions until cancelled.

        A write in progress is never interrupted: on cancellation it runs to its end, whatever
        is still queued is written too, and only then the cancellation goes on.
        """
        last_flush = 0.0
        try:
            while True:
                try:
                    async with asyncio.timeout(1.0):
                        first = await self._queue.get()
                except TimeoutError:
                    first = None
                batch = [first] if first is not None else []
                while batch and len(batch) < self.batch_max and not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                if batch:
                    await uninterruptible(self._write(batch))
                if time.monotonic() - last_flush >= self.health_flush_s:
                    await uninterruptible(self.flush_health())
                    last_flush = time.monotonic()
                if self._queue.empty():
                    self._idle.set()
        except asyncio.CancelledError:
            batch = self._drain_queue()
            if batch:
                await uninterruptible(self._write(batch))
            await uninterruptible(self.flush_health())
            self._idle.set()
            raise

    def _drain_queue(self) -> list[_Write]:
        out = []
        while not self._queue.empty():
            out.append(self._queue.get_nowait())
        return out

    async def _write(self, batch: list[_Write]) -> None:
        now = self._now_ms()
        states: dict[str, dict] = {}
        try:
            async with self.store.write() as tx:
                await tx.executemany(
                    "INSERT INTO readings (meter_id, read_at_ms, received_at_ms, import_wh, "
                    "export_wh, power_w, voltage_v, current_a, frequency_hz) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    [(w.reading.meter_id, w.reading.read_at_ms, w.reading.received_at_ms,
                      w.reading.import_wh, w.reading.export_wh, w.reading.power_w,
                      w.reading.voltage_v, w.reading.current_a, w.reading.frequency_hz)
                     for w in batch])
                for w in batch:
                    states[w.reading.meter_id] = w.state
                    for iv in w.intervals:
                        await self._write_interval(tx, iv, now)
                cols = ", ".join(_STATE_COLUMNS)
                marks = ", ".join("?" for _ in _STATE_COLUMNS)
                updates = ", ".join(f"{c} = excluded.{c}" for c in _STATE_COLUMNS[1:])
                await tx.executemany(
                    f"INSERT INTO meter_state ({cols}, updated_at_ms) VALUES ({marks}, ?) "
                    f"ON CONFLICT (meter_id) DO UPDATE SET {updates}, "
                    "updated_at_ms = excluded.updated_at_ms",
                    [[s[c] for c in _STATE_COLUMNS] + [now] for s in states.values()])
        except Exception as e:
            log.error("meter readings not stored; reloading state", error=repr(e),
                      readings=len(batch))
            failed = {w.reading.meter_id for w in batch}
            # queued readings of these meters were built on what was just lost: drop them too
            keep = [w for w in self._drain_queue() if w.reading.meter_id not in failed]
            for w in keep:
                self._queue.put_nowait(w)
            for meter_id in failed:
                await self._load(self.meters[meter_id])
            return
        self.stored_readings += len(batch)
        self.progress_at = time.monotonic()

    async def _write_interval(self, tx, iv: ClosedInterval, now: int) -> None:
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
            return
        op_id, _ = await tx.add_operation(TX_TYPE, iv.operation_payload(), iv.idempotency_key)
        self.closed_intervals += 1
        log.info("interval closed", meter_id=iv.meter_id, interval_end=iv.interval_end,
                 import_wh=iv.import_wh, export_wh=iv.export_wh, backfilled=iv.backfilled,
                 op_id=op_id)

    async def flush_health(self) -> None:
        now = self._now_ms()
        # changed counters, or a state that moved on by itself (online -> stale)
        dirty = [m.health for m in self.meters.values()
                 if m.health.dirty or m.health.flushed_state != m.health.state(now)]
        if not dirty:
            return
        async with self.store.write() as tx:
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
        for h in dirty:
            h.dirty = False
            h.flushed_state = h.state(now)

    def snapshot(self) -> list[dict]:
        """Per-meter health, in memory (for the local API)."""
        now = self._now_ms()
        return [m.health.snapshot(now) for m in self.meters.values()]
