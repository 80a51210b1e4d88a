"""MQTT ingestion with paho-mqtt 2 on the asyncio loop.

paho's socket is driven by the event loop (add_reader/add_writer and a small loop_misc task), so
messages are handled on the loop thread without a paho thread. The TCP/TLS connect, which can
block, runs in an executor. QoS 1 subscriptions on a persistent session (MQTT 5, clean_start
False, a stable client id and a session expiry) let the broker keep messages while gridnode is
away; a lost connection is retried with exponential backoff. Every message is parsed by the
format table in `payloads`, and a payload that cannot be used is counted and logged once per
burst, never stored and never fatal.

Acknowledgement is manual: a message is acknowledged to the broker only after the recorder has
committed what it carried (the reading, or the count of its rejection). A message that was not
stored is left unacknowledged, and so is every later message on that connection (handled now, they
would overtake it and it would come back out of order); the ingest then reconnects (with backoff,
once the recorder accepts again) so the broker sends them all again, in order. Acks owed on a
connection that has gone are dropped, since the broker resends those messages on the next one.
While the node cannot store (a full disk), the broker holds what it has not acknowledged: its
queue must be sized for that (mosquitto drops past `max_queued_messages`, 1000 by default).
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gridnode.meters.health import log
from gridnode.meters.payloads import PayloadError, PayloadFormat, TopicFormat, parse
from gridnode.meters.recorder import Ack, Recorder
from gridnode.meters.validation import implausible_values

if TYPE_CHECKING:
    from paho.mqtt.client import SocketLike

SESSION_EXPIRY_S = 7 * 86400
RECEIVE_MAX = 100


@dataclass(frozen=True, slots=True)
class MqttSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "gridnode"
    keepalive_s: int = 60
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    username: str | None = None
    password: str | None = None
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 60.0
    session_expiry_s: int = SESSION_EXPIRY_S
    # Unacknowledged messages the broker may send at once (MQTT 5 Receive Maximum): what waits
    # for a commit, kept well below the recorder's queue bound.
    receive_max: int = RECEIVE_MAX


@dataclass(slots=True)
class MqttMeter:
    meter_id: str
    format: PayloadFormat
    topic: str
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    # Latest instantaneous values from topics without counters (Shelly em:0).
    aux: dict[str, float] = field(default_factory=dict)


class MqttIngest:
    def __init__(self, settings: MqttSettings, meters: list[MqttMeter], recorder: Recorder) -> None:
        self.settings = settings
        self.recorder = recorder
        self.routes: dict[str, tuple[MqttMeter, TopicFormat]] = {}
        for m in meters:
            for tf in m.format.topics:
                self.routes[tf.topic.format(topic=m.topic)] = (m, tf)
        self.progress_at = time.monotonic()
        self.messages = 0
        self.acked = 0
        self.unstored = 0           # messages left for the broker to send again
        self.connected = asyncio.Event()
        self._client: mqtt.Client | None = None
        self._halted: mqtt.Client | None = None     # the connection that stopped handing over

    # -- message handling (also used directly by tests and the benchmark) --------------------
    def handle(self, topic: str, payload: bytes, ack: Ack | None = None) -> bool:
        """Parse one message and pass it on; True when a reading was accepted.

        `ack` is told once, after the commit, whether the message is durable (see Recorder).
        """
        self.messages += 1
        route = self.routes.get(topic)
        if route is None:
            route = next((r for sub, r in self.routes.items()
                          if mqtt.topic_matches_sub(sub, topic)), None)
            if route is None:
                self.recorder.acknowledge(ack)
                return False
        meter, tf = route
        received_ms = int(self.recorder.clock.time() * 1000)
        try:
            parsed = parse(tf, payload, meter.meter_id, meter.tz, received_ms)
        except PayloadError as e:
            self.recorder.reject(meter.meter_id, e.reason, f"{topic}: {e}", ack)
            return False
        r = parsed.reading
        if not parsed.counters:
            entry = self.recorder.meters.get(meter.meter_id)
            bad = implausible_values(r, entry.limits) if entry is not None else {}
            if bad:   # rejected: nothing of it may reach a later reading
                self.recorder.reject(meter.meter_id, "implausible_value",
                                     f"{topic}: {'; '.join(bad.values())}", ack)
                return False
            meter.aux.update({k: v for k, v in (("power_w", r.power_w), ("voltage_v", r.voltage_v),
                                                ("current_a", r.current_a)) if v is not None})
            self.recorder.acknowledge(ack)
            return False
        for k, v in meter.aux.items():
            if getattr(r, k) is None:
                setattr(r, k, v)
        self.progress_at = time.monotonic()
        return self.recorder.submit(r, delta=parsed.delta, ack=ack)

    def _acker(self, client: mqtt.Client, mid: int, qos: int) -> Ack:
        """The ack of one message: PUBACK on the connection it came on, if that still stands."""
        done = False

        def ack(ok: bool) -> None:
            nonlocal done
            if done:
                return
            done = True
            if client is not self._client:
                return          # the broker sends it again on the connection that replaced it
            if not ok:
                self.unstored += 1
                self._halted = client
            elif self.connected.is_set():
                client.ack(mid, qos)
                self.acked += 1
        return ack

    # -- connection ---------------------------------------------------------------------------
    def _make_client(self, loop: asyncio.AbstractEventLoop, lost: asyncio.Event) -> mqtt.Client:
        s = self.settings
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=s.client_id,
                        protocol=mqtt.MQTTv5, manual_ack=True)
        c.connect_timeout = 10.0
        if s.username:
            c.username_pw_set(s.username, s.password)
        if s.tls:
            c.tls_set(ca_certs=s.ca_file, certfile=s.cert_file, keyfile=s.key_file,
                      cert_reqs=ssl.CERT_REQUIRED)

        def call(fn: Callable[..., Any], sock: SocketLike, *args: Any) -> None:
            """Run a selector change on the loop thread, by fd (the socket may close first)."""
            fd = sock.fileno()
            if fd < 0 or loop.is_closed():
                return

            def apply() -> None:
                try:
                    fn(fd, *args)
                except (ValueError, KeyError, OSError):
                    pass
            loop.call_soon_threadsafe(apply)

        c.on_socket_open = lambda cl, ud, sock: call(loop.add_reader, sock, cl.loop_read)
        c.on_socket_close = lambda cl, ud, sock: call(loop.remove_reader, sock)
        c.on_socket_register_write = lambda cl, ud, sock: call(loop.add_writer, sock,
                                                               cl.loop_write)
        c.on_socket_unregister_write = lambda cl, ud, sock: call(loop.remove_writer, sock)

        def on_connect(cl: mqtt.Client, ud: Any, flags: mqtt.ConnectFlags,
                       reason: mqtt.ReasonCode, props: Properties | None) -> None:
            if reason.is_failure:
                log.warning("mqtt connect refused", reason=str(reason))
                lost.set()
                return
            if self.routes:
                cl.subscribe([(t, 1) for t in self.routes])
            log.info("mqtt connected", host=s.host, port=s.port,
                     session_present=bool(flags.session_present))
            self.connected.set()

        def on_disconnect(cl: mqtt.Client, ud: Any, flags: mqtt.DisconnectFlags,
                          reason: mqtt.ReasonCode, props: Properties | None) -> None:
            self.connected.clear()
            lost.set()

        def on_message(cl: mqtt.Client, ud: Any, msg: mqtt.MQTTMessage) -> None:
            if cl is self._halted and msg.qos > 0:
                self.unstored += 1      # after one that was not stored: comes again after it
                return
            ack = self._acker(cl, msg.mid, msg.qos) if msg.qos > 0 else None
            try:
                self.handle(msg.topic, bytes(msg.payload), ack)
            except Exception as e:  # a bug in one message's path must not stop the ingest
                log.error("mqtt message not handled", topic=msg.topic, error=repr(e))
                self.recorder.acknowledge(ack)    # handled as far as it can be: not again

        c.on_connect, c.on_disconnect, c.on_message = on_connect, on_disconnect, on_message
        return c

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        delay = self.settings.reconnect_min_s
        redeliver_delay, redelivered_at = self.settings.reconnect_min_s, 0.0
        while True:
            pause = 0.0
            lost = asyncio.Event()
            client = self._make_client(loop, lost)
            self._client = client
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.settings.session_expiry_s
            props.ReceiveMaximum = self.settings.receive_max
            try:
                await loop.run_in_executor(None, functools.partial(
                    client.connect, self.settings.host, self.settings.port,
                    self.settings.keepalive_s, clean_start=False, properties=props))
                while not lost.is_set():
                    client.loop_misc()
                    try:
                        async with asyncio.timeout(1.0):
                            await lost.wait()
                    except TimeoutError:
                        pass
                    if self.connected.is_set():
                        delay = self.settings.reconnect_min_s
                    if self.unstored and self.recorder.accepting():
                        # only a new connection makes the broker send them again
                        log.warning("mqtt reconnecting to receive again what was not stored",
                                    messages=self.unstored, in_s=redeliver_delay)
                        self.unstored = 0
                        pause, redelivered_at = redeliver_delay, loop.time()
                        redeliver_delay = min(redeliver_delay * 2, self.settings.reconnect_max_s)
                        client.disconnect()
                        break
                    if loop.time() - redelivered_at > self.settings.reconnect_max_s:
                        redeliver_delay = self.settings.reconnect_min_s
            except asyncio.CancelledError:
                client.disconnect()
                self._drop(loop, client)
                raise
            except Exception as e:
                log.warning("mqtt connection failed", host=self.settings.host,
                            port=self.settings.port, error=repr(e), retry_in_s=delay)
            self._drop(loop, client)
            self.connected.clear()
            await asyncio.sleep(max(delay, pause))
            delay = min(delay * 2, self.settings.reconnect_max_s)

    def _drop(self, loop: asyncio.AbstractEventLoop, client: mqtt.Client) -> None:
        sock = client.socket()
        if sock is None:
            return
        try:
            if sock.fileno() >= 0:
                loop.remove_reader(sock)
                loop.remove_writer(sock)
            sock.close()
        except (OSError, ValueError):
            pass
