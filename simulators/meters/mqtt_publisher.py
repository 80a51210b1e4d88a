"""MQTT publisher for simulated meters in the Tasmota, Shelly Gen2 and GridTokenX formats.

Faults: `nan` publishes NaN-free but counter-less payloads ("no data"), `garbage` publishes bytes
that are not a usable payload, `disconnect` drops the broker connection until the fault is
cleared. GridTokenX telemetry is signed (Ed25519, base58) when the meter has a keypair.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
from solders.keypair import Keypair

from gridnode.meters.signatures import canonical_message
from simulators.meters.model import SimMeter


@dataclass(slots=True)
class PublishedMeter:
    meter: SimMeter
    format: str               # tasmota | shelly | gridtokenx
    topic: str                # full topic (tasmota, gridtokenx) or prefix (shelly)
    tz: ZoneInfo = ZoneInfo("UTC")
    keypair: Keypair | None = None
    sequence: int = 0
    _last_import: float | None = None
    _last_export: float | None = None


def payloads(pm: PublishedMeter) -> list[tuple[str, bytes]]:
    """The (topic, payload) messages one publication of `pm` sends."""
    m = pm.meter
    v = m.values()
    now = m.clock.time()
    if m.fault == "garbage":
        return [(pm.topic if pm.format != "shelly" else f"{pm.topic}/status/emdata:0",
                 os.urandom(24))]
    imp, exp = v["import_wh"], v["export_wh"]
    if pm.format == "tasmota":
        local = datetime.fromtimestamp(int(now), pm.tz).replace(tzinfo=None).isoformat()
        energy = {"Power": round(v["power_w"] or 0.0), "Voltage": round(v["voltage_v"] or 0.0),
                  "Current": round(v["current_a"] or 0.0, 3)}
        if imp is not None:
            energy.update({"Total": round(imp / 1000, 3), "ExportActive": round(exp / 1000, 3)})
        return [(pm.topic, json.dumps({"Time": local, "ENERGY": energy}).encode())]
    if pm.format == "shelly":
        em = {"id": 0, "total_act_power": v["power_w"], "total_current": v["current_a"],
              "a_voltage": v["voltage_v"]}
        emdata = {"id": 0}
        if imp is not None:
            emdata.update({"total_act": round(imp, 2), "total_act_ret": round(exp, 2)})
        return [(f"{pm.topic}/status/em:0", json.dumps(em).encode()),
                (f"{pm.topic}/status/emdata:0", json.dumps(emdata).encode())]
    if pm.format == "gridtokenx":
        pm.sequence += 1
        ts_ms = int(now) * 1000
        doc: dict = {"meter_id": m.meter_id, "sequence_number": pm.sequence,
                     "timestamp": datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat(),
                     "voltage": v["voltage_v"], "current": v["current_a"],
                     "frequency": v["frequency_hz"], "manufacturer_id": "GXT"}
        if imp is not None:
            d_imp = imp - (pm._last_import if pm._last_import is not None else imp)
            d_exp = exp - (pm._last_export if pm._last_export is not None else exp)
            pm._last_import, pm._last_export = imp, exp
            doc["energy_consumed"] = d_imp / 1000
            doc["energy_generated"] = d_exp / 1000
            if pm.keypair is not None:
                kwh = (doc["energy_generated"] * 1000 - doc["energy_consumed"] * 1000) / 1000
                msg = canonical_message(m.meter_id, kwh, ts_ms, pm.sequence)
                doc["meter_signature"] = str(pm.keypair.sign_message(msg))
        return [(pm.topic, json.dumps(doc).encode())]
    raise ValueError(f"unknown format {pm.format!r}")


class MqttMeterPublisher:
    """Publishes every meter's payloads on `publish_all()`; QoS 1."""

    def __init__(self, host: str, port: int, meters: list[PublishedMeter],
                 client_id: str | None = None) -> None:
        self.meters = meters
        self.host, self.port = host, port
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"gridnode-sim-{os.getpid()}-{id(self)}")
        self._connected = False

    def connect(self) -> None:
        self.client.connect(self.host, self.port, 30)
        self.client.loop_start()
        self._connected = True

    def disconnect(self) -> None:
        if self._connected:
            self.client.disconnect()
            self.client.loop_stop()
            self._connected = False

    def publish_all(self) -> int:
        """One publication per meter; meters in fault `disconnect` make the publisher drop off
        the broker until no meter is in that fault."""
        if any(pm.meter.fault == "disconnect" for pm in self.meters):
            self.disconnect()
            return 0
        if not self._connected:
            self.connect()
        n = 0
        for pm in self.meters:
            for topic, payload in payloads(pm):
                self.client.publish(topic, payload, qos=1).wait_for_publish(5)
                n += 1
        return n
