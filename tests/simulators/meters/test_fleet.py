"""A fleet built from a configuration, read by the meters subsystem built from the same file."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from gridnode.config import load_config
from gridnode.meters.clock import AcceleratedClock
from gridnode.meters.service import MetersSubsystem
from gridnode.store import Store
from simulators.meters.fleet import MeterFleet
from tests.conftest import pick_free_port


async def test_fleet_serves_what_the_config_names(tmp_path, mqtt_broker) -> None:
    tcp_port = pick_free_port()
    topic = f"fleet-{uuid.uuid4().hex[:8]}/gridtokenx/ami/telemetry/gx"
    cfg_file = tmp_path / "gridnode.toml"
    text = f"""
[node]
data_dir = "{tmp_path}"
[[meters.buses]]
kind = "rtu"
port = "/dev/serial/by-id/usb-FTDI_placeholder-if00-port0"
baudrate = 19200
poll_interval_s = 30
[[meters.buses.meters]]
meter_id = "rtu-1"
unit_id = 7
profile = "sdm120"
rated_power_w = 20000
[[meters.buses]]
kind = "rtu_over_tcp"
host = "127.0.0.1"
port = {tcp_port}
poll_interval_s = 30
[[meters.buses.meters]]
meter_id = "gw-1"
unit_id = 3
profile = "sunspec201"
rated_power_w = 20000
[meters.mqtt]
client_id = "gridnode-{uuid.uuid4().hex[:8]}"
[[meters.mqtt.meters]]
meter_id = "gx"
format = "gridtokenx"
topic = "{topic}"
rated_power_w = 20000
[intervals]
minutes = 5
"""
    cfg_file.write_text(text)
    clock = AcceleratedClock(1_780_000_200 // 300 * 300 - 20, factor=300)
    cfg = load_config(cfg_file)
    async with MeterFleet.from_config(cfg, clock, publish_every_s=30) as fleet:
        # gridnode opens the pty in place of the by-id path it would use on a real device
        cfg_file.write_text(text.replace(
            "/dev/serial/by-id/usb-FTDI_placeholder-if00-port0", fleet.rtu_ports[0]))
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
