"""The blockhash cache against the localnet: refreshed in the background only while wanted,
fetched on demand when too old to sign with."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gridnode.chain.blockhash import BlockhashCache
from gridnode.chain.rpc import RpcPool
from simulators.chain.localnet import Localnet
from tests.net import pick_free_port


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Localnet]:
    async with Localnet(port=pick_free_port(), slot_ms=25, state_dir=tmp_path / "chain") as chain:
        yield chain


async def test_refreshes_only_while_wanted_and_on_demand(net: Localnet) -> None:
    pool = RpcPool([net.rpc_url])
    wanted = [False]
    cache = BlockhashCache(pool, refresh_s=0.05, max_age_s=0.3, wanted=lambda: wanted[0])
    task = asyncio.create_task(cache.run())
    try:
        await asyncio.sleep(0.5)
        assert cache.age_s() is None and cache.refreshes == 0    # nothing to sign: no request
        wanted[0] = True
        await asyncio.sleep(0.5)
        age = cache.age_s()
        assert age is not None and age < 0.25 and cache.refreshes >= 3
        wanted[0] = False
        before = cache.refreshes
        await asyncio.sleep(0.5)
        age = cache.age_s()
        assert cache.refreshes == before and age is not None and age >= 0.45
        await cache.get()                       # a signer asks: too old, fetched now
        age = cache.age_s()
        assert age is not None and age < 0.1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await pool.close()
