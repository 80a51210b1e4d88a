"""Interval energy from cumulative counters.

Intervals are UTC-aligned (`interval_s`, 900 by default). The counter value at a boundary is
interpolated linearly between the accepted readings on either side of it; an interval's energy is
the difference of its boundary counters. Energy is whole Wh, computed against a fixed origin
(`floor(counter - origin) - emitted so far`), so the remainder carries from one interval to the
next and the intervals of a meter always sum to the counter difference: a float32 counter that
moves in 8 Wh steps, or a small load, never loses energy to rounding.

After an outage the boundaries inside the gap are interpolated across it: the energy is spread
over the missing intervals and they are marked `backfilled`. A confirmed counter reset moves an
offset so the counters the builder sees keep rising. The state is a plain dataclass persisted in
the meter_state table in the same transaction as the reading and the closed intervals.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from gridnode.chain.validation import MeterReadingPayload
from gridnode.meters.reading import Reading


@dataclass(slots=True)
class MeterState:
    meter_id: str
    last_read_at_ms: int | None = None
    last_import_raw: float | None = None
    last_export_raw: float | None = None
    import_offset: float = 0.0
    export_offset: float = 0.0
    boundary: int | None = None            # Unix s of the start of the next interval to close
    boundary_import: float | None = None   # continuous counters at that boundary
    boundary_export: float | None = None
    boundary_backfilled: int = 0
    origin_import: float | None = None
    origin_export: float | None = None
    emitted_import: int = 0
    emitted_export: int = 0

    def row(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ClosedInterval:
    meter_id: str
    interval_start: int
    interval_end: int
    import_wh: int
    export_wh: int
    counter_import_start: float
    counter_import_end: float
    counter_export_start: float
    counter_export_end: float
    backfilled: bool

    def operation_payload(self) -> MeterReadingPayload:
        """The oracle reading this interval becomes (its tx type row derives the key)."""
        return MeterReadingPayload(
            meter_id=self.meter_id, interval_start=self.interval_start,
            interval_end=self.interval_end, energy_produced_wh=self.export_wh,
            energy_consumed_wh=self.import_wh, backfilled=self.backfilled)


def advance(state: MeterState, r: Reading, interval_s: int, reset: bool = False,
            max_backfill_s: float | None = None) -> list[ClosedInterval]:
    """Feed one accepted reading; return the intervals it closes (in order) and update `state`.

    Boundaries more than `max_backfill_s` before the reading are not back-filled one by one:
    the energy of the whole gap lands in the first interval that is back-filled.
    """
    assert r.import_wh is not None
    exp_raw = r.export_wh or 0.0
    if reset and state.last_read_at_ms is not None:
        state.import_offset += state.last_import_raw or 0.0
        state.export_offset += state.last_export_raw or 0.0
    imp = r.import_wh + state.import_offset
    exp = exp_raw + state.export_offset
    closed: list[ClosedInterval] = []
    if state.last_read_at_ms is not None:
        t0 = state.last_read_at_ms
        t1 = r.read_at_ms
        last_imp = state.last_import_raw
        assert last_imp is not None     # stored together with last_read_at_ms
        imp0 = last_imp + state.import_offset if not reset else state.import_offset
        exp0 = (state.last_export_raw or 0.0) + state.export_offset if not reset else state.export_offset
        gap = (t1 - t0) > interval_s * 1000
        b = (t0 // 1000 // interval_s + 1) * interval_s
        if max_backfill_s is not None and state.boundary is not None:
            oldest = (int(t1 / 1000 - max_backfill_s) // interval_s) * interval_s
            if oldest > b:          # skip ahead; the open interval now ends at `oldest + L`
                b = oldest + interval_s
                state.boundary = oldest
        while b * 1000 <= t1:
            frac = (b * 1000 - t0) / (t1 - t0)
            ci = imp0 + (imp - imp0) * frac
            ce = exp0 + (exp - exp0) * frac
            if b * 1000 == t1:
                ci, ce = imp, exp
            closed_iv = _boundary(state, b, ci, ce, gap, interval_s)
            if closed_iv is not None:
                closed.append(closed_iv)
            b += interval_s
    elif r.read_at_ms % (interval_s * 1000) == 0:
        _boundary(state, r.read_at_ms // 1000, imp, exp, False, interval_s)
    state.last_read_at_ms = r.read_at_ms
    state.last_import_raw = r.import_wh
    state.last_export_raw = r.export_wh   # a meter without export has none after a restart too
    return closed


def _boundary(
    state: MeterState, b: int, ci: float, ce: float, gap: bool, interval_s: int
) -> ClosedInterval | None:
    start = state.boundary
    if (start is None or b - start != interval_s     # the first boundary, or the length changed
            or state.origin_import is None or state.origin_export is None):
        state.origin_import, state.origin_export = ci, ce
        state.emitted_import = state.emitted_export = 0
        out = None
    else:
        e_imp = max(0, math.floor(ci - state.origin_import) - state.emitted_import)
        e_exp = max(0, math.floor(ce - state.origin_export) - state.emitted_export)
        state.emitted_import += e_imp
        state.emitted_export += e_exp
        out = ClosedInterval(
            meter_id=state.meter_id, interval_start=start, interval_end=b,
            import_wh=e_imp, export_wh=e_exp,
            counter_import_start=state.boundary_import or 0.0, counter_import_end=ci,
            counter_export_start=state.boundary_export or 0.0, counter_export_end=ce,
            backfilled=bool(state.boundary_backfilled) or gap,
        )
    state.boundary, state.boundary_import, state.boundary_export = b, ci, ce
    state.boundary_backfilled = int(gap)
    return out
