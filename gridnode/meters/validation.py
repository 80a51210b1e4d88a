"""Checks a reading must pass before it is stored as data.

Order of the checks: "no data" sentinels, counters that are no count (NaN, negative, beyond
2^53 Wh), signature (when the meter has a public key), clock (future / too old), duplicates and
out-of-order readings, counters going backwards (a reset is accepted only when the next reading
confirms it by rising again from the low value), and the plausibility bound (rated power x
elapsed time x margin). A rejected reading changes nothing
except the reset candidate; the reason is one of REASONS and is counted per meter.

An accepted reading then has its instantaneous values range-checked (`implausible_values`): one
that no low-voltage meter of that rating can show is set to None (no data) and named in the
verdict, so it is counted as "implausible_value" while the valid energy counters are stored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from solders.pubkey import Pubkey

from gridnode.meters.reading import Reading
from gridnode.meters.signatures import verify

REASONS = (
    "no_data", "invalid", "unsigned", "bad_signature", "future", "too_old", "duplicate",
    "out_of_order", "backward", "implausible", "implausible_value", "malformed", "unknown_meter",
)

# Bounds of instantaneous values on a low-voltage meter. LV ends at 1000 V AC (IEC 60038), which
# covers phase-to-neutral and phase-to-phase voltages of every LV system (up to 690 V); a negative
# RMS voltage does not exist. Grid frequency is 50 or 60 Hz; 40-70 Hz leaves room for islanded
# and generator-fed systems (EN 50160 allows 42.5-57.5 Hz on a 50 Hz island). Power and current
# are bounded by the meter's rating: |power| <= rated power x margin, and |current| <= what that
# power draws at the lowest nominal LV voltage in use (100 V) and a power factor as low as 0.5,
# times the margin (currents may be signed by direction on some meters).
MAX_VOLTAGE_V = 1000.0
# A counter beyond 2^53 Wh can no longer count single watt-hours in a float (no meter gets there).
MAX_COUNTER_WH = float(2**53)
FREQUENCY_HZ = (40.0, 70.0)
MIN_NOMINAL_V = 100.0
MIN_POWER_FACTOR = 0.5
INSTANTANEOUS = ("power_w", "voltage_v", "current_a", "frequency_hz")


@dataclass(frozen=True, slots=True)
class Limits:
    rated_power_w: float = 100_000.0
    margin: float = 1.5
    max_future_s: float = 60.0
    max_age_s: float = 7 * 86400.0
    public_key: Pubkey | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    accepted: bool
    reason: str | None = None
    reset: bool = False    # an accepted reading that confirms a counter reset
    dropped: tuple[str, ...] = ()   # instantaneous values set to None, each with why


def implausible_values(r: Reading, limits: Limits) -> dict[str, str]:
    """The instantaneous values of `r` no meter of this rating can show, by field, with why.

    NaN and infinity are never data; for the bounds see MAX_VOLTAGE_V and the notes above it."""
    max_power = limits.rated_power_w * limits.margin
    max_current = limits.rated_power_w / (MIN_NOMINAL_V * MIN_POWER_FACTOR) * limits.margin
    bounds = {
        "power_w": (-max_power, max_power, "W"),
        "voltage_v": (0.0, MAX_VOLTAGE_V, "V"),
        "current_a": (-max_current, max_current, "A"),
        "frequency_hz": (*FREQUENCY_HZ, "Hz"),
    }
    out: dict[str, str] = {}
    for name in INSTANTANEOUS:
        value = getattr(r, name)
        if value is None:
            continue
        lo, hi, unit = bounds[name]
        if not math.isfinite(value):
            out[name] = f"{name}={value}: not a number"
        elif not lo <= value <= hi:
            out[name] = f"{name}={value:.6g} {unit} outside [{lo:.6g}, {hi:.6g}] {unit}"
    return out


ACCEPT = Verdict(True)


def _float32_step(value: float) -> float:
    """Resolution of a float32 at `value` (a counter read as float32 can only move in such steps)."""
    if value <= 0:
        return 0.0
    return 2.0 ** (math.floor(math.log2(value)) - 23)


class Validator:
    """Validation state of one meter: the last accepted reading and a pending reset candidate."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.last: Reading | None = None
        self._reset_candidate: Reading | None = None

    def check(self, r: Reading, now_ms: int) -> Verdict:
        """Judge `r`; an accepted one loses its implausible instantaneous values (set to None)."""
        v = self._check(r, now_ms)
        if v.accepted:
            self.last = r
            self._reset_candidate = None
            bad = implausible_values(r, self.limits)
            for name in bad:
                setattr(r, name, None)
            if bad:
                v = Verdict(True, reset=v.reset, dropped=tuple(bad.values()))
        return v

    def _check(self, r: Reading, now_ms: int) -> Verdict:
        lim = self.limits
        imp, exp = r.import_wh, r.export_wh
        if imp is None:
            return Verdict(False, "no_data")
        if self.last is not None and self.last.export_wh is not None and exp is None:
            return Verdict(False, "no_data")
        for value in (imp, exp):
            if value is not None and not 0 <= value <= MAX_COUNTER_WH:   # NaN fails too
                return Verdict(False, "invalid")
        if lim.public_key is not None:
            if not r.signature or r.signed_message is None:
                return Verdict(False, "unsigned")
            if not verify(lim.public_key, r.signed_message, r.signature):
                return Verdict(False, "bad_signature")
        if r.read_at_ms > now_ms + lim.max_future_s * 1000:
            return Verdict(False, "future")
        if r.read_at_ms < now_ms - lim.max_age_s * 1000:
            return Verdict(False, "too_old")
        last = self.last
        if last is None:
            return ACCEPT
        if r.read_at_ms == last.read_at_ms or (
            r.sequence is not None and r.sequence == last.sequence
        ):
            return Verdict(False, "duplicate")
        if r.read_at_ms < last.read_at_ms:
            return Verdict(False, "out_of_order")
        exp0 = exp or 0.0
        d_imp = imp - (last.import_wh or 0.0)
        d_exp = exp0 - (last.export_wh or 0.0)
        if d_imp < 0 or d_exp < 0:
            cand = self._reset_candidate
            c_imp = (cand.import_wh or 0.0) if cand is not None else 0.0
            c_exp = (cand.export_wh or 0.0) if cand is not None else 0.0
            if (
                cand is not None and r.read_at_ms > cand.read_at_ms
                and imp >= c_imp and exp0 >= c_exp and (imp > c_imp or exp0 > c_exp)
                and imp + exp0 <= self._bound(last, r)
            ):   # a counter that restarted from zero: what it shows now must be plausible
                return Verdict(True, reset=True)
            self._reset_candidate = r
            return Verdict(False, "backward")
        if d_imp + d_exp > self._bound(last, r):
            return Verdict(False, "implausible")
        return ACCEPT

    def _bound(self, last: Reading, r: Reading) -> float:
        """Most energy the meter can have counted between two readings (Wh)."""
        assert r.import_wh is not None
        hours = (r.read_at_ms - last.read_at_ms) / 3_600_000
        slack = 1.0 + 2 * _float32_step(max(r.import_wh, r.export_wh or 0.0))
        return self.limits.rated_power_w * hours * self.limits.margin + slack
