"""The meters subsystem of the daemon: one owner task per Modbus bus, the MQTT ingest, and the
recorder's writer, built from the [meters] and [intervals] configuration."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from gridnode.config import ConfigError, ConfigIssue, GridnodeConfig
from gridnode.config.meters import GenericFields, SerialBus
from gridnode.meters.clock import Clock, SystemClock
from gridnode.meters.health import MeterHealth
from gridnode.meters.payloads import FORMATS, PayloadFormat, generic_format
from gridnode.meters.profiles import Profile, ProfileError, load_profiles
from gridnode.meters.recorder import MeterEntry, Recorder
from gridnode.meters.validation import Limits
from gridnode.store import Store
from gridnode.types import parse_pubkey

if TYPE_CHECKING:
    from gridnode.meters.bus import BusMeter, BusPoller, BusTiming
    from gridnode.meters.modbus_link import LinkSettings
    from gridnode.meters.mqtt import MqttIngest, MqttMeter


def _generic(fields: GenericFields, topic: str) -> PayloadFormat:
    f: dict[str, tuple[str, str]] = {"import_wh": (fields.import_energy, fields.energy_unit)}
    if fields.export_energy:
        f["export_wh"] = (fields.export_energy, fields.energy_unit)
    if fields.power:
        f["power_w"] = (fields.power, fields.power_unit)
    if fields.voltage:
        f["voltage_v"] = (fields.voltage, "V")
    if fields.current:
        f["current_a"] = (fields.current, "A")
    return generic_format("{topic}", f, fields.time,
                          fields.time_format if fields.time else "receive", fields.delta)


def _profiles(cfg: GridnodeConfig, file: str) -> dict[str, Profile]:
    d = cfg.meters.profiles_dir
    try:
        profiles = load_profiles(d)
    except ProfileError as e:
        value = repr(str(d)) if d is not None else "<not set>"
        raise ConfigError([ConfigIssue(
            file, "meters.profiles_dir", value,
            f"a directory of meter profile files, or nothing to use the profiles installed with "
            f"gridnode ({e})")]) from e
    for p in cfg.meters.profiles:
        profiles[p.name] = p
    return profiles


class MetersSubsystem:
    name = "meters"

    def __init__(self, recorder: Recorder, buses: list[BusPoller], mqtt: MqttIngest | None) -> None:
        self.recorder = recorder
        self.buses = buses
        self.mqtt = mqtt
        self._started = time.monotonic()

    @classmethod
    def from_config(cls, cfg: GridnodeConfig, store: Store, clock: Clock | None = None,
                    file: str = "<config>") -> MetersSubsystem:
        """Build the subsystem; ConfigError names the key of anything it cannot use."""
        clock = clock or SystemClock()
        mc = cfg.meters
        profiles = _profiles(cfg, file)
        issues: list[ConfigIssue] = []
        entries: list[MeterEntry] = []

        def limits(m: Any) -> Limits:
            return Limits(
                rated_power_w=m.rated_power_w, margin=mc.plausibility_margin,
                max_future_s=mc.max_future_s, max_age_s=mc.max_age_s,
                public_key=parse_pubkey(m.public_key) if m.public_key else None)

        def health(meter_id: str, source: str) -> MeterHealth:
            return MeterHealth(meter_id, source, mc.stale_after_s)

        # pymodbus and paho-mqtt load only for a node that has meters of their kind (each is
        # several MB of a Pi-class board's memory).
        if mc.buses:
            from gridnode.meters.bus import BusMeter, BusPoller, BusTiming
            from gridnode.meters.modbus_link import LinkSettings, ModbusLink
        bus_specs: list[tuple[str, LinkSettings, BusTiming, list[BusMeter]]] = []
        for b, bus in enumerate(mc.buses):
            bus_name = bus.name or bus.endpoint
            if isinstance(bus, SerialBus):
                link = LinkSettings("rtu", port=bus.port, baudrate=bus.baudrate,
                                    bytesize=bus.bytesize, parity=bus.parity,
                                    stopbits=bus.stopbits, timeout_s=bus.timeout_s)
            else:
                link = LinkSettings(bus.kind, host=bus.host, tcp_port=bus.port,
                                    timeout_s=bus.timeout_s)
            timing = BusTiming(poll_interval_s=bus.poll_interval_s, retries=bus.retries,
                               slave_pause_s=bus.slave_switch_pause_ms / 1000)
            bms: list[BusMeter] = []
            for i, m in enumerate(bus.meters):
                profile = profiles.get(m.profile)
                if profile is None:
                    issues.append(ConfigIssue(
                        file, f"meters.buses[{b}].meters[{i}].profile", repr(m.profile),
                        f"one of {', '.join(sorted(profiles))} or a [[meters.profiles]] entry"))
                    continue
                h = health(m.meter_id, bus_name)
                entries.append(MeterEntry(m.meter_id, "modbus", profile.name, limits(m), h,
                                          invert=m.invert))
                bms.append(BusMeter(m.meter_id, m.unit_id, profile, h))
            bus_specs.append((bus_name, link, timing, bms))

        mqtt_meters: list[MqttMeter] = []
        settings = None
        if mc.mqtt is not None:
            from gridnode.meters.mqtt import MqttIngest, MqttMeter, MqttSettings

            q = mc.mqtt
            settings = MqttSettings(
                host=q.host, port=q.port, client_id=q.client_id or f"gridnode-{cfg.node.id}",
                keepalive_s=q.keepalive_s, tls=q.tls,
                ca_file=str(q.ca_file) if q.ca_file else None,
                cert_file=str(q.cert_file) if q.cert_file else None,
                key_file=str(q.key_file) if q.key_file else None,
                username=q.username, password=q.password, reconnect_max_s=q.reconnect_max_s)
            for qm in q.meters:
                fmt = (_generic(qm.fields, qm.topic) if qm.format == "generic" and qm.fields
                       else FORMATS[qm.format])
                tz = ZoneInfo(qm.timezone or cfg.node.timezone)
                entries.append(MeterEntry(qm.meter_id, "mqtt", qm.format, limits(qm),
                                          health(qm.meter_id, "mqtt"), invert=qm.invert))
                mqtt_meters.append(MqttMeter(qm.meter_id, fmt, qm.topic, tz))
        if issues:
            raise ConfigError(issues)

        recorder = Recorder(store, entries, interval_s=cfg.intervals.minutes * 60, clock=clock,
                            max_backfill_s=cfg.intervals.max_backfill_hours * 3600,
                            raw_every_s=mc.raw_every_s)
        buses = [BusPoller(name, ModbusLink(link), bms, recorder, timing, clock)
                 for name, link, timing, bms in bus_specs if bms]
        ingest = MqttIngest(settings, mqtt_meters, recorder) if settings and mqtt_meters else None
        return cls(recorder, buses, ingest)

    async def run(self) -> None:
        await self.recorder.start()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.recorder.run(), name="meters-writer")
            for bus in self.buses:
                tg.create_task(bus.run(), name=f"meters-bus-{bus.name}")
            if self.mqtt is not None:
                tg.create_task(self.mqtt.run(), name="meters-mqtt")

    def progress(self) -> float:
        """Monotonic time of the last real progress: a stored reading or a finished bus cycle."""
        times = [self._started, self.recorder.progress_at]
        times += [b.progress_at for b in self.buses]
        if self.mqtt is not None:
            times.append(self.mqtt.progress_at)
        return max(times)

    def snapshot(self) -> list[dict]:
        return self.recorder.snapshot()
