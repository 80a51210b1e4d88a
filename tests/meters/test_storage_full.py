"""A full disk is a state: MQTT readings wait unacknowledged (or come again from the broker) and
are all stored once space returns; the daemon keeps running and says so once each way."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from gridnode.meters.mqtt import MqttIngest, MqttMeter, MqttSettings
from gridnode.meters.payloads import generic_format
from gridnode.meters.reading import Reading
from gridnode.meters.recorder import Recorder
from gridnode.store import Store
from gridnode.testing import AcceleratedClock
from tests.meters.conftest import entry, running
from tests.meters.test_daemon_mqtt import (  # noqa: F401 - publisher is a fixture
    Node,
    _mqtt_config,
    generic_meter,
    publish_all,
    publisher,
)
from tests.store.full import fill_up, make_room

FIELDS = {"import_wh": ("e", "Wh")}


def _messages(topic: str, t0_ms: int, first: int, n: int) -> list[tuple[str, bytes]]:
    return [(topic, json.dumps({"e": 10_000 + i, "ts": t0_ms + i * 3000}).encode())
            for i in range(first, first + n)]


async def _wait(cond, limit: float, what: str) -> None:  # noqa: ANN001 - a predicate
    end = asyncio.get_running_loop().time() + limit
    while not cond():
        assert asyncio.get_running_loop().time() < end, f"timed out: {what}"
        await asyncio.sleep(0.05)


async def test_mqtt_readings_survive_a_full_disk(store: Store, mqtt_broker: tuple[str, int],
                                                publisher: mqtt.Client,  # noqa: F811
                                                caplog: pytest.LogCaptureFixture) -> None:
    """While the disk is full nothing is acknowledged; what the recorder had to refuse comes
    again from the broker, in order, after a reconnect; in the end every reading is stored."""
    caplog.set_level(logging.INFO)
    host, port = mqtt_broker
    tag = uuid.uuid4().hex[:8]
    topic = f"full-{tag}/meter"
    clock = AcceleratedClock(time.time(), factor=1)
    rec = Recorder(store, [entry("m", "mqtt", "generic", rated_power_w=50_000), entry("bus")],
                   clock=clock, health_flush_s=0.2, queue_max=200, storage_retry_max_s=1.0)
    ingest = MqttIngest(MqttSettings(host, port, client_id=f"gridnode-full-{tag}",
                                     reconnect_min_s=0.1, reconnect_max_s=1.0, receive_max=50),
                        [MqttMeter("m", generic_format("{topic}", FIELDS, "ts", "unix_ms"),
                                   topic)], rec)
    t0 = (int(time.time()) - 7200) * 1000
    async with running(rec, ingest.run()) as tasks:
        await asyncio.wait_for(ingest.connected.wait(), 10)
        await asyncio.sleep(0.3)
        await asyncio.to_thread(publish_all, publisher, _messages(topic, t0, 0, 5))
        await _wait(lambda: rec.stored_readings == 5, 10, "the first readings")
        await fill_up(store)
        # a Modbus meter's readings fill the disk, then the write queue, up to a refusal
        t = time.time() - 3600
        while rec.refused == 0:
            t += 10
            rec.submit(Reading("bus", int(t * 1000), int(t * 1000), 1000 + t / 100, None))
            await asyncio.sleep(0.01 if not rec.storage_full.active else 0)
        await asyncio.to_thread(publish_all, publisher, _messages(topic, t0, 5, 400))
        await _wait(lambda: ingest.unstored > 0, 20, "MQTT messages refused")
        await asyncio.sleep(2.0)       # full for a while: retried, never fatal
        assert not any(t.done() for t in tasks)
        assert ingest.acked == 5       # nothing acknowledged that was not stored
        await make_room(store)
        await _wait(lambda: ingest.acked >= 405, 60, "every MQTT reading")
        await asyncio.sleep(0.5)
    rows = await store.fetchall("SELECT import_wh FROM readings WHERE meter_id = 'm' "
                                "ORDER BY read_at_ms")
    assert [r["import_wh"] for r in rows] == [10_000.0 + i for i in range(405)]
    lines = [r.getMessage() for r in caplog.records if r.name == "gridnode.meters"]
    assert sum("storage full" in m for m in lines) == 1
    assert sum("storage writable again" in m for m in lines) == 1
    assert any("mqtt reconnecting to receive again" in m for m in lines)


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs: a really full filesystem (needs the right to mount; skipped without)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip() or res.returncode})")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(directory: Path) -> Path:
    """Take every free byte of the filesystem with one file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def test_the_daemon_waits_out_a_really_full_disk(small_tmpfs: Path, tmp_path: Path,
                                                 mqtt_broker: tuple[str, int],
                                                 publisher: mqtt.Client) -> None:  # noqa: F811
    host, port = mqtt_broker
    tag = uuid.uuid4().hex[:8]
    topic = f"tmpfs-{tag}/meter"
    config = _mqtt_config(small_tmpfs, host, port, f"gridnode-tmpfs-{tag}", generic_meter(topic))
    config += "\n[storage]\nmin_free_mb = 0   # the recorder's own full-disk path, unguarded\n"
    node = Node(tmp_path, config)
    node.db = small_tmpfs / "state" / "gridnode.db"
    t0 = (int(time.time()) - 7200) * 1000

    def stored() -> int:
        return node.count("m")

    try:
        node.start_subscribed()
        publish_all(publisher, _messages(topic, t0, 0, 5))
        node.wait_until(lambda: stored() == 5, what="the first readings")
        filler = _fill(small_tmpfs)
        publish_all(publisher, _messages(topic, t0, 5, 600))
        node.wait_log("storage full", timeout=30)
        time.sleep(3.0)
        assert node.proc is not None and node.proc.poll() is None, node.log()
        os.unlink(filler)
        node.wait_until(lambda: stored() == 605, timeout=60, what="every reading")
        assert node.stop(signal.SIGTERM) == 0
    finally:
        node.kill_all()
    log = node.log()
    assert log.count('event="storage full') == 1, log
    assert log.count('event="storage writable again') == 1, log
    assert "Traceback" not in log
