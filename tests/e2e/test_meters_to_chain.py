"""Readings from simulated meters end as finalized MeterReadingSubmitted events, one per meter per
interval, with the values of the interval rows.

The whole path runs with real components: Modbus TCP and MQTT meter simulators (through the real
Mosquitto broker) on an accelerated clock shared with gridnode's meters subsystem, built from a
configuration file; the subsystem's interval builder writes the outbox; the pipeline on the same
store submits over JSON-RPC to the in-process localnet and follows every transaction to finality.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
import uuid
from pathlib import Path

from gridnode.config import load_config
from gridnode.meters.service import MetersSubsystem
from gridnode.outbox.pipeline import Pipeline
from gridnode.store import Store
from gridnode.testing import AcceleratedClock
from simulators.chain.localnet import Localnet
from simulators.meters.fleet import MeterFleet
from tests.configs import modbus_meter, mqtt, mqtt_meter, tcp_bus, write_config
from tests.e2e.harness import (
    all_finalized,
    bootstrap_signers,
    chain_config,
    oracle_total_readings,
    outbox_config,
    reading_events,
    register,
    running,
    wait_for,
)
from tests.net import pick_free_port

FACTOR = 15          # meter seconds per wall second: a 1-minute interval closes every 4 s
INTERVALS = 4        # closed intervals per meter before the meters stop
MODBUS = ["house", "shop"]
MQTT = ["flat"]


def write_node_config(path: Path, data_dir: Path, port: int, topic: str) -> Path:
    return write_config(
        path, node={"id": "e2e-node", "data_dir": str(data_dir), "timezone": "UTC"},
        meters={"buses": [tcp_bus(port, modbus_meter("house", 1, "sdm630"),
                                  modbus_meter("shop", 2, "em24"),
                                  poll_interval_s=10, timeout_s=0.5)],
                "mqtt": mqtt(mqtt_meter("flat", topic))},
        intervals={"minutes": 1})


async def closed_per_meter(store: Store) -> dict[str, int]:
    rows = await store.fetchall("SELECT meter_id, count(*) AS n FROM intervals GROUP BY meter_id")
    return {r["meter_id"]: int(r["n"]) for r in rows}


async def test_simulated_meters_to_finalized_oracle_readings(tmp_path: Path, mqtt_broker) -> None:
    topic = f"e2e-{uuid.uuid4().hex[:8]}/tele/flat/SENSOR"
    cfg_file = tmp_path / "gridnode.toml"
    write_node_config(cfg_file, tmp_path, pick_free_port(), topic)
    cfg = load_config(cfg_file)
    # Late morning UTC of today: the PV meters export while the consumer-only meter imports, so
    # both columns carry energy. Within the pipeline's reading age limit whatever the hour.
    now = time.time()
    clock = AcceleratedClock(now // 86400 * 86400 + 11 * 3600, factor=FACTOR)
    meters = MODBUS + MQTT
    async with Localnet(port=pick_free_port(), slot_ms=25, state_dir=tmp_path / "chain") as net:
        signers = bootstrap_signers(net.bootstrap)
        owner = next(iter(signers.users.values()))
        store = await Store.open(cfg.node.database)
        pipeline = Pipeline(store, chain_config([net.rpc_url], [net.ws_url]), outbox_config(),
                            signers)
        fleet = MeterFleet.from_config(cfg, clock=clock, publish_every_s=10)
        # A consumer without PV, large enough for the EM24's 100 Wh counter steps: import only.
        fleet.meters["shop"].day.pv_peak_w = 0.0
        fleet.meters["shop"].day.base_load_w = 9000.0
        sub = MetersSubsystem.from_config(cfg, store, clock=clock, file=str(cfg_file))
        try:
            async with running(pipeline):
                await register(store, owner, meters)
                await wait_for(lambda: all_finalized(store), 30, "the registrations finalized")
                async with fleet:
                    task = asyncio.create_task(sub.run())
                    try:
                        async def enough() -> bool:
                            counts = await closed_per_meter(store)
                            return all(counts.get(m, 0) >= INTERVALS for m in meters)

                        await wait_for(enough, INTERVALS * 60 / FACTOR + 20,
                                       f"{INTERVALS} closed intervals per meter")
                    finally:
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await task
                await wait_for(lambda: all_finalized(store), 30, "every reading finalized")

            rows = await store.fetchall("SELECT * FROM intervals ORDER BY meter_id, interval_start")
            assert {r["meter_id"] for r in rows} == set(meters)
            ops = await store.fetchall(
                "SELECT id, idempotency_key, payload, status FROM operations "
                "WHERE tx_type = 'meter_reading'")
            assert len(ops) == len(rows)
            op_by_key = {o["idempotency_key"]: o for o in ops}
            events = await reading_events(store)
            by_pair: dict[tuple[str, int], list[dict]] = {}
            for e in events:
                by_pair.setdefault((e["meter_id"], int(e["timestamp"])), []).append(e)
            assert len(events) == len(rows)
            for r in rows:
                pair = (r["meter_id"], r["interval_end"])
                op = op_by_key[f"meter_reading:{r['meter_id']}:{r['interval_end']}"]
                assert op["status"] == "finalized"
                payload = json.loads(op["payload"])
                assert (payload["energy_produced_wh"], payload["energy_consumed_wh"]) == (
                    r["export_wh"], r["import_wh"])
                assert len(by_pair.get(pair, [])) == 1, (pair, by_pair.get(pair))
                e = by_pair[pair][0]
                assert e["operation_id"] == op["id"]
                assert (int(e["energy_produced"]), int(e["energy_consumed"])) == (
                    r["export_wh"], r["import_wh"]), pair
            assert await oracle_total_readings(net.rpc_url) == len(rows)

            for m in meters:
                ivs = [r for r in rows if r["meter_id"] == m]
                starts = [iv["interval_start"] for iv in ivs]
                assert starts == list(range(starts[0], starts[-1] + 1, 60)), m
                for col, cs, ce in (("import_wh", "counter_import_start", "counter_import_end"),
                                    ("export_wh", "counter_export_start", "counter_export_end")):
                    assert sum(iv[col] for iv in ivs) == math.floor(ivs[-1][ce] - ivs[0][cs]), (
                        m, col)
            # The values are not trivially zero: PV meters exported, the consumer imported.
            assert sum(r["export_wh"] for r in rows if r["meter_id"] == "house") > 0
            assert sum(r["import_wh"] for r in rows if r["meter_id"] == "shop") > 0
        finally:
            await store.close()
