"""Checks a reading must pass before it is stored as data.

Order of the checks: "no data" sentinels, signature (when the meter has a public key), clock
(future / too old), duplicates and out-of-order readings, counters going backwards (a reset is
accepted only when the next reading confirms it by rising again from the low value), and the
plausibility bound (rated power x elapsed time x margin). A rejected reading changes nothing
except the reset candidate; the reason is one of REASONS and is counted per meter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from solders.pubkey import Pubkey

from gridnode.meters.reading import Reading
from gridnode.meters.signatures import verify

REASONS = (
    "no_data", "invalid", "unsigned", "bad_signature", "future", "too_old", "duplicate",
    "out_of_order", "backward", "implausible", "malformed", "unknown_meter",
)


@dataclass(frozen=True, slots=True)
class Limits:
    rated_power_w: float = 100_000.0
    margin: float = 1.5
    max_future_s: float = 60.0
    max_age_s: float = 7 * 86400.0
    public_key: Pubkey | None = None


@dataclass(slots=True)
class Verdict:
    accepted: bool
    reason: str | None = None
    reset: bool = False    # an accepted reading that confirms a counter reset


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
        v = self._check(r, now_ms)
        if v.accepted:
            self.last = r
            self._reset_candidate = None
        return v

    def _check(self, r: Reading, now_ms: int) -> Verdict:
        lim = self.limits
        if r.import_wh is None:
            return Verdict(False, "no_data")
        if self.last is not None and self.last.export_wh is not None and r.export_wh is None:
            return Verdict(False, "no_data")
        for value in (r.import_wh, r.export_wh):
            if value is not None and (not math.isfinite(value) or value < 0):
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
        d_imp = r.import_wh - last.import_wh
        d_exp = (r.export_wh or 0.0) - (last.export_wh or 0.0)
        if d_imp < 0 or d_exp < 0:
            cand = self._reset_candidate
            if (
                cand is not None and r.read_at_ms > cand.read_at_ms
                and r.import_wh >= cand.import_wh and (r.export_wh or 0) >= (cand.export_wh or 0)
                and (r.import_wh > cand.import_wh or (r.export_wh or 0) > (cand.export_wh or 0))
                and r.import_wh + (r.export_wh or 0) <= self._bound(last, r)
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
