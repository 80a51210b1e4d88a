"""The priority-fee cache is bounded: an order's or a meter's own account makes every writable set
new, so a node that runs for months must not remember each one."""

from __future__ import annotations

from pathlib import Path

from solders.pubkey import Pubkey

from gridnode.chain.fees import CACHE_KEYS, PriorityFees
from gridnode.chain.rpc import RpcPool
from simulators.chain.localnet import Localnet
from tests.net import pick_free_port


async def test_fee_cache_keeps_the_latest_writable_sets_only(tmp_path: Path) -> None:
    async with Localnet(port=pick_free_port(), slot_ms=50, state_dir=tmp_path,
                        bootstrap=False) as net:
        pool = RpcPool([net.rpc_url])
        try:
            fees = PriorityFees(pool, cache_s=3600)
            sets = [[Pubkey.new_unique()] for _ in range(CACHE_KEYS + 50)]
            for writable in sets:
                await fees.estimate(writable)
            assert len(fees._cache) == CACHE_KEYS
            requests = pool.endpoints[0].stats.requests
            await fees.estimate(sets[-1])       # recent: answered from the cache
            assert pool.endpoints[0].stats.requests == requests
            await fees.estimate(sets[0])        # the oldest was dropped: asked again
            assert pool.endpoints[0].stats.requests == requests + 1
        finally:
            await pool.close()
