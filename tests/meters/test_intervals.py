import math
import struct

from gridnode.meters.intervals import MeterState, advance
from gridnode.meters.reading import Reading

L = 900
B0 = 1_700_000_100 // L * L   # an interval boundary


def reading(t: float, imp: float, exp: float = 0.0) -> Reading:
    return Reading("m1", int(t * 1000), int(t * 1000), imp, exp)


def f32(x: float) -> float:
    return struct.unpack(">f", struct.pack(">f", x))[0]


def test_boundaries_interpolated_and_energy_sums_to_the_counter_difference() -> None:
    s = MeterState("m1")
    out = []
    # 400 W load read every 7 s through a float32 counter at 100 MWh (8 Wh steps)
    base = 100_000_000.0
    t = B0 - 30
    while t < B0 + 6 * L:
        out += advance(s, reading(t, f32(base + 400 * (t - B0 + 30) / 3600)), L)
        t += 7
    assert [iv.interval_start for iv in out] == [B0 + i * L for i in range(5)]
    assert all(iv.interval_end - iv.interval_start == L for iv in out)
    total = sum(iv.import_wh for iv in out)
    assert total == math.floor(out[-1].counter_import_end - out[0].counter_import_start)
    # 100 Wh per interval on average, though the counter moves in 8 Wh steps
    assert all(90 <= iv.import_wh <= 110 for iv in out)
    assert not any(iv.backfilled for iv in out)


def test_small_load_is_not_lost_to_rounding() -> None:
    s = MeterState("m1")
    out = []
    for i in range(0, 8 * L + 1, 60):
        out += advance(s, reading(B0 + i, 1000.0 + 0.7 * i / L), L)   # 0.7 Wh per interval
    assert sum(iv.import_wh for iv in out) == 5   # floor(8 * 0.7), carried across intervals


def test_outage_is_backfilled_and_spread() -> None:
    s = MeterState("m1")
    out = advance(s, reading(B0 - 10, 0.0), L)
    out += advance(s, reading(B0 + 10, 20.0), L)
    out += advance(s, reading(B0 + 4 * L + 10, 20.0 + 3600.0), L)  # 1 h outage
    assert [iv.backfilled for iv in out] == [True, True, True, True]
    assert all(abs(iv.import_wh - 900) <= 10 for iv in out)   # spread evenly over the gap
    assert sum(iv.import_wh for iv in out) == math.floor(
        out[-1].counter_import_end - out[0].counter_import_start)


def test_reset_keeps_counters_continuous() -> None:
    s = MeterState("m1")
    out = advance(s, reading(B0 - 10, 5000.0), L)
    out += advance(s, reading(B0 + 10, 5010.0), L)
    out += advance(s, reading(B0 + 100, 3.0), L, reset=True)   # meter restarted from 0
    out += advance(s, reading(B0 + L + 10, 13.0), L)
    # continuous counter: 5010 before the reset, 5010 + 13 after; boundary interpolated
    assert len(out) == 1 and out[0].import_wh == math.floor(5013 + 10 * 800 / 810 - 5005)


def test_gap_longer_than_max_backfill_lands_in_one_interval() -> None:
    s = MeterState("m1")
    out = advance(s, reading(B0 - 10, 0.0), L, max_backfill_s=2 * L)
    out += advance(s, reading(B0 + 10, 20.0), L, max_backfill_s=2 * L)
    out += advance(s, reading(B0 + 10 * L + 10, 10_020.0), L, max_backfill_s=2 * L)
    # 10 intervals of outage, at most 2 back-filled: the first holds the energy before them
    assert len(out) == 2 and all(iv.backfilled for iv in out)
    assert out[0].counter_import_start == 10.0     # the counter at B0, before the gap
    assert [iv.interval_start for iv in out] == [B0 + 8 * L, B0 + 9 * L]
    assert sum(iv.import_wh for iv in out) == math.floor(out[-1].counter_import_end - 10.0)
