"""MQTT ingestion through the real Mosquitto broker: Tasmota, Shelly Gen2, GridTokenX (signed)
and generic JSON, a broker disconnect, and a malformed-payload fuzz."""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import uuid
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
from solders.keypair import Keypair

from gridnode.meters.mqtt import MqttIngest, MqttMeter, MqttSettings
from gridnode.meters.payloads import FORMATS, generic_format
from gridnode.testing import AcceleratedClock, drain
from simulators.meters.model import SimMeter
from simulators.meters.mqtt_publisher import MqttMeterPublisher, PublishedMeter, payloads
from tests.meters.conftest import entry, intervals, make_recorder, running

START = 1_780_000_200.0 // 900 * 900 - 20
BERLIN = ZoneInfo("Europe/Berlin")


async def wait_for(cond, limit: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while not cond():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.02)


async def test_all_formats_through_the_broker(store, mqtt_broker) -> None:
    host, port = mqtt_broker
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    clock = AcceleratedClock(START, factor=200)
    kp = Keypair()
    sims = {f: SimMeter(f"{f}-1", clock=clock) for f in ("tasmota", "shelly", "gridtokenx")}
    topics = {"tasmota": f"{prefix}/tele/dev1/SENSOR", "shelly": f"{prefix}/shellypro3em",
              "gridtokenx": f"{prefix}/gridtokenx/ami/telemetry/gridtokenx-1"}
    entries = [entry(s.meter_id, "mqtt", f,
                     public_key=kp.pubkey() if f == "gridtokenx" else None)
               for f, s in sims.items()]
    rec = make_recorder(store, entries, clock)
    meters = [MqttMeter(s.meter_id, FORMATS[f], topics[f], BERLIN if f == "tasmota" else
                        ZoneInfo("UTC")) for f, s in sims.items()]
    ingest = MqttIngest(MqttSettings(host, port, client_id=f"gridnode-{prefix}"), meters, rec)
    pub = MqttMeterPublisher(host, port, [
        PublishedMeter(s, f, topics[f], tz=BERLIN, keypair=kp if f == "gridtokenx" else None)
        for f, s in sims.items()])
    async with running(rec, ingest.run()):
        await asyncio.wait_for(ingest.connected.wait(), 10)
        for i in range(60):                       # a publication every 30 s of meter time
            await asyncio.to_thread(pub.publish_all)
            if i == 30:                           # a forged signature is rejected
                doc = json.loads(payloads(PublishedMeter(sims["gridtokenx"], "gridtokenx",
                                                         topics["gridtokenx"],
                                                         keypair=Keypair()))[0][1])
                pub.client.publish(topics["gridtokenx"], json.dumps(doc), qos=1).wait_for_publish()
            await clock.sleep(30)
        await wait_for(lambda: all(e.health.accepted >= 50 for e in entries))
    pub.disconnect()
    h = {e.meter_id: e.health for e in entries}
    assert h["gridtokenx-1"].rejections["bad_signature"] == 1
    for s in sims.values():
        ivs = await intervals(store, s.meter_id)
        assert len(ivs) >= 1, s.meter_id
        assert all(iv["import_wh"] + iv["export_wh"] > 0 for iv in ivs)
    # Shelly's em:0 power and voltage ride along with the emdata:0 counters
    row = await store.fetchone("SELECT count(*) AS n FROM readings WHERE meter_id = 'shelly-1' "
                               "AND (power_w IS NULL OR voltage_v != 230.0)")
    assert row["n"] <= 1      # only a first emdata that arrived before any em:0
    # Tasmota's local Berlin time became the right UTC instant (within a publication period)
    row = await store.fetchone("SELECT max(read_at_ms) AS t FROM readings WHERE meter_id = ?",
                               ("tasmota-1",))
    assert abs(row["t"] / 1000 - clock.time()) < 120


async def test_generic_json_and_reconnect_after_broker_disconnect(store, mqtt_broker) -> None:
    host, port = mqtt_broker
    topic = f"g-{uuid.uuid4().hex[:8]}/site/heatpump"
    clock = AcceleratedClock(START, factor=1)
    rec = make_recorder(store, [entry("hp", "mqtt", "generic")], clock)
    fmt = generic_format("{topic}", {"import_wh": ("e.in", "kWh"), "power_w": ("p", "kW")},
                         "ts", "unix_s")
    ingest = MqttIngest(MqttSettings(host, port, client_id=f"gridnode-{uuid.uuid4().hex[:8]}",
                                     reconnect_min_s=0.1), [MqttMeter("hp", fmt, topic)], rec)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    pub.connect(host, port)
    pub.loop_start()
    try:
        async with running(rec, ingest.run()):
            await asyncio.wait_for(ingest.connected.wait(), 10)
            t = clock.time()
            pub.publish(topic, json.dumps({"e": {"in": 12.5}, "p": 1.2, "ts": t}), qos=1)
            await wait_for(lambda: rec.meters["hp"].health.accepted == 1)
            # the connection to the broker breaks; the ingest reconnects by itself and resumes
            ingest._client.socket().shutdown(socket.SHUT_RDWR)
            await wait_for(lambda: not ingest.connected.is_set())
            await asyncio.wait_for(ingest.connected.wait(), 10)
            pub.publish(topic, json.dumps({"e": {"in": 12.501}, "p": 1.2, "ts": t + 2}), qos=1)
            await wait_for(lambda: rec.meters["hp"].health.accepted == 2)
    finally:
        pub.loop_stop()
        pub.disconnect()
    rows = await store.fetchall("SELECT import_wh, power_w FROM readings WHERE meter_id = 'hp'")
    assert [r["import_wh"] for r in rows] == [12500.0, 12501.0] and rows[0]["power_w"] == 1200.0


def _mutations(rng: random.Random, good: bytes) -> bytes:
    kind = rng.randrange(6)
    if kind == 0:
        return good[: rng.randrange(len(good))]
    if kind == 1:
        return os.urandom(rng.randrange(64))
    if kind == 2:
        b = bytearray(good)
        for _ in range(rng.randrange(1, 5)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    if kind == 3:
        return json.dumps(rng.choice([None, 1, "x", [], [1, 2], {"ENERGY": []},
                                      {"ENERGY": {"Total": "NaN"}}, {"total_act": True},
                                      {"energy_consumed": 1e400}, {"timestamp": "yesterday"},
                                      {"Time": 12, "ENERGY": {"Total": 1}},
                                      {"energy_consumed": 10**500}])).encode()
    if kind == 4:
        return b"[" * rng.randrange(1, 5000)
    doc = json.loads(good)
    k = rng.choice(list(doc))
    doc[k] = rng.choice([None, -1, "", {}, [], 1e308, "1e999"])
    return json.dumps(doc).encode()


async def test_malformed_payload_fuzz_crashes_nothing(store, mqtt_broker) -> None:
    host, port = mqtt_broker
    prefix = f"f-{uuid.uuid4().hex[:8]}"
    clock = AcceleratedClock(START, factor=1)
    rng = random.Random(6)
    sims = {f: SimMeter(f"{f}-z", clock=clock) for f in ("tasmota", "shelly", "gridtokenx")}
    topics = {"tasmota": f"{prefix}/tele/z/SENSOR", "shelly": f"{prefix}/shz",
              "gridtokenx": f"{prefix}/gridtokenx/ami/telemetry/z"}
    entries = [entry(s.meter_id, "mqtt", f) for f, s in sims.items()]
    rec = make_recorder(store, entries, clock)
    meters = [MqttMeter(s.meter_id, FORMATS[f], topics[f]) for f, s in sims.items()]
    ingest = MqttIngest(MqttSettings(host, port, client_id=f"gridnode-{prefix}"), meters, rec)
    goods = {f: payloads(PublishedMeter(s, f, topics[f])) for f, s in sims.items()}
    async with running(rec, ingest.run()):
        await asyncio.wait_for(ingest.connected.wait(), 10)
        # most straight through the parser and the recorder...
        for _ in range(3000):
            f = rng.choice(list(goods))
            topic, good = rng.choice(goods[f])
            ingest.handle(topic, _mutations(rng, good))
        # ...and a few hundred through the broker
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        pub.connect(host, port)
        pub.loop_start()
        before = ingest.messages
        for _ in range(300):
            f = rng.choice(list(goods))
            topic, good = rng.choice(goods[f])
            pub.publish(topic, _mutations(rng, good), qos=1)
        await wait_for(lambda: ingest.messages - before >= 300, limit=20)
        pub.loop_stop()
        pub.disconnect()
        assert ingest.connected.is_set()
        await drain(rec)
    rejected = sum(e.health.rejected for e in entries)
    assert rejected > 1500
    # whatever was stored passed validation: counters never fall, never NaN or negative
    for e in entries:
        vals = [r["import_wh"] for r in await store.fetchall(
            "SELECT import_wh FROM readings WHERE meter_id = ? ORDER BY read_at_ms",
            (e.meter_id,))]
        assert vals == sorted(vals) and all(v >= 0 for v in vals)


async def test_persistent_session_delivers_what_came_while_away(store, mqtt_broker) -> None:
    """QoS 1 on a persistent session: messages published while gridnode is down arrive when it
    comes back with the same client id; a publisher in the `disconnect` fault sends nothing."""
    host, port = mqtt_broker
    prefix = f"p-{uuid.uuid4().hex[:8]}"
    topic = f"{prefix}/gridtokenx/ami/telemetry/gx"
    clock = AcceleratedClock(START, factor=60)
    sim = SimMeter("gx", clock=clock)
    rec = make_recorder(store, [entry("gx", "mqtt", "gridtokenx")], clock)
    settings = MqttSettings(host, port, client_id=f"gridnode-{prefix}", session_expiry_s=60)
    meters = [MqttMeter("gx", FORMATS["gridtokenx"], topic)]
    pub = MqttMeterPublisher(host, port, [PublishedMeter(sim, "gridtokenx", topic)])
    health = rec.meters["gx"].health
    try:
        first = MqttIngest(settings, meters, rec)
        async with running(rec, first.run()):
            await asyncio.wait_for(first.connected.wait(), 10)
            await asyncio.to_thread(pub.publish_all)
            await wait_for(lambda: health.accepted == 1)
        # gridnode is away: three readings wait in the broker's session
        for _ in range(3):
            await clock.sleep(60)
            await asyncio.to_thread(pub.publish_all)
        sim.set_fault("disconnect")
        assert await asyncio.to_thread(pub.publish_all) == 0
        second = MqttIngest(settings, meters, rec)
        async with running(rec, second.run()):
            await wait_for(lambda: health.accepted == 4)
            sim.set_fault("none")
            await clock.sleep(60)
            await asyncio.to_thread(pub.publish_all)
            await wait_for(lambda: health.accepted == 5)
    finally:
        pub.disconnect()
    seqs = await store.fetchall("SELECT import_wh FROM readings WHERE meter_id = 'gx' "
                                "ORDER BY read_at_ms")
    assert len(seqs) == 5


async def test_no_broker_is_retried_with_backoff_not_fatal(store, free_port) -> None:
    clock = AcceleratedClock(START, factor=1)
    rec = make_recorder(store, [entry("hp", "mqtt", "tasmota")], clock)
    ingest = MqttIngest(MqttSettings("127.0.0.1", free_port, client_id="gridnode-nobroker",
                                     reconnect_min_s=0.05, reconnect_max_s=0.2),
                        [MqttMeter("hp", FORMATS["tasmota"], "tele/hp/SENSOR")], rec)
    async with running(rec, ingest.run()) as tasks:
        await asyncio.sleep(1.0)
        assert not tasks[1].done() and not ingest.connected.is_set()
