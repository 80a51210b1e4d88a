"""`gridnode run` with MQTT meters as a separate process against the real Mosquitto broker, killed
and restarted as an operator's machine would be: QoS 1 on a persistent session, messages
acknowledged only after their commit, and meters without an export counter across restarts."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import paho.mqtt.client as mqtt
import pytest

REPO = Path(__file__).resolve().parents[2]


class Node:
    """One `gridnode run` process after another on the same data directory and client id."""

    def __init__(self, tmp_path: Path, config: str) -> None:
        self.dir = tmp_path
        self.cfg = tmp_path / "gridnode.toml"
        self.cfg.write_text(config)
        self.db = tmp_path / "state" / "gridnode.db"
        self.proc: subprocess.Popen[str] | None = None
        self.runs = 0
        self._log: IO[str] | None = None

    def start(self) -> None:
        self.runs += 1
        self._log = open(self.dir / f"run{self.runs}.log", "w")  # noqa: SIM115 - closed in stop
        self.proc = subprocess.Popen([sys.executable, "-m", "gridnode", "run", "-c", str(self.cfg)],
                                     cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT,
                                     text=True)

    def start_subscribed(self) -> None:
        """Start, and return once the subscription stands (from then on the broker keeps the
        session's messages, whether the node runs or not)."""
        self.start()
        self.wait_log("mqtt connected")
        time.sleep(0.5)

    def count(self, meter_id: str) -> int:
        rows = self.query("SELECT count(*) FROM readings WHERE meter_id = ?", (meter_id,))
        return int(str(rows[0][0])) if rows else 0

    def wait_log(self, text: str, timeout: float = 30.0) -> None:
        path = self.dir / f"run{self.runs}.log"
        deadline = time.monotonic() + timeout
        while text not in path.read_text():
            assert self.proc is not None and self.proc.poll() is None, path.read_text()
            assert time.monotonic() < deadline, f"no {text!r}: {path.read_text()}"
            time.sleep(0.05)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=30)
        assert self._log is not None
        self._log.close()
        self.proc = None
        return code

    def log(self, run: int | None = None) -> str:
        runs = [run] if run else range(1, self.runs + 1)
        return "".join((self.dir / f"run{r}.log").read_text() for r in runs)

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        if not self.db.exists():
            return []
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10) as c:
            try:
                return list(c.execute(sql, params).fetchall())
            except sqlite3.OperationalError:   # the schema is not there yet
                return []

    def wait_until(self, cond: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}; log:\n{self.log()[-3000:]}")
            time.sleep(0.1)

    def kill_all(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self._log is not None:
            self._log.close()


@pytest.fixture
def publisher(mqtt_broker: tuple[str, int]) -> Iterator[mqtt.Client]:
    host, port = mqtt_broker
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    pub.max_inflight_messages_set(100)
    pub.max_queued_messages_set(0)
    pub.connect(host, port)
    pub.loop_start()
    yield pub
    pub.loop_stop()
    pub.disconnect()


def publish_all(pub: mqtt.Client, items: list[tuple[str, bytes]]) -> None:
    """Publish at QoS 1 and wait until the broker has acknowledged every message."""
    infos = [pub.publish(topic, payload, qos=1) for topic, payload in items]
    for info in infos:
        info.wait_for_publish(timeout=30)
        assert info.is_published()


def _mqtt_config(tmp_path: Path, host: str, port: int, client_id: str, meter: str) -> str:
    return f"""
[api]
enabled = false

[node]
id = "mqtt-daemon-test"
data_dir = "{tmp_path / 'state'}"

[meters]
raw_every_s = 0     # a raw row per message: the tests count acknowledged messages by rows

[meters.mqtt]
host = "{host}"
port = {port}
client_id = "{client_id}"
reconnect_max_s = 2

[[meters.mqtt.meters]]
{meter}
"""


def generic_meter(topic: str) -> str:
    """An MQTT meter (id "m") with JSON {"e": Wh, "ts": Unix ms} on `topic`."""
    return f"""
meter_id = "m"
format = "generic"
topic = "{topic}"
[meters.mqtt.meters.fields]
import_energy = "e"
energy_unit = "Wh"
time = "ts"
time_format = "unix_ms"
"""


def test_sigkill_loses_no_acknowledged_mqtt_reading(tmp_path: Path, mqtt_broker: tuple[str, int],
                                                     publisher: mqtt.Client) -> None:
    """Every reading the broker took is stored once, whenever the node is killed: the node
    acknowledges a message only after its commit, so the broker keeps what was not stored."""
    host, port = mqtt_broker
    tag = uuid.uuid4().hex[:8]
    topic = f"ack-{tag}/meter"
    node = Node(tmp_path, _mqtt_config(tmp_path, host, port, f"gridnode-ack-{tag}",
                                       generic_meter(topic)))
    t0 = (int(time.time()) - 7200) * 1000
    sent: list[int] = []

    def batch(n: int) -> list[tuple[str, bytes]]:
        out = []
        for _ in range(n):
            i = len(sent)
            sent.append(i)
            out.append((topic, json.dumps({"e": 10_000 + i, "ts": t0 + i * 3000}).encode()))
        return out

    def stored() -> int:
        return node.count("m")

    try:
        node.start_subscribed()
        publish_all(publisher, batch(1))
        node.wait_until(lambda: stored() == 1, what="the first reading")
        # 1) the writer is held up (another process holds the database lock), messages arrive
        # and wait in memory; the node is killed before anything of them is committed
        with sqlite3.connect(node.db, timeout=10, isolation_level=None) as hold:
            hold.execute("BEGIN IMMEDIATE")
            publish_all(publisher, batch(300))
            time.sleep(1.5)            # they reach the node (as far as it lets them)
            assert node.stop(signal.SIGKILL) == -signal.SIGKILL
            hold.execute("ROLLBACK")
        node.start()
        node.wait_until(lambda: stored() == len(sent), what="the 300 held-up readings")
        # 2) killed while readings stream in and commit: some are committed and not yet acked
        for _ in range(2):
            before = stored()
            publish_all(publisher, batch(400))
            node.wait_until(lambda b=before: stored() > b + 50, what="progress")  # type: ignore[misc]
            assert node.stop(signal.SIGKILL) == -signal.SIGKILL
            node.start()
        node.wait_until(lambda: stored() == len(sent), what="every published reading")
        time.sleep(1.0)                # a redelivered duplicate would show up now
        assert node.stop() == 0
    finally:
        node.kill_all()
    rows = node.query("SELECT import_wh, read_at_ms FROM readings WHERE meter_id = 'm' "
                      "ORDER BY read_at_ms")
    assert [r[0] for r in rows] == [10_000.0 + i for i in sent]
    assert [r[1] for r in rows] == [t0 + i * 3000 for i in sent]
    ivs = node.query("SELECT import_wh, counter_import_start, counter_import_end FROM intervals "
                     "WHERE meter_id = 'm' ORDER BY interval_start")
    assert len(ivs) >= 2
    # nothing counted twice: the intervals add up to the counter difference they span
    assert sum(int(iv[0]) for iv in ivs) == int(ivs[-1][2]) - int(ivs[0][1])  # type: ignore[call-overload]


def _tasmota(t: float, total_kwh: float) -> bytes:
    stamp = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return json.dumps({"Time": stamp, "ENERGY": {"Total": total_kwh, "Power": 120}}).encode()


def test_a_meter_without_export_keeps_working_after_restarts(
        tmp_path: Path, mqtt_broker: tuple[str, int], publisher: mqtt.Client) -> None:
    """Tasmota without ExportActive: accepted before, after a clean restart and after a SIGKILL
    (the saved state keeps "no export counter" as missing, not as 0.0)."""
    host, port = mqtt_broker
    tag = uuid.uuid4().hex[:8]
    topic = f"noexp-{tag}/tele/plug/SENSOR"
    node = Node(tmp_path, _mqtt_config(tmp_path, host, port, f"gridnode-noexp-{tag}", f"""
meter_id = "plug"
format = "tasmota"
topic = "{topic}"
timezone = "UTC"
"""))
    t0 = int(time.time()) - 600

    def count() -> int:
        return node.count("plug")

    try:
        node.start_subscribed()
        for i, how in enumerate((signal.SIGTERM, signal.SIGKILL, None)):
            publish_all(publisher, [(topic, _tasmota(t0 + 60 * i, 1.0 + 0.01 * i))])
            node.wait_until(lambda n=i + 1: count() == n, timeout=20,   # type: ignore[misc]
                            what=f"reading {i + 1} (after {i} restarts)")
            if how is not None:
                node.stop(how)
                node.start()
        assert node.stop() == 0
    finally:
        node.kill_all()
    assert [r[0] for r in node.query("SELECT export_wh FROM readings ORDER BY read_at_ms")] == \
        [None, None, None]
    health = node.query("SELECT rejections FROM meter_health WHERE meter_id = 'plug'")
    assert "no_data" not in json.loads(str(health[0][0]))
    assert node.query("SELECT last_export_raw FROM meter_state") == [(None,)]
