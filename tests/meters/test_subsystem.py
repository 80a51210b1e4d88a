"""The meters subsystem built from a configuration file, run against the simulators, and its
health shown by `gridnode status`."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import uuid
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gridnode.config import ConfigError, load_config
from gridnode.meters.profiles import load_profiles
from gridnode.meters.service import MetersSubsystem
from gridnode.store import Store
from gridnode.testing import AcceleratedClock
from simulators.meters.modbus_server import ModbusTcpMeterServer
from simulators.meters.model import SimMeter
from simulators.meters.mqtt_publisher import MqttMeterPublisher, PublishedMeter
from tests.configs import modbus_meter, mqtt, mqtt_meter, tcp_bus, write_config

START = 1_780_000_200.0 // 300 * 300 - 20


def write_node_config(path: Path, port: int, topic: str, pv_profile: str = "custom-pv") -> Path:
    return write_config(
        path, node={"id": "test-node", "data_dir": str(path.parent), "timezone": "Europe/Berlin"},
        meters={
            "buses": [tcp_bus(port, modbus_meter("house", 1, "sdm630"),
                              modbus_meter("pv", 2, pv_profile, invert=True),
                              poll_interval_s=10, timeout_s=0.5)],
            "profiles": [{"name": "custom-pv", "function_code": 4, "registers": [
                {"role": "import_wh", "address": 0x0048, "scale": 1000.0},
                {"role": "export_wh", "address": 0x004A, "scale": 1000.0}]}],
            "mqtt": mqtt(mqtt_meter("flat", topic))},
        intervals={"minutes": 5})


async def test_subsystem_from_config_and_status(tmp_path, free_port, mqtt_broker) -> None:
    topic = f"s-{uuid.uuid4().hex[:8]}/tele/flat/SENSOR"
    cfg_file = write_node_config(tmp_path / "gridnode.toml", free_port, topic)
    cfg = load_config(cfg_file)
    clock = AcceleratedClock(START, factor=300)
    store = await Store.open(cfg.node.database)
    sdm = load_profiles()["sdm630"]
    house, pv = SimMeter("house", unit=1, clock=clock), SimMeter("pv", unit=2, clock=clock)
    flat = SimMeter("flat", clock=clock)
    sub = MetersSubsystem.from_config(cfg, store, clock=clock, file=str(cfg_file))
    assert sub.name == "meters" and len(sub.buses) == 1 and sub.mqtt is not None
    pub = MqttMeterPublisher("127.0.0.1", 1883, [
        PublishedMeter(flat, "tasmota", topic, tz=ZoneInfo("Europe/Berlin"))])
    try:
        async with ModbusTcpMeterServer([(house, sdm), (pv, sdm)], port=free_port):
            task = asyncio.create_task(sub.run())
            await asyncio.wait_for(sub.mqtt.connected.wait(), 10)
            for _ in range(40):          # 40 x 30 s of meter time
                await asyncio.to_thread(pub.publish_all)
                await clock.sleep(30)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert sub.progress() > 0
        snap = {s["meter_id"]: s for s in sub.snapshot()}
        assert set(snap) == {"house", "pv", "flat"} and all(s["accepted"] for s in snap.values())
        rows = await store.fetchall(
            "SELECT meter_id, count(*) AS n FROM intervals GROUP BY meter_id")
        by = {r["meter_id"]: r for r in rows}
        assert set(by) == {"house", "pv", "flat"} and all(r["n"] >= 2 for r in rows)
        # the PV meter is inverted: the simulator's export counts as its import and vice versa
        # (same day profile as the house meter; compared interval by interval)
        pairs = await store.fetchall(
            "SELECT h.import_wh AS h_imp, h.export_wh AS h_exp, p.import_wh AS p_imp, "
            "p.export_wh AS p_exp FROM intervals h JOIN intervals p "
            "ON p.interval_start = h.interval_start AND p.meter_id = 'pv' "
            "WHERE h.meter_id = 'house'")
        assert pairs
        for r in pairs:
            assert r["p_imp"] == pytest.approx(r["h_exp"], abs=3)
            assert r["p_exp"] == pytest.approx(r["h_imp"], abs=3)
        n_ops = await store.fetchone("SELECT count(*) AS n FROM operations")
        assert n_ops["n"] == sum(r["n"] for r in rows)
    finally:
        pub.disconnect()
        await store.close()
    out = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "gridnode", "status", "--db",
                         str(cfg.node.database)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "house (modbus, online)" in out.stdout and "flat (mqtt, online)" in out.stdout
    assert "accepted=" in out.stdout


def test_unknown_profile_names_the_key(tmp_path) -> None:
    cfg_file = write_node_config(tmp_path / "gridnode.toml", 1502, "x", pv_profile="nope")
    cfg = load_config(cfg_file)
    with pytest.raises(ConfigError) as e:
        MetersSubsystem.from_config(cfg, None, file=str(cfg_file))   # type: ignore[arg-type]
    assert "meters.buses[0].meters[1].profile" in str(e.value) and "sdm630" in str(e.value)
