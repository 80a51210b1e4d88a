"""Per-meter health: requests, errors, accepted and rejected readings (by reason), last good
reading, and whether the meter is online, stale or offline.

Counters live in memory (`snapshot()` is what the local API serves) and are flushed to the
meter_health table, where `gridnode status` reads them. Rejections are logged once per meter and
reason per burst: the first one is logged, repeats within `quiet_s` are only counted, and the
next log line after a quiet period says how many were suppressed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from gridnode.log import get_logger

log = get_logger("gridnode.meters")


@dataclass(slots=True)
class MeterHealth:
    meter_id: str
    source: str
    stale_after_s: float
    requests: int = 0
    errors: int = 0
    accepted: int = 0
    rejected: int = 0
    rejections: Counter[str] = field(default_factory=Counter)
    last_good_at_ms: int | None = None
    last_error: str | None = None
    dirty: bool = True
    flushed_state: str | None = None
    _burst: dict[str, tuple[float, int]] = field(default_factory=dict)

    def state(self, now_ms: int) -> str:
        if self.last_good_at_ms is None:
            return "offline" if self.errors or self.rejected else "unknown"
        if now_ms - self.last_good_at_ms > self.stale_after_s * 1000:
            return "stale"
        return "online"

    def request(self, ok: bool, error: str | None = None) -> None:
        self.requests += 1
        if not ok:
            self.errors += 1
            self.last_error = error
        self.dirty = True

    def good(self, read_at_ms: int) -> None:
        self.accepted += 1
        self.last_good_at_ms = max(read_at_ms, self.last_good_at_ms or 0)
        self.dirty = True

    def reject(self, reason: str, detail: str, now_s: float, quiet_s: float = 60.0) -> None:
        """Count a rejection; log it unless the same reason was seen within `quiet_s`."""
        self.rejected += 1
        self.rejections[reason] += 1
        self.dirty = True
        last, suppressed = self._burst.get(reason, (-1e18, 0))
        if now_s - last > quiet_s:
            log.warning("reading rejected", meter_id=self.meter_id, reason=reason,
                        detail=detail[:200], suppressed=suppressed)
            self._burst[reason] = (now_s, 0)
        else:
            self._burst[reason] = (last, suppressed + 1)

    def snapshot(self, now_ms: int) -> dict[str, Any]:
        return {
            "meter_id": self.meter_id, "source": self.source, "requests": self.requests,
            "errors": self.errors, "accepted": self.accepted, "rejected": self.rejected,
            "rejections": dict(self.rejections), "last_good_at_ms": self.last_good_at_ms,
            "last_error": self.last_error, "state": self.state(now_ms),
        }
