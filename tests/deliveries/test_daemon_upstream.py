"""The real daemon (`gridnode run`) with the localnet and the platform simulator: readings are
finalized on chain and delivered upstream while the daemon is SIGKILLed 20 times (some kills
land between the platform storing a request and the node recording its answer) and the
platform is down while two hours of 1-minute intervals pile up (accelerated: they are fed in
a few rounds). At the end the platform holds every finalized interval and every settlement
exactly once, each interval with its on-chain signature and event, in the node's order per
meter, every request correctly signed."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from pathlib import Path

from gridnode.deliveries import signing
from gridnode.store import Store, events, now_ms
from simulators.chain.localnet import Localnet
from simulators.platform import PlatformSimulator
from tests.configs import localnet_node, write_config
from tests.e2e.harness import REPO, add_readings, all_finalized, recent_intervals, wait_for
from tests.net import pick_free_port

METERS = ["up-a", "up-b"]
KILLS = 20
OUTAGE = range(6, 11)       # rounds during which the platform is down
# intervals fed per round: one at a time, then two hours' worth while the platform is down
FEED = [1] * 6 + [24] * 5 + [1] * 9
INTERVALS = sum(FEED)


async def settle(store: Store, n: int) -> None:
    """A settlement.completed event as the settlement subsystem logs it (the market itself is
    not part of this test): its row's fields."""
    async with store.write() as tx:
        await events.append(tx, events.EventType.SETTLEMENT_COMPLETED, {
            "id": n + 1, "trade_record": f"trade-{n:03d}", "status": "settled",
            "energy_wh": 100 + n, "token_amount": (100 + n) * 10**6}, at_ms=now_ms())


async def start(config: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gridnode", "run", "-c", str(config), cwd=str(REPO), env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)


async def test_every_finalized_interval_reaches_the_platform_once_through_kills(
        tmp_path: Path) -> None:
    rng = random.Random(15)
    secret = signing.generate_secret()
    secret_file = tmp_path / "upstream.secret"
    secret_file.write_text(secret + "\n")
    secret_file.chmod(0o600)
    port = pick_free_port()
    platform_db = tmp_path / "platform.db"

    def platform_at() -> PlatformSimulator:
        return PlatformSimulator(platform_db, [secret], port=port)

    bad_signatures = 0
    resent = 0          # requests answered from the stored answer, items held already
    async with Localnet(port=pick_free_port(), slot_ms=25, state_dir=tmp_path / "chain") as net:
        config = tmp_path / "gridnode.toml"
        write_config(config, localnet_node(net, tmp_path / "node", idl_dir=REPO / "idl"),
                     node={"id": "up-node"},
                     outbox={"rebroadcast_interval_s": 0.4, "submit_interval_s": 0.1},
                     upstream={"url": f"http://127.0.0.1:{port}/v1/deliveries",
                               "secret_file": str(secret_file), "batch_size": 5,
                               "retry_base_s": 0.2, "retry_max_s": 1.0, "poll_s": 0.1,
                               "timeout_s": 2},
                     api={"enabled": False}, logging={"level": "warning"})
        store = await Store.open(tmp_path / "node" / "gridnode.db")
        intervals = recent_intervals(INTERVALS)
        platform: PlatformSimulator | None = platform_at()
        await platform.start()
        fed = 0
        kills_after_a_request = 0
        try:
            for kill in range(KILLS):
                if kill in OUTAGE and platform is not None:
                    bad_signatures += platform.stats["bad_signature"]
                    resent += platform.stats["replayed"] + platform.stats["duplicates"]
                    await platform.stop()
                    platform = None
                elif kill not in OUTAGE and platform is None:
                    platform = platform_at()
                    await platform.start()
                batch = intervals[fed:fed + FEED[kill]]
                await add_readings(store, METERS, batch, first_index=fed)
                fed += len(batch)
                await settle(store, kill)
                proc = await start(config)
                if platform is not None and kill % 2:
                    # right after the platform took a request: its answer may never be recorded
                    seen = platform.stats["requests"]
                    p = platform

                    async def took(p: PlatformSimulator = p, seen: int = seen) -> bool:
                        return p.stats["requests"] > seen

                    try:
                        await wait_for(took, 15, "a request to the platform", step_s=0.005)
                        kills_after_a_request += 1
                    except AssertionError:
                        pass        # nothing left to send this round
                    await asyncio.sleep(rng.uniform(0, 0.02))
                else:
                    await asyncio.sleep(rng.uniform(0.5, 2.5))
                proc.send_signal(signal.SIGKILL)
                assert await proc.wait() == -signal.SIGKILL
            if platform is None:
                platform = platform_at()
                await platform.start()
            if fed < len(intervals):
                await add_readings(store, METERS, intervals[fed:], first_index=fed)
            proc = await start(config)
            try:
                await wait_for(lambda: all_finalized(store), 120, "every operation finalized",
                               step_s=0.25)
                p = platform

                async def all_held(p: PlatformSimulator = p) -> bool:
                    return len(p.items(type="interval.finalized")) >= len(METERS) * INTERVALS

                await wait_for(all_held, 60, "every interval upstream", step_s=0.25)
            finally:
                proc.send_signal(signal.SIGTERM)
                await proc.wait()
            held = platform.items(type="interval.finalized")
            bad_signatures += platform.stats["bad_signature"]
            resent += platform.stats["replayed"] + platform.stats["duplicates"]
            print(f"kills after a request: {kills_after_a_request}, resent: {resent}")
            # exactly once
            pairs = [(h["meter_id"], h["item"]["data"]["interval_end"]) for h in held]
            assert len(pairs) == len(set(pairs)) == len(METERS) * INTERVALS
            assert set(pairs) == {(m, end) for m in METERS for end in intervals}
            # with the finalized signature and the decoded event of each
            rows = await store.fetchall(
                "SELECT o.id, json_extract(o.payload, '$.meter_id') AS meter, "
                "json_extract(o.payload, '$.interval_end') AS ends, a.signature FROM operations o "
                "JOIN tx_attempt_operations t ON t.operation_id = o.id "
                "JOIN tx_attempts a ON a.id = t.attempt_id "
                "WHERE a.observed_status = 'finalized'")
            landed = {(r["meter"], r["ends"]): r["signature"] for r in rows}
            for h in held:
                data = h["item"]["data"]
                assert data["signature"] == landed[(h["meter_id"], data["interval_end"])]
                names = [e["name"] for e in data["chain_events"]]
                assert "MeterReadingSubmitted" in names, names
            # in the node's order per meter (the order its finalized events were logged)
            order = await store.fetchall(
                "SELECT meter_id, json_extract(o.payload, '$.interval_end') AS ends FROM events e "
                "JOIN operations o ON o.id = e.operation_id WHERE e.type = 'operation.status' "
                "AND json_extract(e.data, '$.new') = 'finalized' "
                "AND o.tx_type = 'meter_reading' ORDER BY e.id")
            for meter in METERS:
                node_order = [r["ends"] for r in order if r["meter_id"] == meter]
                platform_order = [e for m, e in pairs if m == meter]
                assert platform_order == node_order, (meter, platform_order, node_order)
            assert bad_signatures == 0
            settled = [h["key"] for h in platform.items(type="settlement.completed")]
            assert sorted(settled) == [f"up-node:settlement:trade-{n:03d}:completed"
                                       for n in range(KILLS)]
            assert kills_after_a_request >= 3
            counts = await store.fetchall("SELECT status, count(*) AS n FROM delivery_items "
                                          "GROUP BY status")
            assert {r["status"]: r["n"] for r in counts} == {"delivered": len(pairs) + KILLS}
        finally:
            if platform is not None:
                await platform.stop()
            await store.close()
