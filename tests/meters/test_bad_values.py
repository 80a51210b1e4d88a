"""Values no meter can show, and "no data" written as numbers, through the real broker into the
store: an implausible instantaneous value is dropped and counted while the counters are kept, a
rejected Shelly em:0 message leaves no trace, and NaN in a delta format is no data, never zero."""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from gridnode.meters.mqtt import MqttIngest, MqttMeter, MqttSettings
from gridnode.meters.payloads import FORMATS
from gridnode.meters.recorder import Recorder
from gridnode.store import Store
from gridnode.testing import AcceleratedClock, drain
from tests.meters.conftest import entry, make_recorder, running

START = 1_780_000_200.0 // 900 * 900 + 60


async def wait_for(cond: Any, limit: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while not cond():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.02)


class Broker:
    """A publisher on the real broker and the ingest subscribed to one meter's topics."""

    def __init__(self, host: str, port: int, rec: Recorder, meter: MqttMeter) -> None:
        self.ingest = MqttIngest(MqttSettings(host, port, client_id=f"gridnode-{uuid.uuid4()}"),
                                 [meter], rec)
        self.pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.pub.connect(host, port)
        self.pub.loop_start()

    def publish(self, topic: str, doc: dict[str, Any]) -> None:
        self.pub.publish(topic, json.dumps(doc), qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.pub.loop_stop()
        self.pub.disconnect()


async def rows(store: Store, meter_id: str) -> list[dict[str, Any]]:
    return [dict(r) for r in await store.fetchall(
        "SELECT import_wh, export_wh, power_w, voltage_v, current_a, frequency_hz FROM readings "
        "WHERE meter_id = ? ORDER BY read_at_ms", (meter_id,))]


def local(t: float) -> str:
    return datetime.fromtimestamp(int(t), UTC).replace(tzinfo=None).isoformat()


async def test_implausible_instantaneous_values_are_dropped_and_counted_counters_kept(
        store, mqtt_broker) -> None:
    clock = AcceleratedClock(START)
    topic = f"v-{uuid.uuid4().hex[:8]}/tele/t1/SENSOR"
    e = entry("t1", "mqtt", "tasmota", rated_power_w=20_000)
    rec = make_recorder(store, [e], clock)
    b = Broker(*mqtt_broker, rec, MqttMeter("t1", FORMATS["tasmota"], topic))
    t = clock.time()
    try:
        async with running(rec, b.ingest.run()):
            await asyncio.wait_for(b.ingest.connected.wait(), 10)
            b.publish(topic, {"Time": local(t - 20), "ENERGY": {
                "Total": 100.0, "ExportActive": 1.0, "Power": 300, "Voltage": 231.0,
                "Current": 1.3, "Frequency": 50.0}})
            b.publish(topic, {"Time": local(t - 10), "ENERGY": {
                "Total": 100.01, "ExportActive": 1.0, "Power": 1e308, "Voltage": -1e308,
                "Current": 1e9, "Frequency": 1e6}})
            await wait_for(lambda: e.health.accepted == 2)
            await drain(rec)
    finally:
        b.close()
    stored = await rows(store, "t1")
    assert stored == [
        {"import_wh": 100_000.0, "export_wh": 1000.0, "power_w": 300.0, "voltage_v": 231.0,
         "current_a": 1.3, "frequency_hz": 50.0},
        {"import_wh": pytest.approx(100_010.0), "export_wh": 1000.0, "power_w": None,
         "voltage_v": None, "current_a": None, "frequency_hz": None},
    ]
    assert e.health.accepted == 2 and dict(e.health.rejections) == {"implausible_value": 1}


async def test_a_rejected_shelly_em_message_leaves_no_trace(store, mqtt_broker) -> None:
    clock = AcceleratedClock(START)
    prefix = f"s-{uuid.uuid4().hex[:8]}/shelly"
    e = entry("s1", "mqtt", "shelly", rated_power_w=20_000)
    rec = make_recorder(store, [e], clock)
    b = Broker(*mqtt_broker, rec, MqttMeter("s1", FORMATS["shelly"], prefix))
    h = e.health
    try:
        async with running(rec, b.ingest.run()):
            await asyncio.wait_for(b.ingest.connected.wait(), 10)
            b.publish(f"{prefix}/status/em:0", {"id": 0, "total_act_power": 350.0,
                                                "total_current": 1.5, "a_voltage": 230.5})
            b.publish(f"{prefix}/status/emdata:0", {"id": 0, "total_act": 5000.0,
                                                    "total_act_ret": 10.0})
            await wait_for(lambda: h.accepted == 1)
            b.publish(f"{prefix}/status/em:0", {"id": 0, "total_act_power": 1e308,
                                                "total_current": 1e9, "a_voltage": -5})
            for i in (1, 2, 3):
                await asyncio.sleep(0.01)
                b.publish(f"{prefix}/status/emdata:0", {"id": 0, "total_act": 5000.0 + i / 10,
                                                        "total_act_ret": 10.0})
                await wait_for(lambda i=i: h.accepted == 1 + i)
            await drain(rec)
    finally:
        b.close()
    stored = await rows(store, "s1")
    assert len(stored) == 4
    # every reading carries the last valid em:0 values, none of the rejected message's
    assert {(r["power_w"], r["voltage_v"], r["current_a"]) for r in stored} == {(350.0, 230.5, 1.5)}
    assert h.accepted == 4 and dict(h.rejections) == {"implausible_value": 1}


@pytest.mark.parametrize("no_data", ["NaN", "inf", None, math.nan, "-Infinity"])
async def test_gridtokenx_nan_energy_is_no_data_never_zero(store, mqtt_broker, no_data) -> None:
    clock = AcceleratedClock(START)
    topic = f"x-{uuid.uuid4().hex[:8]}/gridtokenx/ami/telemetry/g1"
    e = entry("g1", "mqtt", "gridtokenx", rated_power_w=20_000)
    rec = make_recorder(store, [e], clock)
    b = Broker(*mqtt_broker, rec, MqttMeter("g1", FORMATS["gridtokenx"], topic))
    t = int(clock.time()) - 60
    h = e.health

    def telemetry(seq: int, consumed: Any, generated: float) -> dict[str, Any]:
        return {"meter_id": "g1", "sequence_number": seq, "energy_consumed": consumed,
                "energy_generated": generated, "voltage": 230.0, "frequency": 50.0,
                "timestamp": datetime.fromtimestamp(t + 10 * seq, UTC).isoformat()}

    try:
        async with running(rec, b.ingest.run()):
            await asyncio.wait_for(b.ingest.connected.wait(), 10)
            b.publish(topic, telemetry(1, 0.01, 0.002))
            b.publish(topic, telemetry(2, no_data, 0.003))
            b.publish(topic, telemetry(3, 0.02, 0.001))
            await wait_for(lambda: h.accepted + h.rejected >= 3)
            await drain(rec)
    finally:
        b.close()
    stored = await rows(store, "g1")
    # the NaN message is rejected as a whole: no reading with an import delta of 0
    assert [(r["import_wh"], r["export_wh"]) for r in stored] == [
        (pytest.approx(10.0), pytest.approx(2.0)), (pytest.approx(30.0), pytest.approx(3.0))]
    assert h.accepted == 2 and dict(h.rejections) == {"no_data": 1}
