"""Priority fee from getRecentPrioritizationFees: a percentile, clamped to a floor and a cap.

Fees are micro-lamports per compute unit. The estimate is cached for `cache_s` per set of
writable accounts, because fee markets are local to the accounts a transaction writes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from solders.pubkey import Pubkey

from gridnode.chain.rpc import RpcPool, RpcUnavailable

# Writable sets whose estimate is remembered: sets that include an order's or a meter's own
# account are new all the time, so the oldest are dropped beyond this.
CACHE_KEYS = 256


def percentile(values: Sequence[int], pct: float) -> int:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


class PriorityFees:
    def __init__(self, pool: RpcPool, *, percentile: float = 75.0, floor: int = 0,
                 cap: int = 100_000, cache_s: float = 10.0) -> None:
        self.pool = pool
        self.pct = percentile
        self.floor = floor
        self.cap = cap
        self.cache_s = cache_s
        self._cache: dict[tuple[str, ...], tuple[float, int]] = {}

    def clamp(self, fee: int) -> int:
        return max(self.floor, min(self.cap, fee))

    async def estimate(self, writable: Sequence[Pubkey]) -> int:
        key = tuple(sorted(str(a) for a in writable))
        hit = self._cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < self.cache_s:
            return hit[1]
        try:
            fees = await self.pool.recent_prioritization_fees(list(writable))
        except RpcUnavailable:
            return hit[1] if hit else self.floor
        fee = self.clamp(percentile([f for f in fees if f > 0], self.pct))
        self._cache.pop(key, None)       # re-inserted last: the dict stays oldest-first
        self._cache[key] = (time.monotonic(), fee)
        if len(self._cache) > CACHE_KEYS:
            del self._cache[next(iter(self._cache))]
        return fee
