"""Home Assistant over MQTT with the real daemon and the real Mosquitto: the retained discovery
configs carry what HA documents for an energy sensor (and a power sensor), the states follow the
validated readings, the availability topic goes offline by the last will when the daemon is
SIGKILLed and online when it is back, and HA's birth message brings discovery again.

Every topic is under prefixes unique to the test run, removed (empty retained payloads) at the end.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.meters.test_daemon_mqtt import Node, publish_all, publisher  # noqa: F401 - fixture
from tests.net import pick_free_port


@dataclass
class Seen:
    """What a subscriber received: every message in order, and the latest per topic."""

    messages: list[tuple[str, bytes, bool]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def latest(self, topic: str) -> bytes | None:
        with self.lock:
            for t, payload, _ in reversed(self.messages):
                if t == topic:
                    return payload
        return None

    def count(self, topic: str) -> int:
        with self.lock:
            return sum(t == topic for t, _, _ in self.messages)

    def retained(self, topic: str) -> bool:
        with self.lock:
            return any(t == topic and r for t, _, r in self.messages)

    def topics(self, prefix: str) -> set[str]:
        with self.lock:
            return {t for t, p, _ in self.messages if t.startswith(prefix) and p}


def _subscriber(host: str, port: int, filters: list[str]) -> tuple[mqtt.Client, Seen]:
    seen = Seen()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sub-{uuid.uuid4().hex[:8]}")
    subscribed = threading.Event()

    def on_message(cl: mqtt.Client, ud: object, msg: mqtt.MQTTMessage) -> None:
        with seen.lock:
            seen.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    sub.on_message = on_message
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.connect(host, port)
    sub.loop_start()
    sub.subscribe([(f, 1) for f in filters])
    assert subscribed.wait(10)
    return sub, seen


def _wait(cond: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def names() -> Iterator[dict[str, str]]:
    tag = uuid.uuid4().hex[:8]
    yield {"tag": tag, "prefix": f"ha{tag}", "base": f"gn{tag}", "node": f"node{tag}",
           "topic": f"hameter-{tag}/m"}


def _config(tmp_path: Path, host: str, port: int, n: dict[str, str],
            publish_port: int | None = None, raw_every_s: float = 60) -> str:
    return f"""
[api]
enabled = false

[node]
id = "{n['node']}"
data_dir = "{tmp_path / 'state'}"

[meters]
stale_after_s = 6
raw_every_s = {raw_every_s}

[meters.mqtt]
host = "{host}"
port = {port}
client_id = "gridnode-ha-in-{n['tag']}"
reconnect_max_s = 2

[[meters.mqtt.meters]]
meter_id = "m1"
format = "generic"
topic = "{n['topic']}"
[meters.mqtt.meters.fields]
import_energy = "imp"
export_energy = "exp"
power = "p"
energy_unit = "Wh"
time = "ts"
time_format = "unix_ms"

[publish.mqtt]
enabled = true
host = "{host}"
port = {publish_port or port}
client_id = "gridnode-ha-out-{n['tag']}"
discovery_prefix = "{n['prefix']}"
base_topic = "{n['base']}"
publish_every_s = 0.3
rediscover_delay_max_s = 0.2
keepalive_s = 5
"""


def _reading(topic: str, imp: float, exp: float, p: float, ts_ms: int) -> tuple[str, bytes]:
    return topic, json.dumps({"imp": imp, "exp": exp, "p": p, "ts": ts_ms}).encode()


def _clear_retained(host: str, port: int, topics: set[str]) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"clr-{uuid.uuid4().hex[:8]}")
    c.connect(host, port)
    c.loop_start()
    for t in topics:
        c.publish(t, b"", qos=1, retain=True).wait_for_publish(5)
    c.loop_stop()
    c.disconnect()


def test_home_assistant_discovery_states_availability_and_birth(
        tmp_path: Path, mqtt_broker: tuple[str, int], publisher: mqtt.Client,  # noqa: F811
        names: dict[str, str]) -> None:
    host, port = mqtt_broker
    n = names
    prefix, base, node_id = n["prefix"], n["base"], n["node"]
    sub, seen = _subscriber(host, port, [f"{prefix}/#", f"{base}/#"])
    node = Node(tmp_path, _config(tmp_path, host, port, n))
    cfg_topic = {q: f"{prefix}/sensor/{node_id}_m1_{q}/config" for q in ("import", "export",
                                                                          "power")}
    status_cfg = f"{prefix}/sensor/{node_id}_status/config"
    avail = f"{base}/{node_id}/availability"
    state = {q: f"{base}/{node_id}/m1/{q}" for q in ("import", "export", "power")}
    meter_avail = f"{base}/{node_id}/m1/availability"
    try:
        node.start_subscribed()
        _wait(lambda: seen.latest(avail) == b"online", "availability online")
        _wait(lambda: seen.latest(cfg_topic["import"]) is not None, "import discovery")
        _wait(lambda: seen.latest(status_cfg) is not None, "node status discovery")
        _wait(lambda: seen.latest(f"{base}/{node_id}/status") == b"ok", "node status ok")

        # states follow the validated readings (kWh for energy, W for power)
        now_ms = int(time.time() * 1000)
        publish_all(publisher, [_reading(n["topic"], 1_234_500 + 10 * i, 50_000 + i,
                                         1500 + i, now_ms - 10_000 + i * 1000)
                                for i in range(5)])
        _wait(lambda: seen.latest(state["import"]) == b"1234.54", "import state 1234.54 kWh")
        _wait(lambda: seen.latest(state["export"]) == b"50.004", "export state 50.004 kWh")
        _wait(lambda: seen.latest(state["power"]) == b"1504", "power state 1504 W")
        _wait(lambda: seen.latest(cfg_topic["export"]) is not None, "export discovery")
        _wait(lambda: seen.latest(cfg_topic["power"]) is not None, "power discovery")

        # a glitch the validator refuses (the import counter going back) never reaches HA
        publish_all(publisher, [_reading(n["topic"], 1_000, 50_010, 1600, now_ms - 3_000)])
        publish_all(publisher, [_reading(n["topic"], 1_234_550, 50_010, 1700, now_ms - 1_000)])
        _wait(lambda: seen.latest(meter_avail) == b"online", "the meter available")
        _wait(lambda: seen.latest(state["import"]) == b"1234.55", "import state after glitch")
        with seen.lock:
            imports = [p for t, p, _ in seen.messages if t == state["import"]]
        assert b"1" not in imports and all(float(p) >= 1234.5 for p in imports), imports

        # what HA documents for an energy sensor the Energy dashboard accepts
        imp = json.loads(seen.latest(cfg_topic["import"]) or b"{}")
        assert imp["device_class"] == "energy" and imp["unit_of_measurement"] == "kWh"
        assert imp["state_class"] == "total" and "last_reset" not in imp
        assert imp["state_topic"] == state["import"]
        assert imp["unique_id"] == f"gridnode_{node_id}_m1_import"
        assert imp["default_entity_id"] == f"sensor.{node_id}_m1_import"
        assert "object_id" not in imp       # deprecated by HA 2025.10, ignored since 2026.4
        assert imp["availability"] == [
            {"topic": t, "payload_available": "online", "payload_not_available": "offline"}
            for t in (avail, meter_avail)] and imp["availability_mode"] == "all"
        assert imp["device"]["identifiers"] == [f"gridnode_{node_id}_m1"]
        assert imp["device"]["via_device"] == f"gridnode_{node_id}"
        assert imp["origin"]["name"] == "gridnode"
        exp = json.loads(seen.latest(cfg_topic["export"]) or b"{}")
        assert (exp["device_class"], exp["unit_of_measurement"], exp["state_class"]) == \
            ("energy", "kWh", "total")
        pw = json.loads(seen.latest(cfg_topic["power"]) or b"{}")
        assert (pw["device_class"], pw["unit_of_measurement"], pw["state_class"]) == \
            ("power", "W", "measurement")
        assert exp["device"] == imp["device"] == pw["device"]   # one HA device per meter

        # retained: a client that subscribes later (HA after a restart) gets configs and states
        late, late_seen = _subscriber(host, port, [f"{prefix}/#", f"{base}/#"])
        try:
            _wait(lambda: all(late_seen.retained(t) for t in
                              [*cfg_topic.values(), status_cfg, avail, meter_avail,
                               *state.values()]),
                  "retained configs, availability and states")
            assert late_seen.latest(state["import"]) == b"1234.55"
        finally:
            late.loop_stop()
            late.disconnect()

        # HA's birth message brings every config again
        configs_before = seen.count(cfg_topic["import"])
        sub.publish(f"{prefix}/status", b"online", qos=1).wait_for_publish(5)
        _wait(lambda: seen.count(cfg_topic["import"]) > configs_before
              and seen.count(status_cfg) > 1, "discovery again after the birth message")

        # a meter without a good reading for stale_after_s is unavailable (not a stale value)
        _wait(lambda: seen.latest(meter_avail) == b"offline", "the quiet meter unavailable", 15)
        assert seen.latest(avail) == b"online"

        # SIGKILL: the broker publishes the last will; a new daemon says online again
        assert node.stop(signal.SIGKILL) == -signal.SIGKILL
        _wait(lambda: seen.latest(avail) == b"offline", "offline by the last will", 15)
        node.start()
        _wait(lambda: seen.latest(avail) == b"online", "online after the restart")
        # a clean stop says offline itself (no last will then)
        assert node.stop(signal.SIGTERM) == 0
        _wait(lambda: seen.latest(avail) == b"offline", "offline after a clean stop")
    finally:
        node.kill_all()
        sub.loop_stop()
        sub.disconnect()
        _clear_retained(host, port, seen.topics(prefix) | seen.topics(base))
    assert "Traceback" not in node.log()


def test_publish_mqtt_configuration_errors_name_the_key(tmp_path: Path) -> None:
    from gridnode.config import ConfigError, parse_config
    from gridnode.config.machine import check_machine

    with pytest.raises(ConfigError) as err:
        parse_config('[publish.mqtt]\nenabled = true\ndiscovery_prefix = "home/#"\n'
                     'publish_every_s = 0\n', "site.toml")
    issues = {i.path: i for i in err.value.errors}
    assert set(issues) == {"publish.mqtt.discovery_prefix", "publish.mqtt.publish_every_s"}
    assert "without wildcards" in issues["publish.mqtt.discovery_prefix"].allowed
    cfg = parse_config(f'[node]\ndata_dir = "{tmp_path}"\n[publish.mqtt]\nenabled = true\n'
                       f'tls = true\nca_file = "{tmp_path / "nope.pem"}"\n', "site.toml")
    found = check_machine(cfg, resolve=False)
    assert [(i.file, i.path) for i in found] == [("site.toml", "publish.mqtt.ca_file")]
    assert "a PEM file of CA certificates" in found[0].allowed
    off = parse_config(f'[node]\ndata_dir = "{tmp_path}"\n[publish.mqtt]\ntls = true\n'
                       f'ca_file = "{tmp_path / "nope.pem"}"\n', "site.toml")
    assert check_machine(off, resolve=False) == []      # not enabled: its files are not used


def test_readings_are_stored_while_home_assistant_is_unreachable(
        tmp_path: Path, mqtt_broker: tuple[str, int], publisher: mqtt.Client,  # noqa: F811
        names: dict[str, str]) -> None:
    """The meter path never waits for the publishing broker: with nothing listening there the
    readings are stored as usual, and the outage is one log line."""
    host, port = mqtt_broker
    node = Node(tmp_path, _config(tmp_path, host, port, names, publish_port=pick_free_port(),
                                  raw_every_s=0))      # every reading a row: countable
    now_ms = int(time.time() * 1000)
    try:
        node.start_subscribed()
        publish_all(publisher, [_reading(names["topic"], 1_000_000 + 10 * i, 0, 100,
                                         now_ms - 60_000 + i * 1000) for i in range(50)])
        node.wait_until(lambda: node.count("m1") >= 50, what="every reading stored")
        node.wait_log("home assistant broker unreachable")
        assert node.stop(signal.SIGTERM) == 0
    finally:
        node.kill_all()
    rows = node.query("SELECT last_import_raw FROM meter_state WHERE meter_id = 'm1'")
    assert rows and rows[0][0] == 1_000_490      # every reading went through the recorder
    log = node.log()
    assert log.count("home assistant broker unreachable") == 1, log
    assert "Traceback" not in log
