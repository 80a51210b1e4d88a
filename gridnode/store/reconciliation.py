"""The daily reconciliation's tables and reads: its runs (one per local day) and what it reads of
the outbox, the chain events and the settlements to compare with the chain.

Every SQL statement of gridnode.settlement.reconciliation is here. Days are ISO dates
('YYYY-MM-DD') of the node's time zone, which sort as text in date order.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from gridnode.store.db import WriteTx, _Reads, now_ms

Reader = _Reads

RUNNING, COMPLETED, FAILED = "running", "completed", "failed"


@dataclass(frozen=True, slots=True)
class Run:
    """One row of `reconciliation_runs`."""

    day: datetime.date
    timezone: str
    status: str
    final: bool
    trigger: str
    started_at_ms: int
    finished_at_ms: int | None
    discrepancies: int | None
    report: dict[str, Any] | None
    report_path: str | None
    error: str | None
    runs: int


def _run(row: Any) -> Run:
    return Run(datetime.date.fromisoformat(row["day"]), row["timezone"], row["status"],
               bool(row["final"]), row["trigger"], int(row["started_at_ms"]),
               row["finished_at_ms"], row["discrepancies"],
               json.loads(row["report"]) if row["report"] else None, row["report_path"],
               row["error"], int(row["runs"]))


async def start(tx: WriteTx, day: datetime.date, timezone: str, trigger: str, final: bool,
                at_ms: int | None = None) -> None:
    """A run of `day` begins (a day run before is run again: its row is reused, `runs` counts).

    A completed final run is never demoted by a later non-final one: `final` only rises."""
    await tx.execute(
        "INSERT INTO reconciliation_runs (day, timezone, status, final, trigger, started_at_ms) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (day) DO UPDATE SET timezone = excluded.timezone, "
        "status = excluded.status, final = max(reconciliation_runs.final, excluded.final), "
        "trigger = excluded.trigger, started_at_ms = excluded.started_at_ms, "
        "finished_at_ms = NULL, error = NULL, runs = reconciliation_runs.runs + 1",
        (day.isoformat(), timezone, RUNNING, int(final), trigger,
         at_ms if at_ms is not None else now_ms()))


async def complete(tx: WriteTx, day: datetime.date, report: dict[str, Any], discrepancies: int,
                   report_path: str | None, at_ms: int | None = None) -> None:
    await tx.execute(
        "UPDATE reconciliation_runs SET status = ?, finished_at_ms = ?, discrepancies = ?, "
        "report = ?, report_path = ?, error = NULL WHERE day = ?",
        (COMPLETED, at_ms if at_ms is not None else now_ms(), discrepancies,
         json.dumps(report, sort_keys=True, separators=(",", ":")), report_path,
         day.isoformat()))


async def fail(tx: WriteTx, day: datetime.date, error: str, at_ms: int | None = None) -> None:
    """The run of `day` did not finish (the chain did not answer): it stays due."""
    await tx.execute(
        "UPDATE reconciliation_runs SET status = ?, finished_at_ms = ?, error = ? WHERE day = ?",
        (FAILED, at_ms if at_ms is not None else now_ms(), error[:2000], day.isoformat()))


async def get(db: Reader, day: datetime.date) -> Run | None:
    row = await db.fetchone("SELECT * FROM reconciliation_runs WHERE day = ?", (day.isoformat(),))
    return None if row is None else _run(row)


async def recent(db: Reader, limit: int = 30) -> list[Run]:
    rows = await db.fetchall(
        "SELECT * FROM reconciliation_runs ORDER BY day DESC LIMIT ?", (limit,))
    return [_run(r) for r in rows]


async def last_completed_day(db: Reader) -> datetime.date | None:
    """The latest day whose run completed after the day had ended: what the scheduler resumes
    from. A run of a day still under way does not count."""
    row = await db.fetchone(
        "SELECT max(day) AS day FROM reconciliation_runs WHERE final = 1 AND status = ?",
        (COMPLETED,))
    return None if row is None or row["day"] is None else datetime.date.fromisoformat(row["day"])


# -- what the checks read ----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class OpRow:
    """An outbox operation as the checks see it."""

    id: int
    tx_type: str
    status: str
    payload: dict[str, Any]


async def local_meters(db: Reader) -> dict[str, str | None]:
    """meter_id -> owner (base58, when known) of every meter the node knows."""
    rows = await db.fetchall("SELECT meter_id, owner FROM meters ORDER BY meter_id")
    return {str(r["meter_id"]): r["owner"] for r in rows}


async def operations_of(db: Reader, tx_types: Collection[str],
                        statuses: Collection[str]) -> list[OpRow]:
    """Operations of `tx_types` in `statuses`, oldest first."""
    if not tx_types or not statuses:
        return []
    rows = await db.fetchall(
        f"SELECT id, tx_type, status, payload FROM operations WHERE tx_type IN "
        f"({','.join('?' * len(tx_types))}) AND status IN ({','.join('?' * len(statuses))}) "
        "ORDER BY id", [*tx_types, *statuses])
    return [OpRow(int(r["id"]), str(r["tx_type"]), str(r["status"]), json.loads(r["payload"]))
            for r in rows]


async def readings_ending_in(db: Reader, start_s: int, end_s: int,
                             statuses: Collection[str]) -> list[OpRow]:
    """meter_reading operations in `statuses` whose interval ends in (start_s, end_s]: the
    intervals of one local day (an interval belongs to the day it ends in)."""
    rows = await db.fetchall(
        "SELECT id, tx_type, status, payload FROM operations WHERE tx_type = 'meter_reading' "
        f"AND status IN ({','.join('?' * len(statuses))}) "
        "AND json_extract(payload, '$.interval_end') > ? "
        "AND json_extract(payload, '$.interval_end') <= ? ORDER BY id",
        [*statuses, start_s, end_s])
    return [OpRow(int(r["id"]), str(r["tx_type"]), str(r["status"]), json.loads(r["payload"]))
            for r in rows]


async def event_amounts(db: Reader, name: str, op_ids: Sequence[int],
                        field: str = "amount") -> dict[int, int]:
    """operation id -> the sum of `field` over its chain events called `name` (integers)."""
    out: dict[int, int] = {}
    for i in range(0, len(op_ids), 500):
        chunk = list(op_ids[i:i + 500])
        rows = await db.fetchall(
            "SELECT operation_id, data FROM chain_events WHERE name = ? AND operation_id IN "
            f"({','.join('?' * len(chunk))})", [name, *chunk])
        for r in rows:
            value = json.loads(r["data"]).get(field)
            out[int(r["operation_id"])] = out.get(int(r["operation_id"]), 0) + int(value or 0)
    return out


@dataclass(frozen=True, slots=True)
class SettlementRow:
    """A settlement row with the columns reconciliation compares (amounts as stored integers)."""

    id: int
    trade_record: str
    status: str
    operation_id: int | None
    buyer: str | None
    seller: str | None
    energy_wh: int | None
    price_per_kwh: int | None
    total_value: int | None
    fee: int | None
    token_amount: int | None
    epoch: int | None
    created_at_ms: int
    payload: dict[str, Any]


async def settlements(db: Reader) -> list[SettlementRow]:
    """Every settlement row (all statuses), oldest first."""
    rows = await db.fetchall(
        "SELECT id, trade_record, status, operation_id, buyer, seller, energy_wh, price_per_kwh, "
        "total_value, fee, token_amount, epoch, created_at_ms, payload FROM settlements "
        "ORDER BY id")
    return [SettlementRow(
        int(r["id"]), str(r["trade_record"]), str(r["status"]), r["operation_id"], r["buyer"],
        r["seller"], r["energy_wh"], r["price_per_kwh"], r["total_value"], r["fee"],
        r["token_amount"], r["epoch"], int(r["created_at_ms"]),
        json.loads(r["payload"]) if r["payload"] else {}) for r in rows]


async def reading_meter_ids(db: Reader) -> list[str]:
    """Every meter the node ever queued an oracle reading for."""
    rows = await db.fetchall(
        "SELECT DISTINCT json_extract(payload, '$.meter_id') AS m FROM operations "
        "WHERE tx_type = 'meter_reading' ORDER BY m")
    return [str(r["m"]) for r in rows if r["m"] is not None]
