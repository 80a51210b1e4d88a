"""gridnode killed with SIGKILL at random points of submission, restarted, and nothing lost or
doubled: the on-chain reading count equals the number of readings exactly."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from pathlib import Path

from gridnode.store import Store
from simulators.chain.localnet import Localnet
from tests.configs import localnet_node, write_config
from tests.e2e.harness import (
    REPO,
    add_readings,
    all_finalized,
    assert_events_match,
    oracle_total_readings,
    reading_events,
    recent_intervals,
    status_counts,
    wait_for,
)
from tests.net import pick_free_port

METERS = ["kill-a", "kill-b"]
INTERVALS = 22
KILLS = 20


def node_config(path: Path, net: Localnet, data_dir: Path) -> None:
    write_config(path, localnet_node(net, data_dir, idl_dir=REPO / "idl"),
                 node={"id": "crash-test"},
                 outbox={"rebroadcast_interval_s": 0.4, "submit_interval_s": 0.1},
                 api={"enabled": False}, logging={"level": "warning"})


async def count(store: Store, sql: str) -> int:
    row = await store.fetchone(sql)
    return int(row["n"]) if row else 0


async def more(store: Store, sql: str, than: int) -> bool:
    return await count(store, sql) > than


async def start(config: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gridnode", "run", "-c", str(config), cwd=str(REPO), env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)


async def test_sigkill_during_submission(tmp_path: Path) -> None:
    rng = random.Random(20)
    async with Localnet(port=pick_free_port(), slot_ms=25, state_dir=tmp_path / "chain") as net:
        config = tmp_path / "gridnode.toml"
        node_config(config, net, tmp_path / "node")
        store = await Store.open(tmp_path / "node" / "gridnode.db")
        intervals = recent_intervals(INTERVALS)
        fed = 0
        kills_in_flight = 0
        try:
            for kill in range(KILLS):
                if fed < len(intervals):
                    await add_readings(store, METERS, [intervals[fed]], first_index=fed)
                    fed += 1
                attempts = await count(store, "SELECT count(*) AS n FROM tx_attempts")
                sent = await count(store, "SELECT count(*) AS n FROM audit_log "
                                   "WHERE new_status = 'submitted'")
                proc = await start(config)
                mode = kill % 3
                if mode == 0:    # anywhere: start-up, building, polling
                    await asyncio.sleep(rng.uniform(0.3, 3.0))
                elif mode == 1:  # just after a signed transaction was persisted (maybe unsent)
                    await wait_for(lambda n=attempts: more(store, "SELECT count(*) AS n FROM "
                                                           "tx_attempts", n), 20, "a signature",
                                   step_s=0.005)
                    await asyncio.sleep(rng.uniform(0, 0.03))
                else:            # just after a send was recorded (landing or not yet)
                    await wait_for(lambda n=sent: more(store, "SELECT count(*) AS n FROM audit_log "
                                                       "WHERE new_status = 'submitted'", n), 20,
                                   "a send", step_s=0.005)
                    await asyncio.sleep(rng.uniform(0, 0.03))
                counts = await status_counts(store)
                kills_in_flight += any(counts.get(s) for s in ("signed", "submitted", "unknown",
                                                              "confirmed"))
                proc.send_signal(signal.SIGKILL)
                assert await proc.wait() == -signal.SIGKILL
            if fed < len(intervals):
                await add_readings(store, METERS, intervals[fed:], first_index=fed)
            proc = await start(config)
            try:
                await wait_for(lambda: all_finalized(store), 120, "every operation finalized",
                               step_s=0.25)
            finally:
                proc.send_signal(signal.SIGTERM)
                await proc.wait()
            assert await oracle_total_readings(net.rpc_url) == len(METERS) * len(intervals)
            assert_events_match(await reading_events(store), METERS, intervals)
            assert kills_in_flight >= KILLS // 2   # the kills really hit transactions in flight
        finally:
            await store.close()
