"""TLS and credentials from the configuration, against a real Mosquitto started here on a free
port with a certificate authority made at test time (openssl) and a password file."""

from __future__ import annotations

import asyncio
import getpass
import json
import shutil
import subprocess
import time

import paho.mqtt.client as mqtt
import pytest

from gridnode.meters.mqtt import MqttIngest, MqttMeter, MqttSettings
from gridnode.meters.payloads import FORMATS
from gridnode.testing import AcceleratedClock
from tests.meters.conftest import entry, make_recorder, running
from tests.meters.test_mqtt_ingest import wait_for
from tests.net import port_open

pytestmark = pytest.mark.skipif(
    not (shutil.which("openssl") and shutil.which("mosquitto") and shutil.which("mosquitto_passwd")),
    reason="openssl and mosquitto are needed")


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


@pytest.fixture
def tls_broker(tmp_path, free_port):
    d = tmp_path
    _run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=gridnode-test-ca", "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"))
    _run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
         "-keyout", str(d / "server.key"), "-out", str(d / "server.csr"))
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    _run("openssl", "x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.pem"),
         "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "1", "-extfile",
         str(d / "ext.cnf"), "-out", str(d / "server.pem"))
    (d / "passwd").write_text("")
    _run("mosquitto_passwd", "-b", str(d / "passwd"), "gridnode", "s3cret-at-test-time")
    # `user`: when run as root, mosquitto would otherwise switch to a user that cannot read tmp_path
    (d / "mosquitto.conf").write_text(f"""
user {getpass.getuser()}
listener {free_port} 127.0.0.1
cafile {d / 'ca.pem'}
certfile {d / 'server.pem'}
keyfile {d / 'server.key'}
allow_anonymous false
password_file {d / 'passwd'}
""")
    proc = subprocess.Popen(["mosquitto", "-c", str(d / "mosquitto.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while not port_open("127.0.0.1", free_port):
        assert time.monotonic() < deadline and proc.poll() is None, "mosquitto did not start"
        time.sleep(0.05)
    yield free_port, d / "ca.pem"
    proc.terminate()
    proc.wait(timeout=5)


async def test_tls_with_credentials(store, tls_broker) -> None:
    port, ca = tls_broker
    clock = AcceleratedClock(1_780_000_000, factor=1)
    rec = make_recorder(store, [entry("t", "mqtt", "tasmota")], clock)
    meters = [MqttMeter("t", FORMATS["tasmota"], "tele/t/SENSOR")]
    wrong = MqttIngest(MqttSettings("127.0.0.1", port, client_id="gridnode-wrong", tls=True,
                                    ca_file=str(ca), username="gridnode", password="nope",
                                    reconnect_min_s=0.1, reconnect_max_s=0.2), meters, rec)
    right = MqttIngest(MqttSettings("127.0.0.1", port, client_id="gridnode-tls", tls=True,
                                    ca_file=str(ca), username="gridnode",
                                    password="s3cret-at-test-time"), meters, rec)
    async with running(rec, wrong.run(), right.run()):
        await asyncio.wait_for(right.connected.wait(), 10)
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        pub.tls_set(ca_certs=str(ca))
        pub.username_pw_set("gridnode", "s3cret-at-test-time")
        pub.connect("127.0.0.1", port)
        pub.loop_start()
        doc = {"Time": "2026-05-28T20:00:00", "ENERGY": {"Total": 1.5}}
        pub.publish("tele/t/SENSOR", json.dumps(doc), qos=1).wait_for_publish(5)
        await wait_for(lambda: rec.meters["t"].health.accepted == 1)
        pub.loop_stop()
        pub.disconnect()
        assert not wrong.connected.is_set()     # refused: bad password
    assert rec.meters["t"].health.accepted == 1
