"""Readings validated and stored per second, and RSS: 50 simulated meters on one Modbus TCP bus,
then 200 meters over MQTT through the broker at 127.0.0.1:1883."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gridnode.meters.bus import BusMeter, BusPoller, BusTiming  # noqa: E402
from gridnode.meters.health import MeterHealth  # noqa: E402
from gridnode.meters.modbus_link import LinkSettings, ModbusLink  # noqa: E402
from gridnode.meters.mqtt import MqttIngest, MqttMeter, MqttSettings  # noqa: E402
from gridnode.meters.payloads import FORMATS  # noqa: E402
from gridnode.meters.profiles import load_profiles  # noqa: E402
from gridnode.meters.recorder import MeterEntry, Recorder  # noqa: E402
from gridnode.meters.validation import Limits  # noqa: E402
from gridnode.store import Store  # noqa: E402
from gridnode.testing import AcceleratedClock, drain  # noqa: E402
from simulators.meters.modbus_server import ModbusTcpMeterServer  # noqa: E402
from simulators.meters.model import SimMeter  # noqa: E402
from simulators.meters.mqtt_publisher import (  # noqa: E402
    MqttMeterPublisher,
    PublishedMeter,
    payloads,
)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def entries(n: int, source: str) -> list[MeterEntry]:
    return [MeterEntry(f"{source}-{i}", source, "x", Limits(rated_power_w=50_000),
                       MeterHealth(f"{source}-{i}", source, 60)) for i in range(n)]


async def bench_modbus(store: Store, seconds: float) -> None:
    clock = AcceleratedClock(factor=240)   # 8 s of bench = 32 min of meter time: intervals close
    sdm = load_profiles()["sdm630"]
    es = entries(50, "modbus")
    sims = [SimMeter(e.meter_id, unit=i + 1, clock=clock) for i, e in enumerate(es)]
    rec = Recorder(store, es, clock=clock)
    await rec.start()
    port = free_port()
    async with ModbusTcpMeterServer([(s, sdm) for s in sims], port=port):
        link = ModbusLink(LinkSettings("tcp", host="127.0.0.1", tcp_port=port, timeout_s=1))
        bus = BusPoller("bench", link, [BusMeter(e.meter_id, s.unit, sdm, e.health)
                                        for e, s in zip(es, sims, strict=True)],
                        rec, BusTiming(poll_interval_s=0), clock)
        tasks = [asyncio.create_task(rec.run()), asyncio.create_task(bus.run())]
        t0 = time.perf_counter()
        await asyncio.sleep(seconds)
        for t in tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        dt = time.perf_counter() - t0
    print(f"modbus tcp, 50 meters on one bus: {rec.stored_readings / dt:,.0f} readings "
          f"validated+stored/s ({rec.stored_readings} in {dt:.1f} s, {bus.cycles} cycles, "
          f"{rec.closed_intervals} intervals), RSS {rss_mb():.0f} MB")


async def bench_mqtt(store: Store, rounds: int) -> None:
    clock = AcceleratedClock(factor=60)
    prefix = f"bench-{uuid.uuid4().hex[:6]}"
    es = entries(200, "mqtt")
    rec = Recorder(store, es, clock=clock)
    await rec.start()
    meters = [MqttMeter(e.meter_id, FORMATS["tasmota"], f"{prefix}/{e.meter_id}") for e in es]
    ingest = MqttIngest(MqttSettings(client_id=f"gridnode-{prefix}"), meters, rec)
    tasks = [asyncio.create_task(rec.run()), asyncio.create_task(ingest.run())]
    await asyncio.wait_for(ingest.connected.wait(), 10)
    pms = [PublishedMeter(SimMeter(e.meter_id, clock=clock), "tasmota", f"{prefix}/{e.meter_id}")
           for e in es]
    batches = []
    for _ in range(rounds):        # payloads made up front: the figure is gridnode's, not paho's
        batches.append([msg for pm in pms for msg in payloads(pm)])
        await clock.sleep(10)
    pub = MqttMeterPublisher("127.0.0.1", 1883, [])
    pub.connect()
    t0 = time.perf_counter()

    def send() -> None:
        for batch in batches:      # one round at a time: the broker's queue stays bounded
            infos = [pub.client.publish(t, p, qos=1) for t, p in batch]
            infos[-1].wait_for_publish(30)

    await asyncio.to_thread(send)
    target = 200 * rounds
    while rec.stored_readings < target * 0.95 and time.perf_counter() - t0 < 60:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    await drain(rec)
    dt = time.perf_counter() - t0
    pub.disconnect()
    for t in tasks:
        t.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await t
    print(f"mqtt, 200 meters (tasmota): {rec.stored_readings / dt:,.0f} readings "
          f"validated+stored/s ({rec.stored_readings} of {target} in {dt:.1f} s, "
          f"{ingest.messages} messages), RSS {rss_mb():.0f} MB")


async def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        store = await Store.open(Path(d) / "bench.db")
        try:
            await bench_modbus(store, 8.0)
            await bench_mqtt(store, 30)
        finally:
            await store.close()


if __name__ == "__main__":
    asyncio.run(main())
