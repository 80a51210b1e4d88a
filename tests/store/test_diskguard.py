"""The disk guard with the real daemon on a small tmpfs: below [storage] min_free_mb raw readings
are held back while intervals are still written, the `disk_guard` alert is raised, and both come
back by themselves when the space does. When the disk then fills up for good the readings wait
unacknowledged; the daemon stays up, every reading's energy ends in the intervals once space
returns, and the database checks ok."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.meters.test_daemon_mqtt import (  # noqa: F401 - publisher is a fixture
    REPO,
    Node,
    _mqtt_config,
    generic_meter,
    publish_all,
    publisher,
)

MB = 1024 * 1024


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 24 MiB tmpfs (needs the right to mount; skipped without)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip() or res.returncode})")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _leave_free(directory: Path, free_bytes: int, name: str = "filler") -> Path:
    """One file that takes all but `free_bytes` of the filesystem (0: every byte)."""
    filler = directory / name
    take = shutil.disk_usage(directory).free - free_bytes
    assert take > 0
    with open(filler, "wb", buffering=0) as f:
        chunk = b"\0" * MB
        try:
            while take > 0:
                take -= f.write(chunk[:min(len(chunk), take)])
        except OSError:         # full before the count: what the test wants anyway
            pass
    return filler


def _messages(topic: str, t0_ms: int, first: int, n: int) -> list[tuple[str, bytes]]:
    """A reading every 60 s of meter time, 10 Wh each: 15 per 15-minute interval."""
    return [(topic, json.dumps({"e": 100_000 + 10 * i, "ts": t0_ms + i * 60_000}).encode())
            for i in range(first, first + n)]


def test_raw_readings_pause_below_min_free_and_resume(tmpfs: Path, tmp_path: Path,
                                                       mqtt_broker: tuple[str, int],
                                                       publisher: mqtt.Client) -> None:  # noqa: F811
    host, port = mqtt_broker
    tag = uuid.uuid4().hex[:8]
    topic = f"guard-{tag}/meter"
    config = _mqtt_config(tmpfs, host, port, f"gridnode-guard-{tag}", generic_meter(topic))
    config += ("\n[storage]\nmin_free_mb = 6\nresume_margin_mb = 1\ncheck_every_s = 0.2\n"
               "\n[alerts]\nevaluate_every_s = 3600\n")
    node = Node(tmp_path, config)
    node.db = tmpfs / "state" / "gridnode.db"
    t0 = (int(time.time()) // 900 * 900 - 86400) * 1000     # a day ago, on a boundary

    def raw() -> int:
        return node.count("m")

    def intervals() -> int:
        rows = node.query("SELECT count(*) FROM intervals WHERE meter_id = 'm'")
        return int(str(rows[0][0])) if rows else 0

    def alert() -> str | None:
        rows = node.query("SELECT state FROM alerts WHERE name = 'disk_guard'")
        return str(rows[0][0]) if rows else None

    try:
        node.start_subscribed()
        publish_all(publisher, _messages(topic, t0, 0, 40))
        node.wait_until(lambda: raw() == 40, what="raw readings with space to spare")
        before_intervals = intervals()
        assert before_intervals == 2

        filler = _leave_free(tmpfs, 3 * MB)
        node.wait_log("disk guard: raw readings paused")
        node.wait_until(lambda: alert() == "raised", what="the disk_guard alert")
        publish_all(publisher, _messages(topic, t0, 40, 60))     # 4 more intervals close
        node.wait_until(lambda: intervals() == before_intervals + 4,
                        what="intervals while raw readings are held back")
        assert raw() == 40                 # not one raw row while short of space
        assert node.proc is not None and node.proc.poll() is None

        # then the disk fills up for good: the readings wait (unacknowledged), nothing breaks
        full = _leave_free(tmpfs, 0, "full")
        publish_all(publisher, _messages(topic, t0, 100, 30))    # 2 more intervals
        node.wait_log("storage full", timeout=30)
        time.sleep(2.0)
        assert node.proc is not None and node.proc.poll() is None, node.log()

        os.unlink(full)
        os.unlink(filler)
        node.wait_log("disk guard: raw readings resumed")
        node.wait_until(lambda: alert() == "cleared", what="the alert cleared")
        node.wait_until(lambda: intervals() == before_intervals + 6,
                        what="the intervals of what waited for space")
        publish_all(publisher, _messages(topic, t0, 130, 20))
        node.wait_until(lambda: raw() == 60, what="raw readings kept again")
        assert node.stop(signal.SIGTERM) == 0
    finally:
        node.kill_all()
    # the intervals cover every reading's energy, raw rows or not: 10 Wh a minute throughout
    rows = node.query("SELECT import_wh, interval_start FROM intervals WHERE meter_id = 'm' "
                      "ORDER BY interval_start")
    assert [r[0] for r in rows] == [150] * len(rows) and len(rows) == 9
    log = node.log()
    assert log.count("disk guard: raw readings paused") == 1, log
    assert log.count("disk guard: raw readings resumed") == 1, log
    assert log.count('event="storage full') == 1, log
    assert log.count('event="storage writable again') == 1, log
    assert "Traceback" not in log
    check = subprocess.run([sys.executable, "-m", "gridnode", "db", "check", "--db",
                            str(node.db)], cwd=REPO, capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout.strip().endswith(": ok"), check
