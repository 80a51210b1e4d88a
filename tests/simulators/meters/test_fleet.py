"""A fleet built from a configuration, read by the meters subsystem built from the same file."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path

from gridnode.config import load_config
from gridnode.meters.service import MetersSubsystem
from gridnode.store import Store
from gridnode.testing import AcceleratedClock
from simulators.meters.fleet import MeterFleet
from tests.configs import modbus_meter, mqtt_meter, write_config
from tests.net import pick_free_port


async def test_fleet_serves_what_the_config_names(tmp_path, mqtt_broker) -> None:
    tcp_port = pick_free_port()
    topic = f"fleet-{uuid.uuid4().hex[:8]}/gridtokenx/ami/telemetry/gx"
    client_id = f"gridnode-{uuid.uuid4().hex[:8]}"

    def config(rtu_port: str) -> Path:
        return write_config(
            tmp_path / "gridnode.toml", node={"data_dir": str(tmp_path)},
            meters={"buses": [
                {"kind": "rtu", "port": rtu_port, "baudrate": 19200, "poll_interval_s": 30,
                 "meters": [modbus_meter("rtu-1", 7, "sdm120")]},
                {"kind": "rtu_over_tcp", "host": "127.0.0.1", "port": tcp_port,
                 "poll_interval_s": 30, "meters": [modbus_meter("gw-1", 3, "sunspec201")]}],
                "mqtt": {"client_id": client_id,
                         "meters": [mqtt_meter("gx", topic, "gridtokenx")]}},
            intervals={"minutes": 5})

    cfg_file = config("/dev/serial/by-id/usb-FTDI_placeholder-if00-port0")
    clock = AcceleratedClock(1_780_000_200 // 300 * 300 - 20, factor=300)
    cfg = load_config(cfg_file)
    async with MeterFleet.from_config(cfg, clock, publish_every_s=30) as fleet:
        # gridnode opens the pty in place of the by-id path it would use on a real device
        config(fleet.rtu_ports[0])
        cfg = load_config(cfg_file)
        store = await Store.open(cfg.node.database)
        try:
            sub = MetersSubsystem.from_config(cfg, store, clock=clock)
            task = asyncio.create_task(sub.run())
            await asyncio.sleep(2 * 300 / clock.factor + 1.5)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            rows = await store.fetchall("SELECT meter_id, count(*) AS n FROM intervals "
                                        "GROUP BY meter_id")
        finally:
            await store.close()
    assert {r["meter_id"]: r["n"] >= 1 for r in rows} == {"rtu-1": True, "gw-1": True, "gx": True}
