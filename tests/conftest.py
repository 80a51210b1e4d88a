"""Fixtures shared by the whole suite: a free port and the real Mosquitto broker.

Fixtures that start real servers (pymodbus, the localnet) live next to the tests that need them
and take their ports from tests/net.py (`pick_free_port`, or the `free_port` fixture here) so
parallel runs never collide. Tests import helpers from modules such as tests/net.py and
tests/configs.py, never from a conftest.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.net import pick_free_port, port_open

MQTT_HOST = "127.0.0.1"
MQTT_PORT = int(os.environ.get("GRIDNODE_TEST_MQTT_PORT", "1883"))


@pytest.fixture
def free_port() -> int:
    return pick_free_port()


@pytest.fixture(scope="session")
def mqtt_broker() -> Iterator[tuple[str, int]]:
    """The real Mosquitto broker at 127.0.0.1:1883, started here if nothing listens there."""
    proc = None
    if not port_open(MQTT_HOST, MQTT_PORT):
        exe = shutil.which("mosquitto")
        if exe is None:
            pytest.skip("mosquitto is not installed (.ci/run installs it)")
        proc = subprocess.Popen([exe, "-p", str(MQTT_PORT)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while not port_open(MQTT_HOST, MQTT_PORT):
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"mosquitto did not start on port {MQTT_PORT}")
            time.sleep(0.05)
    yield MQTT_HOST, MQTT_PORT
    if proc is not None:
        proc.terminate()
        proc.wait(timeout=5)
