"""Run meter simulators from the command line.

    python -m simulators.meters tcp --port 5020 --profile sdm630 --profile em24 [--speed 60]
    python -m simulators.meters rtu --profile sdm120          # prints the pty path to open
    python -m simulators.meters mqtt --format tasmota --meters 3 [--interval 10]

Faults can be switched while running by writing "<unit or meter index> <fault>" lines on stdin
(faults: no_answer, slow, garbage, nan, reset, backward, disconnect, none).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import stat
import sys

from gridnode.meters.profiles import load_profiles
from gridnode.testing import AcceleratedClock
from simulators.meters.modbus_server import ModbusRtuMeterServer, ModbusTcpMeterServer
from simulators.meters.model import SimMeter
from simulators.meters.mqtt_publisher import MqttMeterPublisher, PublishedMeter


async def _faults(meters: list[SimMeter]) -> None:
    mode = os.fstat(0).st_mode
    if not (stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) and os.isatty(0)):
        return   # stdin is a file or /dev/null: no fault commands
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        try:
            idx, fault = line.decode().split()
            meters[int(idx) - 1].set_fault(fault)
            print(f"meter {idx}: {fault}", flush=True)
        except (ValueError, IndexError) as e:
            print(f"? {e}", flush=True)


async def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m simulators.meters")
    ap.add_argument("mode", choices=["tcp", "rtu", "mqtt"])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=None)
    ap.add_argument("--profile", action="append", default=None)
    ap.add_argument("--format", default="tasmota", choices=["tasmota", "shelly", "gridtokenx"])
    ap.add_argument("--meters", type=int, default=1)
    ap.add_argument("--interval", type=float, default=10.0, help="MQTT publish period, s")
    ap.add_argument("--speed", type=float, default=1.0, help="clock acceleration factor")
    ap.add_argument("--run-for", type=float, default=None, help="stop after this many seconds")
    a = ap.parse_args(argv)
    if a.port is None:
        a.port = 5020 if a.mode == "tcp" else 1883
    clock = AcceleratedClock(factor=a.speed)
    profiles = load_profiles()
    if a.mode in ("tcp", "rtu"):
        names = a.profile or ["sdm630"]
        meters = [SimMeter(f"sim-{i + 1}", unit=i + 1, clock=clock) for i in range(len(names))]
        pairs = [(m, profiles[n]) for m, n in zip(meters, names, strict=True)]
        if a.mode == "tcp":
            server = ModbusTcpMeterServer(pairs, host=a.host, port=a.port)
            where = f"modbus tcp {a.host}:{a.port}"
        else:
            server = ModbusRtuMeterServer(pairs)
            where = f"modbus rtu on {server.client_path}"
        await server.start()
        print(f"{where}: " + ", ".join(f"unit {m.unit} {n}" for m, n in zip(meters, names,
                                                                          strict=True)),
              flush=True)
        tasks = [asyncio.create_task(_faults(meters))]
        try:
            await asyncio.sleep(a.run_for if a.run_for else 1e9)
        finally:
            for t in tasks:
                t.cancel()
            await server.stop()
        return
    meters = [SimMeter(f"sim-{i + 1}", clock=clock) for i in range(a.meters)]
    topic = {"tasmota": "tele/sim-{n}/SENSOR", "shelly": "shellies/sim-{n}",
             "gridtokenx": "gridtokenx/ami/telemetry/sim-{n}"}[a.format]
    pub = MqttMeterPublisher(a.host, a.port, [
        PublishedMeter(m, a.format, topic.format(n=i + 1)) for i, m in enumerate(meters)])
    print(f"mqtt {a.format}: {len(meters)} meters to {a.host}:{a.port}", flush=True)
    fault_task = asyncio.create_task(_faults(meters))
    loop = asyncio.get_running_loop()
    end = loop.time() + a.run_for if a.run_for else None
    try:
        while end is None or loop.time() < end:
            await asyncio.to_thread(pub.publish_all)
            await clock.sleep(a.interval)
    finally:
        fault_task.cancel()
        pub.disconnect()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
