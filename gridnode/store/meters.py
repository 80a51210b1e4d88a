"""What an operator and the demo read of the meters' tables: each meter's last reading and health.

The reads on `meters`, `readings` and `meter_health` that serve status displays live here, so the
command line holds no SQL and a schema change is looked up in the store. Functions take a `Store`
(committed data) or a `WriteTx`; rows come back as dataclasses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from gridnode.store.db import _Reads as Reader


@dataclass(frozen=True, slots=True)
class MeterStatus:
    """A configured meter, its latest stored reading (if any) and its health (if reported)."""

    meter_id: str
    source: str
    read_at_ms: int | None          # the latest reading; None: no reading stored yet
    import_wh: float | None
    export_wh: float | None         # None also when the meter has no export counter
    state: str | None               # health: None until the meter's source reported it
    accepted: int | None
    rejected: int | None
    rejections: dict[str, int]      # rejected readings by reason
    errors: int | None
    last_error: str | None


async def statuses(db: Reader) -> list[MeterStatus]:
    """Every meter known to the node, by meter id."""
    rows = await db.fetchall(
        "SELECT m.meter_id, m.source, r.read_at_ms, r.import_wh, r.export_wh, h.state, "
        "h.accepted, h.rejected, h.rejections, h.errors, h.last_error "
        "FROM meters m LEFT JOIN readings r ON r.id = ("
        "  SELECT id FROM readings WHERE meter_id = m.meter_id "
        "  ORDER BY read_at_ms DESC LIMIT 1) "
        "LEFT JOIN meter_health h ON h.meter_id = m.meter_id ORDER BY m.meter_id")
    return [MeterStatus(
        meter_id=r["meter_id"], source=r["source"], read_at_ms=r["read_at_ms"],
        import_wh=r["import_wh"], export_wh=r["export_wh"], state=r["state"],
        accepted=r["accepted"], rejected=r["rejected"],
        rejections=json.loads(r["rejections"]) if r["rejections"] else {},
        errors=r["errors"], last_error=r["last_error"]) for r in rows]


async def reading_count(db: Reader) -> int:
    """Number of raw readings stored (all meters)."""
    row = await db.fetchone("SELECT count(*) AS n FROM readings")
    return int(row["n"]) if row is not None else 0
