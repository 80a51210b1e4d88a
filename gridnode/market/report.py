"""One line per cleared epoch, once everything it matched has settled or defaulted:

    epoch 22:15: 2 sell / 2 buy orders, 2 matches, 1.240 kWh at 0.150 avg, 2 settled, GRID ...

Orders are those open on chain at the clearing (`n sell / m buy` counts the node's own, by the
epoch they traded in), prices and balances in GRID (10^9 base units; prices per kWh)."""

from __future__ import annotations

import time
from collections.abc import Mapping

from gridnode.store import market, settlements
from gridnode.store.db import _Reads

GRID = 10**9


def grid(base_units: int) -> str:
    return f"{base_units / GRID:.3f}"


async def epoch_line(db: _Reads, row: market.EpochRow,
                     balances: Mapping[str, int] | None = None) -> str | None:
    """The epoch's line, or None while its matches or settlements are still in flight."""
    ops = await market.epoch_match_ops(db, row.epoch)
    if any(op.status not in ("finalized", "failed", "parked") for op in ops):
        return None
    totals = await settlements.epoch_totals(db, row.epoch)
    if any(s in totals.by_status for s in ("queued", "submitted")):
        return None
    sides = await market.epoch_counts(db, row.epoch)
    settled = totals.by_status.get("settled", 0)
    avg = (f" at {grid(totals.total_value // totals.energy_wh)} avg"
           if totals.energy_wh else "")
    line = (f"epoch {time.strftime('%H:%M', time.gmtime(row.epoch))}: "
            f"{sides.get('sell', 0)} sell / {sides.get('buy', 0)} buy orders, "
            f"{row.matches} matches, {totals.energy_wh / 1000:.3f} kWh{avg}, {settled} settled")
    defaulted = totals.by_status.get("defaulted", 0)
    if defaulted:
        line += f", {defaulted} defaulted"
    if balances:
        line += ", GRID balances " + ", ".join(f"{k} {grid(v)}" for k, v in balances.items())
    return line
