"""The database after one simulated year: 50 meters, 15-minute intervals, default retention.

    .venv/bin/python bench/bench_year.py                         # the year (minutes, one core)
    .venv/bin/python bench/bench_year.py --meters 5 --days 3     # a quick check

An accelerated run on a simulated clock, not a projection. It drives gridnode's own code and
store functions through every interval of the year:

- readings: `Recorder.submit_cycle` (validation, interval builder, raw-row selection, its writer
  task and its one-transaction batches) with `[meters] raw_every_s` at its default;
- the outbox: each closed interval's `meter_reading` operation (written by the recorder) is
  prepared and packed by `InstructionBuilder.prepare_many` and `pack` with `[outbox] batch_size`
  (real, signed transactions with the node's default instruction set), and goes through the
  lifecycle the submitter and the monitor write: `record_signed` (the attempt shared by the
  batch, `signed`), `record_sent` (`submitted`), `record_observed` + `confirmed`, then
  `record_observed` + `finalize` with the transaction's decoded event
  (MeterReadingSubmitted, one per operation) + `finalized`, each with its audit and event rows
  and in the same transactions the pipeline uses;
- deliveries: the upstream destination (`UpstreamDestination.select` and the engine's `step`:
  capture, send, record), whose platform accepts every item (the HTTP request is not made);
- the daily reconciliation row (`gridnode.store.reconciliation`, a report of a real run's shape);
- retention: `purge_raw`, `purge_events` and `purge_details` every `[retention] every_s` of
  simulated time with cutoffs from the simulated clock, `raw_days`, `event_days` and
  `detail_days` at their defaults.

What is shortened or changed, none of it changing a row that is written:
- readings: each meter's readings at 0, 60, ..., 840 s (one every raw_every_s) and 890 s of every
  interval are the rows a 10-s poll aligned to the boundary leaves (890 s is held and kept when
  the next interval's first reading crosses it); the readings the recorder would drop are not
  made. The ones at 0 and 890 s (which close the intervals and carry the builder) go through
  `Recorder.submit_cycle`; those in between are inserted with the recorder's own statement
  (`--feed-all` sends them through the recorder too: the same rows, slower);
- `pack` runs once per number of operations (the meter ids have one length, so every interval
  packs alike) and its batch sizes are reused; every transaction is still built and signed;
- the store's two connections are sqlite3 connections served in the event loop's thread with
  aiosqlite's interface (`InThread`: the store's statements unchanged, no thread hop each),
  the writer with `synchronous = OFF` and a 1 GiB page cache (the same file contents, without
  waiting for the disk at each commit); the store's clock (`now_ms`) is the simulated one;
- the purges run without their pause between batches (wall-clock courtesy to other writers);
- the two indexes a year needs (chain_events by operation, for the upstream item of every
  finalized reading; undelivered items by meter, for the raw purge's upstream rule: without them
  both lookups are full scans, quadratic over a year) are the store's own (migrations 0072 and
  0080); their bytes are printed apart;
- meter health, alerts and API rows (a few per meter) are not written.

Prints the database size (file + -wal) at each simulated month end, and at the end the bytes and
rows per table (SQLite's dbstat), the year total, and the steady-state size per meter per month
(the file's growth per meter over the months after retention has reached its steady state).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import math
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from solders.hash import Hash  # noqa: E402
from solders.keypair import Keypair  # noqa: E402

import gridnode.store.db as store_db  # noqa: E402
from gridnode.chain.assembly import Batch, build_transaction, compute_limit, pack  # noqa: E402
from gridnode.chain.idl import load_idls  # noqa: E402
from gridnode.chain.instructions import BuilderSettings, InstructionBuilder  # noqa: E402
from gridnode.chain.signers import Signers  # noqa: E402
from gridnode.chain.txtypes import DETAILS_EXPIRE  # noqa: E402
from gridnode.config.chain import ChainConfig  # noqa: E402
from gridnode.config.meters import MetersConfig  # noqa: E402
from gridnode.config.outbox import OutboxConfig  # noqa: E402
from gridnode.config.retention import RetentionConfig  # noqa: E402
from gridnode.config.upstream import UpstreamConfig  # noqa: E402
from gridnode.deliveries import signing  # noqa: E402
from gridnode.deliveries.engine import DeliveryEngine, Outcome, Policy  # noqa: E402
from gridnode.deliveries.upstream import UpstreamDestination  # noqa: E402
from gridnode.meters.health import MeterHealth  # noqa: E402
from gridnode.meters.reading import Reading  # noqa: E402
from gridnode.meters.recorder import MeterEntry, Recorder  # noqa: E402
from gridnode.meters.validation import Limits  # noqa: E402
from gridnode.store import Store, dumps, operations, reconciliation, retention  # noqa: E402
from gridnode.store.deliveries import ItemRow  # noqa: E402
from gridnode.store.operations import ChainEvent, NewAttempt  # noqa: E402

INTERVAL_S = 900
POLL_S = 10
START = datetime.datetime(2027, 1, 1, tzinfo=datetime.UTC)
# Seconds after the interval's end at which the pipeline's steps happen (a quiet chain).
SIGNED_S, SENT_S, CONFIRMED_S, FINALIZED_S, DELIVERED_S = 1.0, 1.2, 6.0, 20.0, 21.0
RECONCILE_AT_S = 2 * 3600 + 30 * 60     # [reconciliation] at = "02:30"
UNITS_PER_OP = 1_800                   # simulated compute units of one submit_meter_reading
FEE_LAMPORTS = 5_000
# Indexes the year needs (migrations 0072, 0080): their bytes are printed apart.
YEAR_INDEXES = ("chain_events_operation", "delivery_items_undelivered")


class SimClock:
    """The simulated wall clock (the recorder's Clock, and the store's now_ms)."""

    def __init__(self, t: float) -> None:
        self.t = t

    def time(self) -> float:
        return self.t

    def ms(self) -> int:
        return int(self.t * 1000)

    async def sleep(self, seconds: float) -> None:
        self.t += max(0.0, seconds)


def use_clock(clock: SimClock) -> None:
    """Every gridnode module that took the store's now_ms reads the simulated clock."""
    real = store_db.now_ms
    for name, mod in list(sys.modules.items()):
        if name.startswith("gridnode") and getattr(mod, "now_ms", None) is real:
            mod.now_ms = clock.ms  # type: ignore[attr-defined]


class _Cursor:
    """An executed statement, shaped like aiosqlite's (awaitable, async context manager)."""

    def __init__(self, cur: sqlite3.Cursor) -> None:
        self._cur = cur
        self.lastrowid = cur.lastrowid
        self.rowcount = cur.rowcount

    async def fetchone(self) -> Any:
        return self._cur.fetchone()

    async def fetchall(self) -> list[Any]:
        return self._cur.fetchall()

    async def __aenter__(self) -> _Cursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._cur.close()

    def __await__(self) -> Any:
        async def me() -> _Cursor:
            return self
        return me().__await__()


class InThread:
    """A sqlite3 connection used in the event loop's thread with aiosqlite's interface: the
    store's statements unchanged, without a thread hop for each (the bench's one writer)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        conn.row_factory = sqlite3.Row

    def execute(self, sql: str, params: Any = ()) -> _Cursor:
        return _Cursor(self._conn.execute(sql, params))

    def executemany(self, sql: str, seq: Any) -> _Cursor:
        return _Cursor(self._conn.executemany(sql, seq))

    async def executescript(self, sql: str) -> None:
        self._conn.executescript(sql)

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    async def close(self) -> None:
        self._conn.close()


async def open_store(db: Path) -> Store:
    """The store as the daemon opens it (migrations, pragmas), then its two connections served
    in this thread; the writer with synchronous = OFF (see the module docstring)."""
    store = await Store.open(db)
    await store._writer.close()
    await store._reader.close()
    writer = sqlite3.connect(db, isolation_level=None)
    for pragma in (f"busy_timeout = {store_db.BUSY_TIMEOUT_MS}", "journal_mode = WAL",
                   "synchronous = OFF", "foreign_keys = ON", "journal_size_limit = 67108864",
                   "cache_size = -1048576"):
        writer.execute(f"PRAGMA {pragma}")
    reader = sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None)
    reader.execute(f"PRAGMA busy_timeout = {store_db.BUSY_TIMEOUT_MS}")
    reader.execute("PRAGMA query_only = ON")
    store._writer = InThread(writer)  # type: ignore[assignment]
    store._reader = store._conn = InThread(reader)  # type: ignore[assignment]
    return store


class AcceptingUpstream(UpstreamDestination):
    """The upstream destination whose platform accepts every item (no HTTP request)."""

    async def send(self, items: Sequence[ItemRow]) -> list[Outcome]:
        return [Outcome.delivered() for _ in items]


def file_bytes(db: Path) -> int:
    return sum(p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.exists())


def table_stats(db: Path) -> tuple[dict[str, int], dict[str, int]]:
    """(bytes of pages per table with its indexes, rows per table)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        owner = dict(c.execute("SELECT name, tbl_name FROM sqlite_master"))
        sizes: dict[str, int] = {}
        for name, size in c.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"):
            t = owner.get(name, name)
            sizes[t] = sizes.get(t, 0) + int(size)
        tables = [r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        rows = {t: int(c.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]) for t in tables}
        free = int(c.execute("PRAGMA freelist_count").fetchone()[0])
        page = int(c.execute("PRAGMA page_size").fetchone()[0])
    sizes["(free pages)"] = free * page
    return sizes, rows


def index_bytes(db: Path, name: str) -> int | None:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        row = c.execute("SELECT sum(pgsize) FROM dbstat WHERE name = ?", (name,)).fetchone()
    return None if row is None or row[0] is None else int(row[0])


class Meter:
    """A simulated SDM630: a household load, half of them with PV export by day."""

    def __init__(self, i: int, rng: random.Random) -> None:
        self.meter_id = f"meter-{i:03d}"
        self.rng = rng
        self.import_wh = rng.uniform(1e6, 2e7)
        self.export_wh = rng.uniform(1e5, 5e6) if i % 2 else 0.0
        self.pv = bool(i % 2)
        self.load_w = rng.uniform(200, 900)

    def read(self, t: int, dt: int) -> Reading:
        hour = (t % 86400) / 3600
        sun = max(0.0, math.sin((hour - 6) / 12 * math.pi)) if self.pv else 0.0
        x = self.rng.random()
        net = self.load_w * (0.6 + x) - 3000.0 * sun * (0.7 + 0.3 * x)
        if net >= 0:
            self.import_wh += net * dt / 3600
        else:
            self.export_wh -= net * dt / 3600
        v = 228.0 + 14.0 * x
        return Reading(self.meter_id, t * 1000, t * 1000 + 20 + int(70 * x),
                       round(self.import_wh, 1), round(self.export_wh, 1), round(net, 1),
                       round(v, 1), round(abs(net) / v, 3), round(49.95 + 0.1 * x, 2))


class Year:
    def __init__(self, a: argparse.Namespace, db: Path) -> None:
        self.a = a
        self.db = db
        self.clock = SimClock(START.timestamp())
        self.rng = random.Random(7)
        self.meters = [Meter(i, self.rng) for i in range(1, a.meters + 1)]
        self.mc = MetersConfig()
        self.rc = RetentionConfig.model_validate(dict(kv.split("=", 1) for kv in a.retention))
        self.oc = OutboxConfig()
        self.cc = ChainConfig.model_validate({"rpc_urls": ["http://127.0.0.1:8899"]})
        self.uc = UpstreamConfig.model_validate({"url": "http://127.0.0.1:9/ingest"})
        self.gateway = Keypair()
        self.slot = 10_000
        self.ops_done = 0
        self.pack_sizes: dict[int, list[int]] = {}
        self.txs = 0

    async def run(self) -> int:
        a = self.a
        use_clock(self.clock)
        store = await open_store(self.db)
        self.store = store
        entries = [MeterEntry(m.meter_id, "modbus", "sdm630", Limits(rated_power_w=23_000.0),
                              MeterHealth(m.meter_id, "modbus", self.mc.stale_after_s))
                   for m in self.meters]
        rec = Recorder(store, entries, interval_s=INTERVAL_S, clock=self.clock,
                       raw_every_s=self.mc.raw_every_s,
                       max_backfill_s=None)
        await rec.start()
        writer = asyncio.create_task(rec.run())
        idls = load_idls(require=("oracle",))
        self.builder = InstructionBuilder(idls, None, Signers.of(self.gateway),  # type: ignore[arg-type]
                                          BuilderSettings(registry_readings=self.cc.registry_readings,
                                                          require_registered_meters=False,
                                                          max_reading_age_s=None))
        self.oracle = str(idls["oracle"].program_id)
        engine = DeliveryEngine(store, rng=random.Random(1))
        dest = AcceptingUpstream(store, "gridnode-year", str(self.uc.url),
                                 [signing.generate_secret()])
        engine.add(dest, Policy(batch_size=self.uc.batch_size, retry_base_s=self.uc.retry_base_s,
                                retry_max_s=self.uc.retry_max_s, poll_s=self.uc.poll_s,
                                config={"url": str(self.uc.url)}))
        runner = engine._runners[dest.name]
        await engine._ensure(runner)

        offsets = [*range(0, INTERVAL_S - POLL_S + 1, int(self.mc.raw_every_s) or POLL_S)]
        if offsets[-1] != INTERVAL_S - POLL_S:
            offsets.append(INTERVAL_S - POLL_S)   # the last poll before the boundary
        t0 = int(START.timestamp())
        n_intervals = int(a.days * 86400 // INTERVAL_S)
        next_purge = t0 + retention_first_s(self.rc)
        next_reconcile = t0 + 86400 + RECONCILE_AT_S
        month_end = next_month(START)
        wall0 = time.monotonic()
        print(f"simulating {a.days:g} days: {a.meters} meters, {INTERVAL_S // 60}-min intervals, "
              f"raw_every_s={self.mc.raw_every_s:g}, raw_days={self.rc.raw_days:g}, "
              f"event_days={self.rc.event_days:g}, detail_days={self.rc.detail_days:g}, "
              f"retention every {self.rc.every_s:g} s, "
              f"outbox batch_size={self.oc.batch_size}, upstream batch_size={self.uc.batch_size}; "
              f"db {self.db}", flush=True)
        print("| simulated month end | db + wal | raw readings | operations | events | "
              "wall s |", flush=True)
        print("|---|---|---|---|---|---|", flush=True)
        months: list[tuple[datetime.datetime, int]] = []
        prev_t: dict[str, int | None] = {m.meter_id: None for m in self.meters}
        for k in range(n_intervals + 1):
            start = t0 + k * INTERVAL_S
            if k == n_intervals:
                offsets_now = [0]        # the reading that closes the last interval
            else:
                offsets_now = offsets
            direct: list[Reading] = []
            for off in offsets_now:
                t = start + off
                self.clock.t = t + 0.1
                cycle = []
                for m in self.meters:
                    p = prev_t[m.meter_id]
                    cycle.append(m.read(t, t - p if p is not None else POLL_S))
                    prev_t[m.meter_id] = t
                if a.feed_all or off in (0, offsets_now[-1]):
                    if direct:
                        await self.store_kept(direct)
                        direct = []
                    rec.submit_cycle(cycle)
                else:
                    direct += cycle
                if off == 0:
                    await rec._idle.wait()
                    if k > 0:
                        await self.pipeline(start)
                        await self.deliver(engine, runner, start)
            await rec._idle.wait()
            now = start + INTERVAL_S
            while next_reconcile <= now:
                await self.reconcile(next_reconcile)
                next_reconcile += 86400
            while next_purge <= now:
                self.clock.t = next_purge
                cut = int((next_purge - self.rc.raw_days * 86400) * 1000)
                await retention.purge_raw(store, cut, self.rc.batch, pause_s=0)
                self.clock.t = next_purge + 5
                cut = int((next_purge + 5 - self.rc.event_days * 86400) * 1000)
                await retention.purge_events(store, cut, self.rc.batch, pause_s=0)
                self.clock.t = next_purge + 10
                cut = int((next_purge + 10 - self.rc.detail_days * 86400) * 1000)
                await retention.purge_details(store, cut, DETAILS_EXPIRE, self.rc.batch,
                                              pause_s=0)
                next_purge += int(self.rc.every_s)
            if now >= month_end.timestamp() or k == n_intervals:
                size = file_bytes(self.db)
                label = month_end if now >= month_end.timestamp() else \
                    datetime.datetime.fromtimestamp(now, datetime.UTC)
                months.append((label, size))
                counts = await self.counts()
                print(f"| {label:%Y-%m-%d} | {size / 1e6:,.1f} MB | {counts[0]:,} | "
                      f"{counts[1]:,} | {counts[2]:,} | {time.monotonic() - wall0:,.0f} |",
                      flush=True)
                if now >= month_end.timestamp():
                    month_end = next_month(month_end)
        wall = time.monotonic() - wall0
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
        await store.close()
        self.report(months, wall)
        return 0

    async def store_kept(self, readings: list[Reading]) -> None:
        """Raw rows the recorder keeps between the boundaries (one every raw_every_s), stored
        with its own statement (see the module docstring: the shortcut without --feed-all)."""
        self.clock.t = readings[-1].read_at_ms / 1000 + 0.1
        async with self.store.write() as tx:
            await tx.executemany(
                "INSERT INTO readings (meter_id, read_at_ms, received_at_ms, import_wh, "
                "export_wh, power_w, voltage_v, current_a, frequency_hz) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [(r.meter_id, r.read_at_ms, r.received_at_ms, r.import_wh, r.export_wh,
                  r.power_w, r.voltage_v, r.current_a, r.frequency_hz) for r in readings])

    async def counts(self) -> tuple[int, int, int]:
        out = []
        for t in ("readings", "operations", "events"):
            row = await self.store.fetchone(f"SELECT count(*) FROM {t}")
            out.append(int(row[0]) if row else 0)
        return out[0], out[1], out[2]

    async def pipeline(self, end: int) -> None:
        """The closed intervals' operations from pending to finalized, as the pipeline writes."""
        store = self.store
        self.clock.t = end + SIGNED_S
        due = await operations.due(store, 1024)
        if not due:
            return
        prepared, refused = await self.builder.prepare_many(due)
        if refused:
            raise RuntimeError(f"operations refused: {refused[:3]}")
        payer = self.builder.signers.fee_payer
        sizes = self.pack_sizes.get(len(prepared))
        if sizes is None:          # `pack` once per number of operations: same ids, same sizes
            sizes = self.pack_sizes[len(prepared)] = [
                len(b.ops) for b in pack(prepared, payer, self.oc.batch_size)]
        batches, i = [], 0
        for n in sizes:
            batches.append(Batch(prepared[i:i + n]))
            i += n
        sigs: list[tuple[str, Batch]] = []
        for batch in batches:          # Submitter._persist: one transaction per batch
            self.slot += 2
            cu = compute_limit(UNITS_PER_OP * len(batch.ops), self.cc.fees.compute_unit_margin)
            price = self.cc.priority_fee.floor_micro_lamports
            bh = Hash.new_unique()
            txn = build_transaction(batch, payer, bh, cu, price)
            sig = str(txn.signatures[0])
            attempt = NewAttempt(sig, bytes(txn), str(bh), self.slot + 150, cu, price)
            async with store.write() as tx:
                await operations.record_signed(tx, attempt, [
                    (op.op_id, first) for op, (first, _) in zip(batch.ops, batch.ix_ranges(),
                                                                strict=True)])
            sigs.append((sig, batch))
        self.clock.t = end + SENT_S
        for sig, _ in sigs:            # Submitter._record_send
            async with store.write() as tx:
                await operations.record_sent(tx, sig)
        self.clock.t = end + CONFIRMED_S
        landed = {sig: self.slot + 1 for sig, _ in sigs}
        async with store.write() as tx:  # Monitor._apply: one transaction per poll
            for sig, batch in sigs:
                await operations.record_observed(tx, sig, "confirmed", landed[sig], None)
                for op in batch.ops:
                    await operations.move(tx, op.op_id, "confirmed", reason="landed",
                                          details={"signature": sig, "slot": landed[sig]})
        self.clock.t = end + FINALIZED_S
        async with store.write() as tx:
            for sig, _ in sigs:
                await operations.record_observed(tx, sig, "finalized", landed[sig], None)
        by_id = {op.id: op for op in due}
        for sig, batch in sigs:        # Monitor._finalize: one transaction per signature
            rows = []
            for op in batch.ops:
                p = by_id[op.op_id].payload
                rows.append(ChainEvent(sig, op.op_id, self.oracle, "MeterReadingSubmitted", dumps({
                    "energy_consumed": p["energy_consumed_wh"],
                    "energy_produced": p["energy_produced_wh"], "meter_id": p["meter_id"],
                    "submitter": str(self.gateway.pubkey()), "timestamp": p["interval_end"]}),
                    landed[sig]))
            async with store.write() as tx:
                await operations.finalize(tx, sig, FEE_LAMPORTS, landed[sig], rows,
                                          [o.op_id for o in batch.ops])
        self.ops_done += len(due)
        self.txs += len(sigs)

    async def deliver(self, engine: DeliveryEngine, runner: Any, end: int) -> None:
        self.clock.t = end + DELIVERED_S
        for _ in range(1000):
            if not await engine.step(runner):
                return
        raise RuntimeError("the upstream destination did not catch up")

    async def reconcile(self, at: int) -> None:
        """The daily run's row, with a report of the shape a real run stores."""
        self.clock.t = at
        day = datetime.datetime.fromtimestamp(at - 86400, datetime.UTC).date()
        n = len(self.meters)
        report = {
            "checks": {
                "balance": f"{n} users, {n} token accounts: GRID against minted - delivered + "
                           "received (0 trades bought from sellers elsewhere, by their "
                           "settlement markers)",
                "meter_settled": f"{n} registered meters: settled net generation against GRID "
                                 "minted",
                "meter_totals": f"{n} registered meters: registry totals against finalized "
                                "readings",
                "readings": f"{96 * n} oracle readings landed for the day's intervals, "
                            f"{96 * n} finalized by the node",
                "settlement_status": "0 settlement rows against the program's settlement "
                                     "markers",
                "trades": "0 trade records with a local party executed in the day, 0 "
                          "settlement rows (one per trade with a local seller)"},
            "commitment": "finalized",
            "counts": {"meters": n, "meters_registered": n, "readings_finalized": 96 * n,
                       "readings_landed": 96 * n, "trade_records": 0, "users": n},
            "day": day.isoformat(), "discrepancies": [], "finished_at_ms": at * 1000 + 900,
            "node_id": "gridnode-year", "rpc_url": "http://127.0.0.1:8899/",
            "started_at_ms": at * 1000, "timezone": "UTC",
            "window": {"end_s": at - RECONCILE_AT_S, "start_s": at - RECONCILE_AT_S - 86400}}
        async with self.store.write() as tx:
            await reconciliation.start(tx, day, "UTC", "schedule", True, at * 1000)
        async with self.store.write() as tx:
            await reconciliation.complete(tx, day, report, 0,
                                          f"/var/lib/gridnode/reports/reconciliation-{day}.json",
                                          at * 1000 + 900)

    def report(self, months: list[tuple[datetime.datetime, int]], wall: float) -> None:
        a = self.a
        sizes, rows = table_stats(self.db)
        total = file_bytes(self.db)
        print(f"\nafter {a.days:g} simulated days ({self.ops_done:,} operations finalized in "
              f"{self.txs:,} transactions, {self.ops_done / max(self.txs, 1):.1f} per "
              f"transaction): db + wal {total:,} B = {total / 1e9:.3f} GB "
              f"(wal {file_bytes(self.db) - self.db.stat().st_size:,} B); wall {wall:,.0f} s")
        added = sum(index_bytes(self.db, n) or 0 for n in YEAR_INDEXES)
        print(f"(of which {added:,} B the indexes {' and '.join(YEAR_INDEXES)}, migrations 0072 "
              "and 0080)")
        print("| table (with its indexes) | bytes | rows | bytes/row |")
        print("|---|---|---|---|")
        for t, b in sorted(sizes.items(), key=lambda kv: -kv[1]):
            if b == 0:
                continue
            n = rows.get(t)
            print(f"| {t} | {b:,} | {'' if n is None else f'{n:,}'} | "
                  f"{'' if not n else f'{b / n:,.0f}'} |")
        # steady state: from the first month end after both retention periods have passed
        steady_from = START + datetime.timedelta(days=max(self.rc.raw_days,
                                                          self.rc.event_days) + 1)
        steady = [(d, s) for d, s in months if d >= steady_from]
        if len(steady) >= 2:
            (d0, s0), (d1, s1) = steady[0], steady[-1]
            months_n = (d1 - d0).total_seconds() / (365.25 / 12 * 86400)
            per = (s1 - s0) / a.meters / months_n
            print(f"steady state ({d0:%Y-%m-%d} .. {d1:%Y-%m-%d}, {months_n:.1f} months): "
                  f"{per:,.0f} B per meter per month ({per * a.meters * 12 / 1e6:,.0f} MB a "
                  f"year for {a.meters} meters); the retained window (raw {self.rc.raw_days:g} "
                  f"days, events {self.rc.event_days:g} days) stays at about its size")
        else:
            print("steady state: not reached (run past raw_days/event_days plus two months)")
        per_all = total / a.meters / (a.days / (365.25 / 12))
        print(f"year total / meters / months: {per_all:,.0f} B per meter per month")


def retention_first_s(rc: RetentionConfig) -> int:
    return int(min(60.0, rc.every_s))


def next_month(d: datetime.datetime) -> datetime.datetime:
    return d.replace(year=d.year + (d.month == 12), month=d.month % 12 + 1, day=1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--meters", type=int, default=50)
    ap.add_argument("--days", type=float, default=365.0)
    ap.add_argument("--feed-all", action="store_true",
                    help="every kept reading through Recorder.submit (slower; same rows)")
    ap.add_argument("--keep", type=Path, default=None, help="directory for the database (kept)")
    ap.add_argument("--retention", action="append", default=[], metavar="KEY=VALUE",
                    help="a [retention] setting other than its default (raw_days=7, ...)")
    a = ap.parse_args(argv)
    if a.keep is not None:
        a.keep.mkdir(parents=True, exist_ok=True)
        db = a.keep / "gridnode.db"
        for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
            p.unlink(missing_ok=True)
        return asyncio.run(Year(a, db).run())
    with tempfile.TemporaryDirectory(prefix="gridnode-year-") as d:
        return asyncio.run(Year(a, Path(d) / "gridnode.db").run())


if __name__ == "__main__":
    sys.exit(main())
