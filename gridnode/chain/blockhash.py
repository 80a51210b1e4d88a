"""A blockhash cache refreshed in the background, at the commitment used for expiry checks.

Building a transaction never waits for getLatestBlockhash unless the cached one is older than
`max_age_s`; the same commitment (the pool's) is used to fetch blockhashes and to read the block
height that decides expiry, so a blockhash is never judged by a different view of the chain.
The background refresh runs only while `wanted()` says something is to be signed or in flight;
with nothing to do the node asks for no blockhash, and a signer that finds the cached one too old
fetches it on demand (`get`). A refresh that fails (no endpoint answered, or one refused the request) is logged as a state:
when failures begin, while they last, and when a refresh succeeds again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from gridnode.chain.rpc import BlockhashInfo, RpcPool, RpcRejected, RpcUnavailable
from gridnode.log import Episode, get_logger

log = get_logger(__name__)


class BlockhashCache:
    def __init__(self, pool: RpcPool, *, refresh_s: float = 2.0, max_age_s: float = 10.0,
                 wanted: Callable[[], bool] | None = None) -> None:
        self.pool = pool
        self.wanted = wanted        # None: always refresh
        self.refreshes = 0          # background fetches made
        self.refresh_s = refresh_s
        self.max_age_s = max_age_s
        self._current: BlockhashInfo | None = None
        self._lock = asyncio.Lock()

    async def get(self, *, fresh: bool = False) -> BlockhashInfo:
        """The cached blockhash, fetched now when absent, too old, or `fresh` is asked."""
        cur = self._current
        if cur is not None and not fresh and time.monotonic() - cur.fetched_at < self.max_age_s:
            return cur
        async with self._lock:
            cur = self._current
            if cur is None or fresh or time.monotonic() - cur.fetched_at >= self.max_age_s:
                newer = await self.pool.latest_blockhash()
                if cur is None or fresh or newer.blockhash != cur.blockhash:
                    self._current = newer
                else:  # same blockhash (stalled chain): keep serving it, note the fetch time
                    self._current = BlockhashInfo(cur.blockhash, cur.last_valid_block_height,
                                                  newer.fetched_at)
            assert self._current is not None
            return self._current

    def age_s(self) -> float | None:
        """Seconds since the cached blockhash was fetched (None before the first fetch)."""
        cur = self._current
        return None if cur is None else time.monotonic() - cur.fetched_at

    def invalidate(self) -> None:
        self._current = None

    async def run(self) -> None:
        failing = Episode(log, "blockhash refresh failed", "blockhash refresh recovered")
        while True:
            if self.wanted is None or self.wanted():
                self.refreshes += 1
                try:
                    await self.get(fresh=True)
                except (RpcUnavailable, RpcRejected) as exc:
                    failing.occurred(error=str(exc)[:300])
                else:
                    failing.cleared()
            await asyncio.sleep(self.refresh_s)
