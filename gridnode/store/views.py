"""The reads the local API serves: operations as a client sees them (its own, paged, counted),
meters with their last values and health, intervals, and what the chain said of an operation.

Ownership is read from the data, not stored apart: a wallet owns an operation when the payload
field that names its signer holds that wallet (`Owner.signer_fields`, from the tx-type table), or
when the operation is about a meter the wallet owns; a wallet owns a meter when the meters table
says so or when it is the owner in that meter's registration. Functions take a `_Reads` (the
API's read-only connection, or a transaction) and return dataclasses.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from gridnode.store import transitions
from gridnode.store.db import _Reads
from gridnode.store.operations import (
    _OP_COLUMNS,
    CHAIN_EVENT_COLUMNS,
    ChainEvent,
    Operation,
    _operation,
    chain_event,
)


@dataclass(frozen=True)
class Owner:
    """A wallet, and where the tx-type table names the signer of each tx type."""

    wallet: str
    signer_fields: Mapping[str, Collection[str]]   # payload field -> tx types it signs
    meter_registration: str                        # the tx type that registers a meter

    def where(self) -> tuple[str, list[Any]]:
        """An SQL condition on `operations` true for the wallet's operations, with parameters."""
        parts: list[str] = []
        params: list[Any] = []
        for fname, types in sorted(self.signer_fields.items()):
            if not types:
                continue
            parts.append(f"(tx_type IN ({_marks(len(types))}) "
                         f"AND json_extract(payload, '$.{fname}') = ?)")
            params += [*sorted(types), self.wallet]
        meters, mparams = self.meters_sql()
        parts.append(f"json_extract(payload, '$.meter_id') IN ({meters})")
        params += mparams
        return "(" + " OR ".join(parts) + ")", params

    def meters_sql(self) -> tuple[str, list[Any]]:
        """A SELECT of the ids of the meters the wallet owns, with parameters."""
        return ("SELECT meter_id FROM meters WHERE owner = ? UNION "
                "SELECT json_extract(payload, '$.meter_id') FROM operations WHERE tx_type = ? "
                "AND json_extract(payload, '$.owner') = ?",
                [self.wallet, self.meter_registration, self.wallet])


def _marks(n: int) -> str:
    return ",".join("?" * n)


# -- operations --------------------------------------------------------------------------------

async def list_operations(db: _Reads, *, owner: Owner | None, statuses: Collection[str] = (),
                          limit: int, offset: int) -> tuple[list[Operation], int]:
    """A page of operations, newest first, and how many there are in all (same filters)."""
    where, params = _filters(owner, statuses)
    total = await db.fetchone(f"SELECT count(*) AS n FROM operations {where}", params)
    rows = await db.fetchall(
        f"SELECT {_OP_COLUMNS} FROM operations {where} ORDER BY id DESC LIMIT ? OFFSET ?",
        [*params, limit, offset])
    return [_operation(r) for r in rows], int(total["n"]) if total is not None else 0


def _filters(owner: Owner | None, statuses: Collection[str]) -> tuple[str, list[Any]]:
    parts: list[str] = []
    params: list[Any] = []
    if owner is not None:
        cond, params = owner.where()
        parts.append(cond)
    if statuses:
        parts.append(f"status IN ({_marks(len(statuses))})")
        params += sorted(statuses)
    return ("WHERE " + " AND ".join(parts)) if parts else "", params


async def owns(db: _Reads, owner: Owner, op_id: int) -> bool:
    cond, params = owner.where()
    row = await db.fetchone(f"SELECT 1 FROM operations WHERE id = ? AND {cond}",
                            [op_id, *params])
    return row is not None


async def owned_meters(db: _Reads, owner: Owner) -> set[str]:
    sql, params = owner.meters_sql()
    return {str(r[0]) for r in await db.fetchall(sql, params) if r[0] is not None}


@dataclass(frozen=True)
class Stats:
    by_status: dict[str, int]
    avg_confirmation_s: float | None     # submitted -> confirmed, over operations that have both


async def stats(db: _Reads, owner: Owner | None) -> Stats:
    where, params = _filters(owner, ())
    rows = await db.fetchall(
        f"SELECT status, count(*) AS n FROM operations {where} GROUP BY status", params)
    both = "submitted_at_ms IS NOT NULL AND confirmed_at_ms IS NOT NULL"
    avg = await db.fetchone(
        "SELECT avg(confirmed_at_ms - submitted_at_ms) AS ms FROM operations "
        + (f"{where} AND {both}" if where else f"WHERE {both}"), params)
    ms = None if avg is None or avg["ms"] is None else float(avg["ms"])
    return Stats({str(r["status"]): int(r["n"]) for r in rows},
                 None if ms is None else ms / 1000.0)


async def chain_events_of(db: _Reads, op_id: int) -> list[ChainEvent]:
    """The Anchor events decoded from the operation's finalized transaction."""
    rows = await db.fetchall(
        f"SELECT {CHAIN_EVENT_COLUMNS} FROM chain_events WHERE operation_id = ? ORDER BY id",
        (op_id,))
    return [chain_event(r) for r in rows]


async def recent_compute_limit(db: _Reads, tx_type: str, last: int = 20) -> int | None:
    """The highest compute-unit limit among the last `last` transactions of `tx_type`."""
    row = await db.fetchone(
        "SELECT max(cu) AS cu FROM (SELECT a.compute_unit_limit AS cu FROM tx_attempts a "
        "JOIN tx_attempt_operations t ON t.attempt_id = a.id "
        "JOIN operations o ON o.id = t.operation_id WHERE o.tx_type = ? "
        "AND a.compute_unit_limit IS NOT NULL ORDER BY a.created_at_ms DESC LIMIT ?)",
        (tx_type, last))
    return None if row is None or row["cu"] is None else int(row["cu"])


def in_group(statuses: Collection[str]) -> list[str]:
    """Known operation statuses among `statuses` (unknown names dropped), in table order."""
    return [s for s in transitions.OPERATION_STATUSES if s in statuses]


# -- meters ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MeterView:
    meter_id: str
    source: str
    profile: str | None
    owner: str | None
    read_at_ms: int | None
    import_wh: float | None
    export_wh: float | None
    power_w: float | None
    voltage_v: float | None
    current_a: float | None
    frequency_hz: float | None
    state: str | None
    requests: int | None
    errors: int | None
    accepted: int | None
    rejected: int | None
    rejections: dict[str, int] = field(default_factory=dict)
    last_good_at_ms: int | None = None
    last_error: str | None = None


async def meters(db: _Reads, only: Collection[str] | None = None) -> list[MeterView]:
    """Every meter (or those in `only`) with its latest reading and its health, by id."""
    where, params = ("", [])
    if only is not None:
        if not only:
            return []
        where, params = f"WHERE m.meter_id IN ({_marks(len(only))})", sorted(only)
    rows = await db.fetchall(
        "SELECT m.meter_id, m.source, m.profile, m.owner, r.read_at_ms, r.import_wh, "
        "r.export_wh, r.power_w, r.voltage_v, r.current_a, r.frequency_hz, h.state, h.requests, "
        "h.errors, h.accepted, h.rejected, h.rejections, h.last_good_at_ms, h.last_error "
        "FROM meters m LEFT JOIN readings r ON r.id = ("
        "  SELECT id FROM readings WHERE meter_id = m.meter_id ORDER BY read_at_ms DESC LIMIT 1) "
        f"LEFT JOIN meter_health h ON h.meter_id = m.meter_id {where} ORDER BY m.meter_id",
        params)
    out = []
    for r in rows:
        values = dict(r)
        values["rejections"] = json.loads(values["rejections"]) if values["rejections"] else {}
        out.append(MeterView(**values))
    return out


async def meter_exists(db: _Reads, meter_id: str) -> bool:
    return await db.fetchone("SELECT 1 FROM meters WHERE meter_id = ?", (meter_id,)) is not None


@dataclass(frozen=True)
class IntervalView:
    interval_start: int
    interval_end: int
    import_wh: int
    export_wh: int
    backfilled: bool
    created_at_ms: int


async def intervals(db: _Reads, meter_id: str, from_s: int, to_s: int,
                    limit: int) -> list[IntervalView]:
    """A meter's closed intervals that lie within [from_s, to_s], oldest first."""
    rows = await db.fetchall(
        "SELECT interval_start, interval_end, import_wh, export_wh, backfilled, created_at_ms "
        "FROM intervals WHERE meter_id = ? AND interval_start >= ? AND interval_end <= ? "
        "ORDER BY interval_start LIMIT ?", (meter_id, from_s, to_s, limit))
    return [IntervalView(int(r[0]), int(r[1]), int(r[2]), int(r[3]), bool(r[4]), int(r[5]))
            for r in rows]


# -- metrics -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    """An operation entering a status (an audit-log row), with what the metrics take from it."""

    id: int
    tx_type: str
    status: str
    confirmation_s: float | None    # submitted -> confirmed, on the entry that set confirmed_at
    submission_s: float | None      # created -> first submitted, on that first submission
    error: str | None               # on an entry into a final or failed status: the chain's error


ENDINGS = ("finalized", "failed", "expired", "parked")
ENTRIES_PAGE = 5000


async def entries_after(db: _Reads, after_id: int, limit: int = ENTRIES_PAGE) -> list[Entry]:
    """Operation status entries with an audit id above `after_id`, oldest first: the audit log
    only grows, so a reader keeps a cursor and counts each entry once."""
    ends = _marks(len(ENDINGS))
    rows = await db.fetchall(
        "SELECT a.id, o.tx_type, a.new_status, "
        "CASE WHEN a.at_ms = o.confirmed_at_ms THEN o.confirmed_at_ms - o.submitted_at_ms END, "
        "CASE WHEN a.new_status = 'submitted' AND a.at_ms = o.submitted_at_ms "
        "THEN o.submitted_at_ms - o.created_at_ms END, "
        f"CASE WHEN a.new_status IN ({ends}) THEN coalesce((SELECT x.err FROM tx_attempts x "
        "JOIN tx_attempt_operations t ON t.attempt_id = x.id WHERE t.operation_id = o.id "
        "AND x.err IS NOT NULL ORDER BY x.created_at_ms DESC LIMIT 1), '') END "
        "FROM audit_log a JOIN operations o ON o.id = a.entity_id "
        # `+a.entity`: walk the rowid range from the cursor, not the whole entity index
        "WHERE +a.entity = 'operation' AND a.id > ? ORDER BY a.id LIMIT ?",
        (*ENDINGS, after_id, limit))
    return [Entry(int(r[0]), str(r[1]), str(r[2]),
                  None if r[3] is None else r[3] / 1000.0,
                  None if r[4] is None else r[4] / 1000.0,
                  None if r[5] is None else error_kind(r[5] or None)) for r in rows]


async def status_counts(db: _Reads) -> dict[str, int]:
    """Operations in each status now (the outbox's depth)."""
    rows = await db.fetchall("SELECT status, count(*) FROM operations GROUP BY status")
    return {str(r[0]): int(r[1]) for r in rows}


def error_kind(err: str | None) -> str:
    """A transaction error's name, without what varies per transaction: `InstructionError`
    keeps the instruction's error (a program's custom code included), not its index."""
    if err is None:
        return "none"
    try:
        value: Any = json.loads(err)
    except ValueError:
        return "unparsed"
    if isinstance(value, dict) and value:
        name, inner = next(iter(value.items()))
        if name == "InstructionError" and isinstance(inner, list) and len(inner) == 2:
            detail = inner[1]
            if isinstance(detail, dict) and detail:
                k, v = next(iter(detail.items()))
                return f"{name}.{k}.{v}"[:64]
            return f"{name}.{detail}"[:64]
        return str(name)[:64]
    return str(value)[:64]


async def settlement_queue(db: _Reads) -> int:
    """Settlements the node still works on (queued or submitted; 0 while nothing settles)."""
    row = await db.fetchone(
        "SELECT count(*) FROM settlements WHERE status IN ('queued', 'submitted')")
    return int(row[0]) if row is not None else 0


# -- alert conditions --------------------------------------------------------------------------

WAITING = ("pending", "signed", "submitted", "unknown")     # waiting for the chain
ENDED_BADLY = ("failed", "expired", "parked")


async def recent_confirmations(db: _Reads, since_ms: int) -> tuple[int, float | None]:
    """How many operations were confirmed since `since_ms`, and their average submitted ->
    confirmed time in seconds."""
    row = await db.fetchone(
        "SELECT count(*), avg(confirmed_at_ms - submitted_at_ms) FROM operations "
        "WHERE confirmed_at_ms >= ? AND submitted_at_ms IS NOT NULL", (since_ms,))
    if row is None or not row[0]:
        return 0, None
    return int(row[0]), float(row[1]) / 1000.0


async def recent_endings(db: _Reads, since_ms: int) -> tuple[int, int]:
    """Operations that ended since `since_ms`: how many, and how many of them badly."""
    bad = _marks(len(ENDED_BADLY))
    row = await db.fetchone(
        f"SELECT count(*), coalesce(sum(status IN ({bad})), 0) FROM operations "
        f"WHERE status IN ('finalized', {bad}) AND updated_at_ms >= ?",
        (*ENDED_BADLY, *ENDED_BADLY, since_ms))
    return (0, 0) if row is None else (int(row[0]), int(row[1]))
