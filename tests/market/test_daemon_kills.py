"""`gridnode run` with [market] (the node holding the market authority, users by key file) killed
with SIGKILL at random points while an epoch's readings are minted, offered, cleared, matched and
settled, restarted each time: the balances are the hand-computed ones and every trade is matched
and settled exactly once."""

from __future__ import annotations

import asyncio
import random
import signal
import time
import uuid
from pathlib import Path

import pytest

from gridnode.chain import accounts
from gridnode.chain.idl import load_idls
from gridnode.chain.rpc import RpcPool
from gridnode.keys import load_keypair
from gridnode.market.users import grid_mint, token_account
from gridnode.store import Store, settlements
from simulators.chain.localnet import Localnet
from tests.configs import localnet_node, mqtt, mqtt_meter, write_config
from tests.e2e.harness import REPO, all_finalized, register, wait_for
from tests.e2e.test_crash_recovery import start
from tests.market.harness import WH, add_reading, wait_epoch_start
from tests.market.test_epoch_flow import POLICIES, READINGS
from tests.net import pick_free_port


@pytest.mark.timeout(540)     # up to a minute's wait for an epoch's start, then 360 s of kills
async def test_sigkills_through_an_epoch(tmp_path: Path) -> None:
    rng = random.Random(1414)
    async with Localnet(port=pick_free_port(), slot_ms=25, users=4,
                        state_dir=tmp_path / "chain") as net:
        keys = net.bootstrap["keypairs"]
        users = [load_keypair(p) for p in keys["users"]]
        tag = uuid.uuid4().hex[:6]
        config = write_config(
            tmp_path / "gridnode.toml",
            localnet_node(net, tmp_path / "node", idl_dir=REPO / "idl", registry_readings=True,
                          authority_keypair=keys["authority"]),
            node={"id": "market-kills"}, logging={"level": "warning"},
            meters={"mqtt": mqtt(*(mqtt_meter(f"m{i}", f"tele/{tag}-{i}/SENSOR")
                                   for i in range(4)))},
            market={"epoch_minutes": 1, "poll_interval_s": 0.5, "settlement_retry_s": 2,
                    "users": [{"name": f"u{i}", "keypair": keys["users"][i],
                               "meters": [f"m{i}"], **POLICIES[i]} for i in range(4)]})
        store = await Store.open(tmp_path / "node" / "gridnode.db")
        kills = 0
        try:
            for i, u in enumerate(users):
                await register(store, u, [f"m{i}"])
            proc = await start(config)
            await wait_for(lambda: all_finalized(store), 60, "users and meters registered")
            await asyncio.sleep(1.0)        # the market's first round has begun at the log's end
            # Early in an epoch, so that the four orders, however delayed by the kills, land in
            # the same one and meet in its clearing.
            await wait_epoch_start(60)
            end = int(time.time())
            for i, (p, c) in enumerate(READINGS):
                await add_reading(store, f"m{i}", end, p, c)
            deadline = time.monotonic() + 360

            async def settled() -> bool:
                rows = await settlements.all_rows(store)
                return len(rows) == 3 and all(s.status == "settled" for s in rows)
            while kills < 12 or not await settled():    # kills after it, too: nothing redone
                assert time.monotonic() < deadline, await settlements.all_rows(store)
                await asyncio.sleep(rng.uniform(0.5, 3.5))
                proc.send_signal(signal.SIGKILL)
                assert await proc.wait() == -signal.SIGKILL
                kills += 1
                proc = await start(config)
            proc.send_signal(signal.SIGTERM)
            await proc.wait()
            print(f"\n{kills} SIGKILLs")
            rows = await settlements.all_rows(store)
            assert sorted((s.energy_wh, s.price_per_kwh) for s in rows) == \
                [(300, 115_000), (500, 125_000), (600, 125_000)]
            counts = {r["tx_type"]: r["n"] for r in await store.fetchall(
                "SELECT tx_type, count(*) AS n FROM operations GROUP BY tx_type")}
            assert counts["match_orders"] == 3 and counts["settle_trade"] == 3
            n = await store.fetchone(
                "SELECT count(*) AS n FROM chain_events WHERE name = 'TradeSettled'")
            assert n["n"] == 3
        finally:
            await store.close()
        mint = grid_mint(load_idls(REPO / "idl"))
        pool = RpcPool([net.rpc_url], commitment="confirmed")
        try:
            got = await accounts.token_balances(
                pool, [token_account(u.pubkey(), mint) for u in users])
        finally:
            await pool.close()
        assert list(got.values()) == [0, 0, 500 * WH, 900 * WH]
