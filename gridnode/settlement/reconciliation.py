"""Daily reconciliation: what the chain holds against what the store says, per local day.

For one local day of the node's time zone, and for every local meter and user:

    meter_totals   registry MeterAccount total_generation / total_consumption (Wh) against the sum
                   of the node's finalized meter readings (cumulative: the registry keeps totals);
                   checked when chain.registry_readings is on (the node writes the totals then)
    meter_settled  MeterAccount settled_net_generation x 10^6 against the GRID the node's
                   grid_minting operations minted for the meter (cumulative)
    readings       MeterReadingSubmitted events that landed on chain for the day's intervals
                   against the meter_reading operations finalized (per meter: missing, extra,
                   doubled, different values)
    balance        each user's GRID (base units, all its known token accounts) against minted -
                   delivered + received by the node's finalized operations and settled rows,
                   plus what it bought from sellers elsewhere whose trades the program marks
                   settled; a user who keeps its own key mints elsewhere, so its meters'
                   settled generation x 10^6 stands for its mints (cumulative)
    trade_*        every TradeRecord with a local party executed that day: with a local seller,
                   exactly one settlement row with the same amount, price, total and fee (the
                   node settles trades of its sellers; a local buyer's seller elsewhere settles
                   its own), and back; and a row against the program's TradeSettlement marker
                   (trade_without_settlement, settlement_without_trade, trade_mismatch,
                   settlement_status)

Amounts are integers throughout (Wh, base units), never floats. Operations still in flight (whose
outcome may or may not have landed) widen what the chain may hold instead of being reported.

Each discrepancy raises the alert ``reconciliation.<kind>[.<day>].<subject>`` saying what differs
and by how much; a later run that covers the same check and finds it fine clears it. The report is
stored (``reconciliation_runs``) and written as JSON under ``[reconciliation] report_dir``.

Scheduling: the daemon's APScheduler runs ``catch_up`` at ``[reconciliation] at`` every day (a cron
job in the node's zone) and once at start. Which days it runs is ``due_days``, a pure function of
the last day the store records as completed and the local time now, so a day missed while the node
was down runs at the next start and a clock that jumps (an NTP step on a board without an RTC)
neither skips nor doubles a day; the chain's clock (the Clock sysvar) must agree that a day is over
before it is reconciled.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import json
import os
import re
import struct
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from solders.pubkey import Pubkey

from gridnode.config import ConfigError, ConfigIssue, GridnodeConfig
from gridnode.log import get_logger
from gridnode.store import Store, StoreError, transitions
from gridnode.store import alerts as stored_alerts
from gridnode.store import reconciliation as stored
from gridnode.store.db import WriteTx, now_ms

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]

    from gridnode.chain.accounts import TradeRecordAccount
    from gridnode.chain.idl import ProgramIdl
    from gridnode.chain.rpc import RpcPool

log = get_logger(__name__)

BASE_UNITS_PER_WH = 10**6          # GRID: 9 decimals, 1 GRID = 1 kWh
ALERT_PREFIX = "reconciliation."
TOKEN_PROGRAM = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
ATA_PROGRAM = Pubkey.from_string("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL")
CLOCK_SYSVAR = Pubkey.from_string("SysvarC1ock11111111111111111111111111111111")
RETRY_S = 900.0                    # a run the chain or the disk let fail is tried again
CHECK_EVERY_S = 3600.0             # how often the store is asked whether a day is overdue
IN_FLIGHT = transitions.IN_FLIGHT
FINALIZED = ("finalized",)
SIGNATURE_PAGE = 1000
TX_FETCH_CONCURRENCY = 8


# -- which days are due (pure) -----------------------------------------------------------------

def latest_due_day(now_local: datetime.datetime, at: datetime.time) -> datetime.date:
    """The latest day whose reconciliation time has come: day D is due at `at` on day D + 1."""
    today = now_local.date()
    return today - datetime.timedelta(days=1 if now_local.time() >= at else 2)


@dataclass(frozen=True)
class Due:
    """The days to reconcile now, oldest first, and how many older missed days are skipped."""

    days: list[datetime.date]
    skipped: int = 0
    skipped_first: datetime.date | None = None


def due_days(last_completed: datetime.date | None, now_local: datetime.datetime,
             at: datetime.time, max_days: int,
             chain_now: datetime.datetime | None = None) -> Due:
    """The days to reconcile, from the last completed day (the store's) and the time now.

    Every day after `last_completed` up to the latest due one, so a day is never skipped by a
    jump forward (the days in between are all due) nor run twice by a jump back (a day at or
    before `last_completed` is never due again). At most `max_days` (the most recent) are
    returned: a clock that jumped years ahead must not start years of runs; the older ones are
    counted in `skipped`.

    With `chain_now` (the chain's clock), a day is due only once both clocks say so: a local
    clock set ahead runs nothing the chain does not see as over. A node without a completed day
    starts with the latest day due by the later clock, so a board still in 1970 after a boot
    without an RTC starts nothing until its clock is set.
    """
    clocks = [now_local] if chain_now is None else [
        now_local, chain_now.astimezone(now_local.tzinfo)]
    latest = latest_due_day(min(clocks), at)
    first = (latest_due_day(max(clocks), at) if last_completed is None
             else last_completed + datetime.timedelta(days=1))
    if first > latest:
        return Due([])
    count = (latest - first).days + 1
    skipped = max(0, count - max_days)
    start = first + datetime.timedelta(days=skipped)
    days = [start + datetime.timedelta(days=i) for i in range(count - skipped)]
    return Due(days, skipped, first if skipped else None)


def day_window(day: datetime.date, zone: ZoneInfo) -> tuple[int, int]:
    """(start, end) of the local `day` as Unix seconds (23 or 25 hours across a DST change)."""
    start = datetime.datetime.combine(day, datetime.time(0), tzinfo=zone)
    end = datetime.datetime.combine(day + datetime.timedelta(days=1), datetime.time(0),
                                    tzinfo=zone)
    return int(start.timestamp()), int(end.timestamp())


# -- the report --------------------------------------------------------------------------------

# Kinds checked over all time (cleared by any later run) and kinds of one day (cleared only by a
# later run of the same day).
CUMULATIVE_KINDS = ("meter_totals", "meter_settled", "balance")
DAILY_KINDS = ("readings", "trade_without_settlement", "settlement_without_trade",
               "trade_mismatch", "settlement_status")


@dataclass(frozen=True)
class Discrepancy:
    """One difference between chain and store: what, of which subject, both values and the
    difference chain - store (None where one side has no value)."""

    kind: str
    subject: str        # meter id, user pubkey or trade record address
    what: str           # the field compared, e.g. "total_generation", "balance"
    chain: int | None
    store: int | None
    unit: str           # "Wh", "base units", "readings", "rows"
    detail: str

    @property
    def difference(self) -> int | None:
        if self.chain is None or self.store is None:
            return None
        return self.chain - self.store

    def alert_name(self, day: datetime.date) -> str:
        scope = f"{self.kind}.{day.isoformat()}" if self.kind in DAILY_KINDS else self.kind
        what = re.sub(r"[^A-Za-z0-9_]+", "_", self.what).strip("_")
        return f"{ALERT_PREFIX}{scope}.{self.subject}.{what}"

    def text(self) -> str:
        diff = self.difference
        values = (f"chain {_n(self.chain)} {self.unit}, store {_n(self.store)} {self.unit}"
                  + (f", difference {diff:+,} {self.unit}" if diff is not None else ""))
        return f"{self.kind} {self.subject} {self.what}: {values}" + (
            f" ({self.detail})" if self.detail else "")

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "difference": self.difference}


def _n(value: int | None) -> str:
    return "none" if value is None else f"{value:,}"


@dataclass
class Report:
    """What one run compared and found, for one local day."""

    node_id: str
    day: datetime.date
    timezone: str
    window_start_s: int
    window_end_s: int
    started_at_ms: int
    finished_at_ms: int | None = None
    rpc_url: str | None = None
    commitment: str = "finalized"
    checks: dict[str, str] = field(default_factory=dict)    # check -> what it covered / skipped
    counts: dict[str, int] = field(default_factory=dict)
    discrepancies: list[Discrepancy] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "day": self.day.isoformat(), "timezone": self.timezone,
                "window": {"start_s": self.window_start_s, "end_s": self.window_end_s},
                "started_at_ms": self.started_at_ms, "finished_at_ms": self.finished_at_ms,
                "rpc_url": self.rpc_url, "commitment": self.commitment, "checks": self.checks,
                "counts": self.counts,
                "discrepancies": [d.to_json() for d in self.discrepancies]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Report:
        return cls(
            node_id=str(data["node_id"]), day=datetime.date.fromisoformat(data["day"]),
            timezone=str(data["timezone"]), window_start_s=int(data["window"]["start_s"]),
            window_end_s=int(data["window"]["end_s"]), started_at_ms=int(data["started_at_ms"]),
            finished_at_ms=data.get("finished_at_ms"), rpc_url=data.get("rpc_url"),
            commitment=str(data.get("commitment", "finalized")),
            checks=dict(data.get("checks", {})), counts=dict(data.get("counts", {})),
            discrepancies=[Discrepancy(d["kind"], d["subject"], d["what"], d["chain"],
                                       d["store"], d["unit"], d["detail"])
                           for d in data.get("discrepancies", [])])

    def lines(self) -> list[str]:
        """The report for a terminal."""
        zone = ZoneInfo(self.timezone)
        start = datetime.datetime.fromtimestamp(self.window_start_s, zone)
        n = len(self.discrepancies)
        out = [f"reconciliation of {self.day.isoformat()} ({self.timezone}, from "
               f"{start.isoformat()}, {(self.window_end_s - self.window_start_s) // 3600} h) "
               f"on {self.node_id}: " + (f"{n} discrepanc{'y' if n == 1 else 'ies'}" if n
                                         else "no discrepancy")]
        if self.finished_at_ms is not None:
            out.append(f"  run {_iso(self.started_at_ms)} .. {_iso(self.finished_at_ms)} UTC "
                       f"against {self.rpc_url} ({self.commitment})")
        for check, what in self.checks.items():
            out.append(f"  {check}: {what}")
        for d in self.discrepancies:
            out.append(f"  ! {d.text()}")
        return out


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000))


# -- the checks --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Bounds:
    """What the chain may hold given the store: `low` from finalized work, up to `high` with
    what is still in flight (None: unbounded, an in-flight amount not known yet)."""

    low: int
    high: int | None

    def holds(self, value: int) -> bool:
        return value >= self.low and (self.high is None or value <= self.high)


class _Range:
    """Accumulates an expected amount: finalized parts move both ends, in-flight parts one."""

    def __init__(self) -> None:
        self.base = 0
        self.up: int | None = 0
        self.down = 0

    def add(self, amount: int, in_flight: bool) -> None:
        if not in_flight:
            self.base += amount
        elif amount >= 0:
            if self.up is not None:
                self.up += amount
        else:
            self.down += amount

    def unknown_up(self) -> None:
        self.up = None

    def bounds(self) -> Bounds:
        return Bounds(self.base + self.down, None if self.up is None else self.base + self.up)


def ata(owner: Pubkey, mint: Pubkey) -> Pubkey:
    """The associated token account of `owner` for `mint` (classic SPL Token)."""
    return Pubkey.find_program_address([bytes(owner), bytes(TOKEN_PROGRAM), bytes(mint)],
                                       ATA_PROGRAM)[0]


class Reconciler:
    """Runs the checks of one day against the chain through `pool` and the store."""

    def __init__(self, config: GridnodeConfig, store: Store, pool: RpcPool,
                 idls: Mapping[str, ProgramIdl]) -> None:
        self.config = config
        self.store = store
        self.pool = pool
        self.idls = idls
        self.zone = ZoneInfo(config.node.timezone)
        # Users who keep their own key (the node settles for them as SPL delegate): they mint
        # elsewhere, so their meters' minted GRID is what the registry says was settled.
        self.delegates: dict[str, list[str]] = {}
        self._meter_data: dict[str, dict[str, Any] | None] = {}

    # -- running and recording -----------------------------------------------------------------
    async def run_day(self, day: datetime.date, trigger: str) -> Report:
        """Reconcile `day`: recorded as started, checked, the JSON written, then the report and
        its alerts stored in one transaction. Raises (and records the failure) when the chain
        cannot be read: the day stays due."""
        started = now_ms()
        _, end_s = day_window(day, self.zone)
        final = started >= end_s * 1000
        async with self.store.write() as tx:
            await stored.start(tx, day, self.config.node.timezone, trigger, final, started)
        try:
            report = await self.check(day, started)
            path = await asyncio.to_thread(self._write_json, report)
        except Exception as exc:
            log.warning("reconciliation failed", day=day.isoformat(), error=str(exc))
            async with self.store.write() as tx:
                await stored.fail(tx, day, f"{type(exc).__name__}: {exc}")
            raise
        async with self.store.write() as tx:
            await stored.complete(tx, day, report.to_json(), len(report.discrepancies),
                                  str(path), report.finished_at_ms)
            await self._alerts(tx, report)
        log.info("reconciliation completed", day=day.isoformat(), trigger=trigger,
                 discrepancies=len(report.discrepancies), report=str(path),
                 **{k: v for k, v in report.counts.items()})
        return report

    def _write_json(self, report: Report) -> Path:
        """<report_dir>/reconciliation-<day>.json, replaced atomically (temp file, fsync,
        rename)."""
        directory = self.config.reconciliation.reports(self.config.node.data_dir)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"reconciliation-{report.day.isoformat()}.json"
        tmp = path.with_suffix(".json.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(report.to_json(), f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return path

    async def _alerts(self, tx: WriteTx, report: Report) -> None:
        """Raise each discrepancy's alert (once: one already raised stays as it is) and clear
        those of the checks this run covered that it found fine."""
        found = {d.alert_name(report.day): d for d in report.discrepancies}
        at = report.finished_at_ms or now_ms()
        current = {a.name: a for a in await stored_alerts.all_alerts(tx)
                   if a.name.startswith(ALERT_PREFIX)}
        for name, d in found.items():
            was = current.get(name)
            if was is not None and was.raised and was.detail == d.text():
                continue
            diff = d.difference
            await stored_alerts.change(tx, name, True, value=None if diff is None else float(diff),
                                       threshold=0.0, detail=d.text(), at_ms=at)
            log.warning("alert raised", alert=name, detail=d.text())
        ran = {k for k, what in report.checks.items() if not what.startswith("skipped")}
        covered = [f"{ALERT_PREFIX}{k}." for k in CUMULATIVE_KINDS if k in ran] + [
            f"{ALERT_PREFIX}{k}.{report.day.isoformat()}." for k in DAILY_KINDS
            if _check_of(k) in ran]
        for name, a in current.items():
            if a.raised and name not in found and any(name.startswith(p) for p in covered):
                await stored_alerts.change(tx, name, False, value=0.0, threshold=0.0,
                                           detail=f"reconciliation of {report.day} found no "
                                           "difference", at_ms=at)
                log.info("alert cleared", alert=name)

    # -- the checks ----------------------------------------------------------------------------
    async def check(self, day: datetime.date, started_ms: int | None = None) -> Report:
        """The report of `day` (nothing is stored)."""
        start_s, end_s = day_window(day, self.zone)
        report = Report(self.config.node.id, day, self.config.node.timezone, start_s, end_s,
                        started_ms or now_ms(), rpc_url=self.pool.ordered()[0].url,
                        commitment=str(self.pool.commitment))
        meters = await self._local_meters()
        users = await self._local_users(meters)
        report.counts.update(meters=len(meters), users=len(users))
        await self._meters(report, meters)
        await self._readings(report, meters, start_s, end_s)
        records = await self._trade_records(users)
        await self._balances(report, users, records)
        await self._trades(report, users, records, start_s, end_s)
        report.finished_at_ms = now_ms()
        return report

    async def _local_meters(self) -> dict[str, str | None]:
        """meter_id -> owner: the meters the node knows, configures or sent readings for."""
        meters = await stored.local_meters(self.store)
        for _, configured in self.config.meters.all_meter_ids():
            meters.setdefault(configured, None)
        for sent in await stored.reading_meter_ids(self.store):
            meters.setdefault(sent, None)
        for u in self.config.market.users if self.config.market is not None else []:
            for m in u.meters:
                meters.setdefault(str(m), None)
        return dict(sorted(meters.items()))

    async def _local_users(self, meters: Mapping[str, str | None]) -> dict[str, str]:
        """pubkey -> name of the users the node acts for: [[market.users]], chain.user_keypairs
        and the owners of local meters."""
        from gridnode.keys import load_keypair

        users: dict[str, str] = {}
        for u in self.config.market.users if self.config.market is not None else []:
            if u.pubkey is not None:
                users[str(u.pubkey)] = u.name
                self.delegates[str(u.pubkey)] = list(u.meters)
                continue
            path = u.keypair_file()
            if path is None:
                continue
            try:
                users[str(load_keypair(path).pubkey())] = u.name
            except Exception as exc:        # the pipeline reports it; reconcile the others
                log.warning("reconciliation: user key unreadable", user=u.name, path=str(path),
                            error=str(exc))
        if self.config.chain is not None:
            for key, path in self.config.chain.user_keypair_files():
                try:
                    users.setdefault(str(load_keypair(path).pubkey()), key)
                except Exception as exc:
                    log.warning("reconciliation: user key unreadable", key=key, path=str(path),
                                error=str(exc))
        for meter_id, owner in meters.items():
            if owner:
                users.setdefault(owner, f"owner of {meter_id}")
        return users

    async def _meter_accounts(self, meter_ids: Sequence[str]) -> dict[str, dict[str, Any] | None]:
        registry = self.idls["registry"]
        addrs = [registry.find_pda([b"meter", m.encode()])[0] for m in meter_ids]
        datas = await self.pool.account_data(addrs)
        out: dict[str, dict[str, Any] | None] = {}
        for m, data in zip(meter_ids, datas, strict=True):
            out[m] = None if data is None else dict(registry.decode_account("MeterAccount", data))
        return out

    async def _meters(self, report: Report, meters: Mapping[str, str | None]) -> None:
        """Registry totals against finalized readings, settled generation against minted GRID."""
        ids = list(meters)
        accounts = await self._meter_accounts(ids) if ids else {}
        self._meter_data = accounts
        gen: dict[str, _Range] = {m: _Range() for m in ids}
        cons: dict[str, _Range] = {m: _Range() for m in ids}
        for op in await stored.operations_of(self.store, ("meter_reading",),
                                             (*FINALIZED, *IN_FLIGHT)):
            m = str(op.payload.get("meter_id"))
            if m in gen:
                flying = op.status != "finalized"
                gen[m].add(int(op.payload.get("energy_produced_wh", 0)), flying)
                cons[m].add(int(op.payload.get("energy_consumed_wh", 0)), flying)
        minted: dict[str, _Range] = {m: _Range() for m in ids}
        mints = await stored.operations_of(self.store, ("grid_minting",), (*FINALIZED, *IN_FLIGHT))
        amounts = await stored.event_amounts(self.store, "GridTokensMinted", [o.id for o in mints])
        for op in mints:
            m = str(op.payload.get("meter_id"))
            if m not in minted:
                continue
            if op.status == "finalized":
                minted[m].add(amounts.get(op.id, 0), False)
            else:
                minted[m].unknown_up()
        registered = [m for m in ids if accounts.get(m) is not None]
        report.counts["meters_registered"] = len(registered)
        chain_cfg = self.config.chain
        if chain_cfg is not None and chain_cfg.registry_readings:
            report.checks["meter_totals"] = (f"{len(registered)} registered meters: registry "
                                             "totals against finalized readings")
            for m in ids:
                acc = accounts.get(m)
                for what, rng in (("total_generation", gen[m]), ("total_consumption", cons[m])):
                    b = rng.bounds()
                    if acc is None:
                        if b.low > 0:
                            report.discrepancies.append(Discrepancy(
                                "meter_totals", m, what, None, b.low, "Wh",
                                "the meter is not registered on chain"))
                        continue
                    value = int(acc[what])
                    if not b.holds(value):
                        report.discrepancies.append(Discrepancy(
                            "meter_totals", m, what, value, b.low, "Wh", _flight(b)))
        else:
            report.checks["meter_totals"] = ("skipped: chain.registry_readings is off (the node "
                                             "does not write the registry totals)")
        elsewhere = {m for meters_of in self.delegates.values() for m in meters_of}
        report.checks["meter_settled"] = (
            f"{len(registered)} registered meters: settled net generation against GRID minted"
            + (f" ({len(elsewhere)} meters of users minting with their own keys not judged)"
               if elsewhere else ""))
        for m in registered:
            if m in elsewhere:
                continue
            acc = accounts[m]
            assert acc is not None
            b = minted[m].bounds()
            value = int(acc["settled_net_generation"]) * BASE_UNITS_PER_WH
            if not b.holds(value):
                report.discrepancies.append(Discrepancy(
                    "meter_settled", m, "settled_net_generation x 10^6", value, b.low,
                    "base units", _flight(b)))

    async def _readings(self, report: Report, meters: Mapping[str, str | None], start_s: int,
                        end_s: int) -> None:
        """MeterReadingSubmitted events landed for the day's intervals against the readings
        finalized (per meter)."""
        landed = await self._landed_readings(start_s, end_s, set(meters))
        local = await stored.readings_ending_in(self.store, start_s, end_s,
                                                (*FINALIZED, *IN_FLIGHT))
        flying = {(str(o.payload["meter_id"]), int(o.payload["interval_end"])) for o in local
                  if o.status != "finalized"}
        final: dict[tuple[str, int], tuple[int, int]] = {
            (str(o.payload["meter_id"]), int(o.payload["interval_end"])):
                (int(o.payload["energy_produced_wh"]), int(o.payload["energy_consumed_wh"]))
            for o in local if o.status == "finalized"}
        seen = Counter(k for k, _ in landed)
        report.counts.update(readings_landed=len(landed), readings_finalized=len(final))
        report.checks["readings"] = (f"{len(landed)} oracle readings landed for the day's "
                                     f"intervals, {len(final)} finalized by the node")
        problems: dict[str, list[str]] = {}
        count_chain: Counter[str] = Counter(k[0] for k, _ in landed)
        count_store: Counter[str] = Counter(k[0] for k in final)
        for (key, values) in landed:
            if key in flying:
                continue
            if key not in final:
                problems.setdefault(key[0], []).append(
                    f"{key[1]} landed but not finalized by the node")
            elif final[key] != values:
                problems.setdefault(key[0], []).append(
                    f"{key[1]} landed as {values[0]}/{values[1]} Wh, sent as "
                    f"{final[key][0]}/{final[key][1]} Wh")
        for key in final:
            if seen[key] == 0:
                problems.setdefault(key[0], []).append(f"{key[1]} finalized but not on chain")
            elif seen[key] > 1:
                problems.setdefault(key[0], []).append(f"{key[1]} landed {seen[key]} times")
        for m, what in sorted(problems.items()):
            shown = "; ".join(sorted(set(what))[:10]) + (
                f"; and {len(set(what)) - 10} more" if len(set(what)) > 10 else "")
            report.discrepancies.append(Discrepancy(
                "readings", m, "oracle readings of the day", count_chain[m], count_store[m],
                "readings", f"interval ends: {shown}"))

    async def _landed_readings(self, start_s: int, end_s: int, meters: set[str]
                               ) -> list[tuple[tuple[str, int], tuple[int, int]]]:
        """((meter, interval end), (produced, consumed)) of every MeterReadingSubmitted of a
        local meter for an interval ending in (start_s, end_s], from the oracle account's
        transactions since the day began (newest first, back to the day's start)."""
        oracle = self.idls["oracle"]
        address = str(oracle.find_pda([b"oracle_data"])[0])
        sigs: list[str] = []
        before: str | None = None
        limit = self.config.reconciliation.max_signatures
        while len(sigs) < limit:
            cfg: dict[str, Any] = {"limit": SIGNATURE_PAGE, "commitment": "finalized"}
            if before:
                cfg["before"] = before
            page = await self.pool.raw("getSignaturesForAddress", [address, cfg])
            for item in page:
                bt = item.get("blockTime")
                if item.get("err") is None and (bt is None or bt > start_s):
                    sigs.append(str(item["signature"]))
            if len(page) < SIGNATURE_PAGE:
                break
            oldest = page[-1].get("blockTime")
            if oldest is not None and oldest <= start_s:
                break
            before = str(page[-1]["signature"])
        else:
            raise RuntimeError(f"more than {limit} oracle transactions since the day began "
                               "([reconciliation] max_signatures)")
        sem = asyncio.Semaphore(TX_FETCH_CONCURRENCY)

        async def fetch(sig: str) -> dict[str, Any] | None:
            async with sem:
                return await self.pool.transaction(sig, "finalized")

        txs = await asyncio.gather(*(fetch(s) for s in sigs))
        out = []
        for sig, tx in zip(sigs, txs, strict=True):
            if tx is None:
                raise RuntimeError(f"transaction {sig} listed but not returned by the RPC node")
            meta = tx.get("meta") or {}
            if meta.get("err") is not None:
                continue
            for name, ev in oracle.decode_events(list(meta.get("logMessages") or [])):
                if name != "MeterReadingSubmitted":
                    continue
                m, ts = str(ev["meter_id"]), int(ev["timestamp"])
                if m in meters and start_s < ts <= end_s:
                    out.append(((m, ts), (int(ev["energy_produced"]), int(ev["energy_consumed"]))))
        return out

    async def _trade_records(self, users: Mapping[str, str]) -> dict[str, TradeRecordAccount]:
        """Every TradeRecord on chain with a local party, by address."""
        from gridnode.chain import accounts as accounts_reads

        records: dict[str, TradeRecordAccount] = {}
        for u in users:
            for rec in await accounts_reads.trade_records(self.pool, self.idls, u):
                records[rec.address] = rec
        return records

    async def _balances(self, report: Report, users: Mapping[str, str],
                        records: Mapping[str, TradeRecordAccount]) -> None:
        """Each user's GRID on chain against minted - delivered + received by the node (and
        received from trades a seller elsewhere settled, by their settlement markers)."""
        from gridnode.chain import accounts as accounts_reads

        mint = self.idls["energy_token"].find_pda([b"mint"])[0]
        accounts: dict[str, set[str]] = {u: {str(ata(Pubkey.from_string(u), mint))}
                                         for u in users}
        owner_of: dict[str, str] = {}
        ranges = {u: _Range() for u in users}
        ops = await stored.operations_of(
            self.store, ("grid_minting", "token_minting", "token_transfer", "settle_trade"),
            (*FINALIZED, *IN_FLIGHT))
        for op in ops:        # the token accounts the node used for each user
            p = op.payload
            if op.tx_type == "grid_minting" and str(p.get("owner")) in accounts:
                accounts[str(p["owner"])].add(str(p["token_account"]))
            elif op.tx_type == "settle_trade":
                for party, acct in (("seller", "seller_token_account"),
                                    ("buyer", "buyer_token_account")):
                    if str(p.get(party)) in accounts and p.get(acct):
                        accounts[str(p[party])].add(str(p[acct]))
            elif op.tx_type == "token_transfer" and str(p.get("owner")) in accounts:
                accounts[str(p["owner"])].add(str(p["from_token_account"]))
        for user, user_accounts in accounts.items():
            for a in user_accounts:
                owner_of[a] = user
        mints = [o for o in ops if o.tx_type == "grid_minting"]
        minted = await stored.event_amounts(self.store, "GridTokensMinted", [o.id for o in mints])
        for op in ops:
            p, flying = op.payload, op.status != "finalized"
            if op.tx_type == "grid_minting":
                u = owner_of.get(str(p.get("token_account")))
                if u is None:
                    continue
                if flying:
                    ranges[u].unknown_up()
                else:
                    ranges[u].add(minted.get(op.id, 0), False)
            elif op.tx_type == "token_minting":
                u = owner_of.get(str(p.get("token_account")))
                if u is not None:
                    ranges[u].add(int(p["amount"]), flying)
            elif op.tx_type == "token_transfer":
                src, dst = owner_of.get(str(p.get("from_token_account"))), owner_of.get(
                    str(p.get("to_token_account")))
                if src is not None and src != dst:
                    ranges[src].add(-int(p["amount"]), flying)
                if dst is not None and src != dst:
                    ranges[dst].add(int(p["amount"]), flying)
        for user, meters_of in self.delegates.items():      # they mint with their own key
            for m in meters_of:
                acc = self._meter_data.get(m)
                if acc is not None and user in ranges:
                    ranges[user].add(int(acc["settled_net_generation"]) * BASE_UNITS_PER_WH,
                                     False)
        rows = await stored.settlements(self.store)
        known = {r.trade_record for r in rows}
        remote = [r for r in records.values() if r.buyer in ranges and r.seller not in users
                  and r.address not in known]
        markers = await accounts_reads.settlements(self.pool, self.idls,
                                                   [r.address for r in remote]) if remote else {}
        for rec in remote:
            marker = markers.get(rec.address)
            if marker is not None:
                ranges[rec.buyer].add(int(marker.token_amount), False)
        for row in rows:
            if row.token_amount is None or row.status in ("queued", "defaulted", "written_off"):
                continue
            flying = row.status != "settled"       # submitted: may have landed
            if row.seller in ranges:
                ranges[row.seller].add(-int(row.token_amount), flying)
            if row.buyer in ranges:
                ranges[row.buyer].add(int(row.token_amount), flying)
        all_accounts = sorted({a for accts in accounts.values() for a in accts})
        balances = await accounts_reads.token_balances(self.pool, all_accounts) \
            if all_accounts else {}
        report.checks["balance"] = (
            f"{len(users)} users, {len(all_accounts)} token accounts: GRID against minted - "
            f"delivered + received ({sum(m is not None for m in markers.values())} trades "
            "bought from sellers elsewhere, by their settlement markers)")
        for u, accts in sorted(accounts.items()):
            value = sum(int(balances.get(a) or 0) for a in accts)
            b = ranges[u].bounds()
            if not b.holds(value):
                report.discrepancies.append(Discrepancy(
                    "balance", u, "GRID balance", value, b.low, "base units",
                    f"user {users[u]}, accounts {', '.join(sorted(accts))}"
                    + (f"; {_flight(b)}" if _flight(b) else "")))

    async def _trades(self, report: Report, users: Mapping[str, str],
                      records: Mapping[str, TradeRecordAccount], start_s: int,
                      end_s: int) -> None:
        """TradeRecords with a local party executed in the day against settlement rows: a
        trade with a local seller has exactly one row, and a row has its trade record (a trade
        whose only local party is the buyer is settled by the seller's node: no row here)."""
        rows = {r.trade_record: r for r in await stored.settlements(self.store)}
        day_records = {a: r for a, r in records.items() if start_s <= int(r.executed_at) < end_s}
        report.counts.update(trade_records=len(day_records))
        report.checks["trades"] = (f"{len(day_records)} trade records with a local party "
                                   f"executed in the day, {len(rows)} settlement rows (one per "
                                   "trade with a local seller)")
        for addr, rec in sorted(day_records.items()):
            row = rows.get(addr)
            if row is None and rec.seller not in users:
                continue
            if row is None:
                report.discrepancies.append(Discrepancy(
                    "trade_without_settlement", addr, "settlement rows", 1, 0, "rows",
                    f"{int(rec.amount)} Wh from {rec.seller} to {rec.buyer} at "
                    f"{int(rec.price_per_kwh)} per kWh, executed {int(rec.executed_at)}"))
                continue
            for what, chain_value, store_value, unit in (
                    ("energy", rec.amount, row.energy_wh, "Wh"),
                    ("price_per_kwh", rec.price_per_kwh, row.price_per_kwh, "base units/kWh"),
                    ("total_value", rec.total_value, row.total_value, "base units"),
                    ("fee", rec.fee_amount, row.fee, "base units"),
                    ("token_amount", int(rec.amount) * BASE_UNITS_PER_WH, row.token_amount,
                     "base units")):
                if store_value is None or int(chain_value) != int(store_value):
                    report.discrepancies.append(Discrepancy(
                        "trade_mismatch", addr, what, int(chain_value),
                        None if store_value is None else int(store_value), unit,
                        f"settlement row {row.id}"))
        in_day = [r for r in rows.values() if start_s <= _row_time(r) < end_s]
        for row in in_day:
            if row.trade_record not in records:
                report.discrepancies.append(Discrepancy(
                    "settlement_without_trade", row.trade_record, "trade records", 0, 1,
                    "rows", f"settlement row {row.id} ({row.status}) has no trade record with a "
                    "local party on chain"))
        judged = {r.id: r for r in in_day if r.trade_record in records}
        judged.update((rows[a].id, rows[a]) for a in day_records if a in rows)
        await self._markers(report, sorted(judged.values(), key=lambda r: r.id))

    async def _markers(self, report: Report, rows: Sequence[stored.SettlementRow]) -> None:
        """A settled row has the program's TradeSettlement marker; a row not settled has none
        (submitted ones may land any moment and are not judged)."""
        rows = [r for r in rows if r.status != "submitted"]
        trading = self.idls["trading"]
        addrs = [trading.find_pda([b"settlement", bytes(Pubkey.from_string(r.trade_record))])[0]
                 for r in rows]
        datas = await self.pool.account_data(addrs) if addrs else []
        report.checks["settlement_status"] = (f"{len(rows)} settlement rows against the "
                                              "program's settlement markers")
        for row, data in zip(rows, datas, strict=True):
            settled_on_chain = data is not None
            if settled_on_chain != (row.status == "settled"):
                report.discrepancies.append(Discrepancy(
                    "settlement_status", row.trade_record, "settled on chain",
                    int(settled_on_chain), int(row.status == "settled"), "settlements",
                    f"settlement row {row.id} is {row.status}; the chain "
                    + ("holds" if settled_on_chain else "has no") + " settlement marker"))


def _check_of(kind: str) -> str:
    """The report check that covers alerts of `kind`."""
    if kind in ("trade_without_settlement", "settlement_without_trade", "trade_mismatch"):
        return "trades"
    return kind


def _row_time(row: stored.SettlementRow) -> int:
    """When a settlement row's trade happened, as Unix s: its epoch, else when it was made."""
    return int(row.epoch) if row.epoch is not None else row.created_at_ms // 1000


def _flight(b: Bounds) -> str:
    if b.high == b.low:
        return ""
    return ("operations in flight may add any amount" if b.high is None
            else f"operations in flight allow up to {b.high:,}")


# -- running it: the daemon's job and the command line ----------------------------------------

def reconciliation_pool(config: GridnodeConfig) -> RpcPool:
    """An RPC pool over the configured endpoints reading at `finalized` (the local side of
    every comparison is finalized work)."""
    from gridnode.chain.rpc import RpcPool

    chain = config.chain
    assert chain is not None
    return RpcPool([str(u) for u in chain.rpc_urls], commitment="finalized",
                   timeout_s=chain.request_timeout_s, max_slot_lag=chain.rpc.max_slot_lag,
                   unhealthy_after=chain.rpc.unhealthy_after_errors)


async def chain_now(pool: RpcPool) -> datetime.datetime | None:
    """The chain's clock (the Clock sysvar's unix_timestamp), None when it cannot be read."""
    try:
        data = (await pool.account_data([CLOCK_SYSVAR]))[0]
    except Exception as exc:        # the run that follows reports the chain being away
        log.debug("chain clock unreadable", error=str(exc))
        return None
    if data is None or len(data) < 40:
        return None
    return datetime.datetime.fromtimestamp(struct.unpack_from("<q", data, 32)[0], datetime.UTC)


async def catch_up(config: GridnodeConfig, store: Store, trigger: str = "schedule",
                   now: Callable[[], datetime.datetime] | None = None,
                   pool: RpcPool | None = None) -> list[Report]:
    """Run every due day, oldest first (the daemon's job, at start and at `[reconciliation]
    at`). A day the chain's clock does not see as due yet waits; a day that fails stops the
    catch-up (it stays due for the next one)."""
    from gridnode.chain.idl import idls_for_chain

    rc = config.reconciliation
    zone = ZoneInfo(config.node.timezone)
    local_now = (now or (lambda: datetime.datetime.now(datetime.UTC)))().astimezone(zone)
    last = await stored.last_completed_day(store)
    if not due_days(last, local_now, rc.at_time, rc.catch_up_days).days:
        return []
    own = pool is None
    pool = pool or reconciliation_pool(config)
    reports = []
    try:
        chain_time = await chain_now(pool)
        due = due_days(last, local_now, rc.at_time, rc.catch_up_days, chain_time)
        if due.skipped:
            log.warning("reconciliation: missed days skipped", first=str(due.skipped_first),
                        days=due.skipped, catch_up_days=rc.catch_up_days)
        if not due.days:
            log.warning("reconciliation: the chain's clock does not see the day as over; "
                        "waiting", local_time=str(local_now), chain_time=str(chain_time))
            return []
        days = due.days
        reconciler = Reconciler(config, store, pool, idls_for_chain(config.chain, config.source)
                                if config.chain is not None else {})
        for day in days:
            reports.append(await reconciler.run_day(day, trigger))
    finally:
        if own:
            await pool.close()
    return reports


def schedule(sched: AsyncIOScheduler, config: GridnodeConfig, store: Store) -> None:
    """Add the daily job (cron at `[reconciliation] at` in the node's zone) and the catch-up at
    start to the daemon's scheduler. Both run `catch_up`, which asks the store what is due."""
    rc = config.reconciliation
    zone = ZoneInfo(config.node.timezone)

    one_at_a_time = asyncio.Lock()     # the start job and the daily one never overlap

    def again(trigger: str, exc: Exception) -> None:
        """The chain was away or the disk full: the day stays due; try again in RETRY_S."""
        log.warning("reconciliation did not complete; trying again", trigger=trigger,
                    error=str(exc), retry_s=RETRY_S)
        sched.add_job(job, "date", run_date=datetime.datetime.now(datetime.UTC)
                      + datetime.timedelta(seconds=RETRY_S), args=["retry"],
                      id="reconciliation-retry", replace_existing=True, misfire_grace_time=None)

    async def job(trigger: str) -> None:
        from gridnode.chain.rpc import RpcRejected, RpcUnavailable

        try:
            async with one_at_a_time:          # the second asks the store again: no day twice
                await catch_up(config, store, trigger)
        except (StoreError, OSError, RuntimeError, RpcUnavailable, RpcRejected) as exc:
            again(trigger, exc)

    at = rc.at_time
    sched.add_job(job, "cron", hour=at.hour, minute=at.minute, timezone=zone,
                  args=["schedule"], id="reconciliation", replace_existing=True,
                  misfire_grace_time=int(rc.misfire_grace_s), coalesce=True, max_instances=1)
    first = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=rc.start_delay_s)
    sched.add_job(job, "date", run_date=first, args=["catch_up"], id="reconciliation-start",
                  replace_existing=True, misfire_grace_time=None)
    # A safety net for a daily run the scheduler dropped (later than the misfire grace after a
    # clock step or a stalled loop): asking the store what is due costs one query.
    sched.add_job(job, "interval", seconds=CHECK_EVERY_S, args=["check"],
                  id="reconciliation-check", replace_existing=True, misfire_grace_time=None,
                  next_run_time=first + datetime.timedelta(seconds=CHECK_EVERY_S))


# -- gridnode reconcile ------------------------------------------------------------------------

def add_commands(sub: argparse._SubParsersAction,  # type: ignore[type-arg]
                 with_config: Callable[..., argparse.ArgumentParser]) -> None:
    """The ``reconcile`` command of the gridnode CLI."""
    p = with_config(sub.add_parser(
        "reconcile", help="show the stored daily reconciliation of a day, or run it now"),
        db=True)
    p.add_argument("--date", help="the local day YYYY-MM-DD (default: the last reconciled day; "
                   "with --now: yesterday)")
    p.add_argument("--now", action="store_true", help="run it now against the configured chain "
                   "(stored and written like the daily run)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(fn=cmd_reconcile)


def cmd_reconcile(args: argparse.Namespace) -> int:
    from gridnode.cli import CliError, UsageError, _config_path, _database, _load

    day: datetime.date | None = None
    if args.date:
        try:
            day = datetime.date.fromisoformat(args.date)
        except ValueError:
            raise UsageError(f"--date {args.date!r}: expected a day as YYYY-MM-DD") from None

    def show(report: Report) -> None:
        text = (json.dumps(report.to_json(), indent=2, sort_keys=True) if args.json
                else "\n".join(report.lines()))
        sys.stdout.write(text + "\n")

    if not args.now:
        path = _database(args)

        async def read(store: Store) -> stored.Run | None:
            if day is not None:
                return await stored.get(store, day)
            runs = [r for r in await stored.recent(store, 30) if r.report is not None]
            return runs[0] if runs else None

        run = asyncio.run(_with(path, read))
        if run is None or run.report is None:
            what = f"of {day}" if day else "yet"
            hint = f" --date {day}" if day else ""
            status = f" (last run {run.status}: {run.error})" if run is not None else ""
            raise CliError(f"no reconciliation stored {what}{status}; run it: gridnode reconcile"
                           f"{hint} --now")
        show(Report.from_json(run.report))
        return 0

    cfg = _load(_config_path(args))
    if cfg.chain is None:
        raise ConfigError([ConfigIssue(cfg.source, "chain", "<missing>",
                                       "a [chain] section: reconciliation reads the chain")])
    zone = ZoneInfo(cfg.node.timezone)
    if day is None:
        day = datetime.datetime.now(zone).date() - datetime.timedelta(days=1)
    path = Path(args.db) if args.db else cfg.node.database

    async def go(store: Store) -> Report:
        from gridnode.chain.idl import idls_for_chain

        pool = reconciliation_pool(cfg)
        try:
            assert cfg.chain is not None and day is not None
            return await Reconciler(cfg, store, pool, idls_for_chain(cfg.chain, cfg.source)
                                    ).run_day(day, "manual")
        finally:
            await pool.close()

    try:
        report = asyncio.run(_with(path, go))
    except (OSError, RuntimeError) as exc:
        raise CliError(f"reconciliation of {day} failed: {exc}") from None
    except Exception as exc:
        from gridnode.chain.rpc import RpcRejected, RpcUnavailable
        if isinstance(exc, RpcUnavailable | RpcRejected):
            raise CliError(f"reconciliation of {day} failed: {exc}") from None
        raise
    show(report)
    return 0


async def _with(path: Path, fn: Callable[[Store], Any]) -> Any:
    store = await Store.open(path)
    try:
        return await fn(store)
    finally:
        await store.close()
