"""Simulators for every meter a gridnode configuration names, for demos and end-to-end tests.

`MeterFleet.from_config(cfg)` serves each Modbus TCP / RTU-over-TCP bus on its configured
host:port with the configured profiles, puts each RTU bus on a pty pair (its `rtu_ports` maps the
bus index to the pty gridnode must open in place of the configured port), and publishes every
Tasmota, Shelly and GridTokenX MQTT meter on its topic every `publish_every_s` of clock time.
Generic-format MQTT meters are left alone (their layout is whatever the installer configured).
"""

from __future__ import annotations

import asyncio
import contextlib
from zoneinfo import ZoneInfo

from gridnode.config import GridnodeConfig
from gridnode.config.meters import SerialBus
from gridnode.meters.clock import Clock, SystemClock
from gridnode.meters.profiles import Profile, load_profiles
from simulators.meters.modbus_server import ModbusRtuMeterServer, ModbusTcpMeterServer
from simulators.meters.model import SimMeter
from simulators.meters.mqtt_publisher import MqttMeterPublisher, PublishedMeter


class MeterFleet:
    def __init__(self, servers: list, rtu_ports: dict[int, str], publisher: MqttMeterPublisher | None,
                 meters: dict[str, SimMeter], clock: Clock, publish_every_s: float) -> None:
        self.servers = servers
        self.rtu_ports = rtu_ports
        self.publisher = publisher
        self.meters = meters
        self.clock = clock
        self.publish_every_s = publish_every_s
        self._task: asyncio.Task | None = None

    @classmethod
    def from_config(cls, cfg: GridnodeConfig, clock: Clock | None = None,
                    publish_every_s: float = 10.0, pv_peak_w: float | None = None) -> MeterFleet:
        clock = clock or SystemClock()
        profiles: dict[str, Profile] = load_profiles()
        profiles.update({p.name: p for p in cfg.meters.profiles})
        meters: dict[str, SimMeter] = {}
        servers: list = []
        rtu_ports: dict[int, str] = {}

        def sim(meter_id: str, unit: int = 1) -> SimMeter:
            m = SimMeter(meter_id, unit=unit, clock=clock)
            if pv_peak_w is not None:
                m.day.pv_peak_w = pv_peak_w
            meters[meter_id] = m
            return m

        for b, bus in enumerate(cfg.meters.buses):
            pairs = [(sim(m.meter_id, m.unit_id), profiles[m.profile]) for m in bus.meters]
            if isinstance(bus, SerialBus):
                server = ModbusRtuMeterServer(pairs, baudrate=bus.baudrate, parity=bus.parity)
                rtu_ports[b] = server.client_path
            else:
                server = ModbusTcpMeterServer(
                    pairs, host=bus.host, port=bus.port,
                    framer="rtu" if bus.kind == "rtu_over_tcp" else "socket")
            servers.append(server)
        publisher = None
        q = cfg.meters.mqtt
        if q is not None:
            pms = [PublishedMeter(sim(m.meter_id), m.format, m.topic,
                                  tz=ZoneInfo(m.timezone or cfg.node.timezone))
                   for m in q.meters if m.format != "generic"]
            if pms:
                publisher = MqttMeterPublisher(q.host, q.port, pms)
        return cls(servers, rtu_ports, publisher, meters, clock, publish_every_s)

    async def _publish(self) -> None:
        assert self.publisher is not None
        while True:
            try:
                await asyncio.to_thread(self.publisher.publish_all)
            except OSError:
                pass   # the broker is away: try again next period
            await self.clock.sleep(self.publish_every_s)

    async def start(self) -> None:
        for s in self.servers:
            await s.start()
        if self.publisher is not None:
            self._task = asyncio.create_task(self._publish())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.publisher is not None:
            self.publisher.disconnect()
        for s in self.servers:
            await s.stop()

    async def __aenter__(self) -> MeterFleet:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
