"""Home Assistant over MQTT: each meter a device found by MQTT discovery, with its lifetime
import and export energy (kWh), its power (W), and the node's status.

Where the values come from: the meters' recorder tells its listeners of every reading it has
committed (validated: a glitch the validator refused never reaches Home Assistant, so it can never
look like a meter reset in HA's statistics). The listener only notes the latest values; this
subsystem publishes them at most every `publish_every_s`, retained, so the meter path never waits
for the broker. Energy is the continuous counter the interval builder sees (the raw counter plus
the offset of any confirmed counter reset) and is never published lower than before.

Energy sensors are `device_class: energy`, `unit_of_measurement: kWh`, `state_class: total`
without `last_reset`: HA's developer docs name that for a lifetime counter, and the Energy
dashboard accepts `total` and `total_increasing` alike (`total_increasing` would book a drop of
10 % as a new meter, which a lifetime register never does). Power is `device_class: power`,
`state_class: measurement`, W. Entity ids are proposed with `default_entity_id` (HA 2025.10
deprecated `object_id` for that and stopped reading it in 2026.4).

Availability: `<base_topic>/<node>/availability` is `online` (retained) once connected, the
broker's last will publishes `offline` when the node dies, and a clean stop says `offline`
itself. Each meter has its own `<base_topic>/<node>/<meter>/availability`, `online` while its
health says so (a good reading within `[meters] stale_after_s`); a meter's sensors need both
(`availability_mode: all`), so a meter that went quiet shows unavailable, not a stale power. HA's birth message (`<discovery_prefix>/status` = `online`) makes the node send
every discovery config and state again after a random delay, as HA's docs recommend.

paho runs its own network thread here (connect, TLS and reconnects off the event loop); the
callbacks hand over to the loop with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt

from gridnode import __version__
from gridnode.config import GridnodeConfig
from gridnode.config.publish import MqttPublishConfig
from gridnode.log import Episode, get_logger
from gridnode.meters.reading import Reading
from gridnode.store import Store, StoreError
from gridnode.store import alerts as stored_alerts

log = get_logger(__name__)

ORIGIN = {"name": "gridnode", "sw_version": __version__}
STATE_MAX = 255         # HA refuses longer states

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def slug(value: str) -> str:
    """`value` as a discovery object id part (HA allows [a-zA-Z0-9_-])."""
    return _UNSAFE.sub("_", value)


@dataclass(frozen=True, slots=True)
class Quantity:
    key: str                # in topics and unique ids
    name: str
    device_class: str
    unit: str
    state_class: str
    precision: int
    monotonic: bool         # never published lower than before


QUANTITIES = {q.key: q for q in (
    Quantity("import", "Import energy", "energy", "kWh", "total", 3, True),
    Quantity("export", "Export energy", "energy", "kWh", "total", 3, True),
    Quantity("power", "Power", "power", "W", "measurement", 0, False),
)}


@dataclass(slots=True)
class _Meter:
    meter_id: str
    model: str
    source: str
    values: dict[str, float] = field(default_factory=dict)      # latest noted
    published: dict[str, float] = field(default_factory=dict)   # latest sent
    announced: set[str] = field(default_factory=set)            # discovery sent this connection
    health: Any = None                  # the recorder's MeterHealth (online, stale, offline)
    available: str | None = None        # latest availability sent


def lifetime_values(r: Reading, state: dict[str, Any]) -> dict[str, float]:
    """The values a reading gives HA: energies in kWh on the continuous counters, power in W."""
    out: dict[str, float] = {}
    if r.import_wh is not None:
        out["import"] = round((r.import_wh + float(state.get("import_offset") or 0)) / 1000, 6)
    if r.export_wh is not None:
        out["export"] = round((r.export_wh + float(state.get("export_offset") or 0)) / 1000, 6)
    if r.power_w is not None:
        out["power"] = round(r.power_w, 1)
    return out


class HomeAssistant:
    """The `[publish.mqtt]` subsystem."""

    name = "homeassistant"

    def __init__(self, cfg: MqttPublishConfig, node_id: str, store: Store,
                 subsystems: Sequence[Any]) -> None:
        self.cfg = cfg
        self.node = slug(node_id)
        self.node_id = node_id
        self.store = store
        self.subsystems = subsystems
        self.base = f"{cfg.base_topic}/{self.node}"
        self.availability_topic = f"{self.base}/availability"
        self.birth_topic = f"{cfg.discovery_prefix}/status"
        self.meters: dict[str, _Meter] = {}
        self.connected = asyncio.Event()
        self.published = 0              # state messages sent
        self.announcements = 0          # rounds of discovery sent
        self._status: str | None = None
        self._announce = False
        self._wake = asyncio.Event()
        self._progress = time.monotonic()
        self._waiting = False
        self._client: mqtt.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._down = Episode(log, "home assistant broker unreachable; states wait",
                             "home assistant broker reachable again")

    @classmethod
    def from_config(cls, config: GridnodeConfig, store: Store,
                    subsystems: Sequence[Any]) -> HomeAssistant:
        return cls(config.publish.mqtt, config.node.id, store, subsystems)

    def progress(self) -> float:
        """Progressing while it waits for the next round; a round that never ends is a stall."""
        if self._waiting:
            self._progress = time.monotonic()
        return self._progress

    # -- where the values come from ---------------------------------------------------------
    def _attach(self) -> None:
        """Listen to the meters' recorder, and know its meters (model = profile or format)."""
        for s in self.subsystems:
            recorder = getattr(s, "recorder", None)
            if recorder is None:
                continue
            for entry in recorder.meters.values():
                self.meters.setdefault(entry.meter_id, _Meter(
                    entry.meter_id, entry.profile, entry.source, health=entry.health))
            recorder.listeners.append(self.note)

    def note(self, r: Reading, state: dict[str, Any]) -> None:
        """A committed reading: keep its values (the recorder's writer calls this; no I/O)."""
        m = self.meters.get(r.meter_id)
        if m is None:
            m = self.meters[r.meter_id] = _Meter(r.meter_id, "", "")
        m.values.update(lifetime_values(r, state))

    # -- topics and payloads ----------------------------------------------------------------
    def object_id(self, meter_id: str, quantity: str) -> str:
        return f"{self.node}_{slug(meter_id)}_{quantity}"

    def config_topic(self, object_id: str) -> str:
        return f"{self.cfg.discovery_prefix}/sensor/{object_id}/config"

    def state_topic(self, meter_id: str, quantity: str) -> str:
        return f"{self.base}/{slug(meter_id)}/{quantity}"

    def meter_availability_topic(self, meter_id: str) -> str:
        return f"{self.base}/{slug(meter_id)}/availability"

    def _availability(self, meter_id: str | None = None) -> dict[str, Any]:
        topics = [self.availability_topic]
        if meter_id is not None:
            topics.append(self.meter_availability_topic(meter_id))
        return {"availability": [{"topic": t, "payload_available": "online",
                                  "payload_not_available": "offline"} for t in topics],
                "availability_mode": "all"}

    def _node_device(self) -> dict[str, Any]:
        return {"identifiers": [f"gridnode_{self.node}"], "name": f"gridnode {self.node_id}",
                "manufacturer": "GridTokenX", "model": "gridnode", "sw_version": __version__}

    def meter_config(self, m: _Meter, q: Quantity) -> dict[str, Any]:
        """The discovery config of one quantity of one meter (HA's long key names)."""
        oid = self.object_id(m.meter_id, q.key)
        return {
            "name": q.name, "unique_id": f"gridnode_{oid}", "default_entity_id": f"sensor.{oid}",
            "state_topic": self.state_topic(m.meter_id, q.key),
            "device_class": q.device_class, "unit_of_measurement": q.unit,
            "state_class": q.state_class, "suggested_display_precision": q.precision,
            **self._availability(m.meter_id),
            "device": {"identifiers": [f"gridnode_{self.node}_{slug(m.meter_id)}"],
                       "name": f"Meter {m.meter_id}", "model": m.model or "meter",
                       "manufacturer": f"gridnode ({m.source or 'meter'})",
                       "via_device": f"gridnode_{self.node}"},
            "origin": ORIGIN}

    def status_config(self) -> dict[str, Any]:
        oid = f"{self.node}_status"
        return {"name": "Status", "unique_id": f"gridnode_{oid}",
                "default_entity_id": f"sensor.{oid}",
                "state_topic": f"{self.base}/status", "icon": "mdi:transmission-tower",
                "json_attributes_topic": f"{self.base}/status/attributes",
                **self._availability(), "device": self._node_device(), "origin": ORIGIN}

    # -- publishing (on the loop thread; paho's publish is thread-safe) ----------------------
    def _publish(self, topic: str, payload: str, qos: int = 0) -> None:
        client = self._client
        if client is not None:
            client.publish(topic, payload, qos=qos, retain=True)

    def _announce_all(self) -> None:
        for m in self.meters.values():
            m.announced.clear()
        self._publish(self.config_topic(f"{self.node}_status"),
                      json.dumps(self.status_config()), qos=1)
        self._announce_meters()
        for m in self.meters.values():      # states after their configs, even unchanged ones
            m.published.clear()
            m.available = None
        self._status = None
        self.announcements += 1

    def _announce_meters(self) -> None:
        """Discovery for every quantity a meter has shown (import from the start)."""
        for m in self.meters.values():
            for key in ({"import"} | set(m.values)) - m.announced:
                q = QUANTITIES[key]
                self._publish(self.config_topic(self.object_id(m.meter_id, key)),
                              json.dumps(self.meter_config(m, q)), qos=1)
                m.announced.add(key)

    def _publish_states(self) -> None:
        self._announce_meters()
        now_ms = int(time.time() * 1000)
        for m in self.meters.values():
            available = ("online" if m.health is not None and m.health.state(now_ms) == "online"
                         else "offline")
            if available != m.available:
                self._publish(self.meter_availability_topic(m.meter_id), available, qos=1)
                m.available = available
            for key, value in m.values.items():
                before = m.published.get(key)
                if before == value:
                    continue
                if QUANTITIES[key].monotonic and before is not None and value < before:
                    continue    # never a drop: HA would book it as a meter change
                self._publish(self.state_topic(m.meter_id, key), _number(value))
                m.published[key] = value
                self.published += 1

    async def _publish_status(self) -> None:
        try:
            raised = [a for a in await stored_alerts.all_alerts(self.store) if a.raised]
        except StoreError as exc:
            log.debug("node status not read", error=str(exc))
            return
        state = "ok" if not raised else ("alert: " + ", ".join(a.name for a in raised))
        if state == self._status:
            return
        self._publish(f"{self.base}/status/attributes", json.dumps(
            {"alerts": [{"name": a.name, "detail": a.detail} for a in raised]}))
        self._publish(f"{self.base}/status", state[:STATE_MAX])
        self._status = state

    # -- the connection -----------------------------------------------------------------------
    def _make_client(self, loop: asyncio.AbstractEventLoop) -> mqtt.Client:
        c = self.cfg
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                             client_id=c.client_id or f"gridnode-{self.node}-ha",
                             protocol=mqtt.MQTTv311, clean_session=True)
        client.connect_timeout = 10.0
        client.reconnect_delay_set(1, max(1, int(c.reconnect_max_s)))
        if c.username:
            client.username_pw_set(c.username, c.password)
        if c.tls:
            client.tls_set(ca_certs=str(c.ca_file) if c.ca_file else None,
                           certfile=str(c.cert_file) if c.cert_file else None,
                           keyfile=str(c.key_file) if c.key_file else None,
                           cert_reqs=ssl.CERT_REQUIRED)
        client.will_set(self.availability_topic, "offline", qos=1, retain=True)

        def on_connect(cl: mqtt.Client, ud: Any, flags: Any, reason: mqtt.ReasonCode,
                       props: Any) -> None:
            if reason.is_failure:
                loop.call_soon_threadsafe(self._lost, f"refused: {reason}")
                return
            cl.publish(self.availability_topic, "online", qos=1, retain=True)
            cl.subscribe(self.birth_topic, qos=1)
            loop.call_soon_threadsafe(self._on_connected)

        def on_disconnect(cl: mqtt.Client, ud: Any, flags: Any, reason: mqtt.ReasonCode,
                          props: Any) -> None:
            loop.call_soon_threadsafe(self._lost, str(reason))

        def on_message(cl: mqtt.Client, ud: Any, msg: mqtt.MQTTMessage) -> None:
            if msg.topic == self.birth_topic and bytes(msg.payload) == b"online":
                loop.call_soon_threadsafe(self._on_birth)

        def on_connect_fail(cl: mqtt.Client, ud: Any) -> None:
            loop.call_soon_threadsafe(self._lost, "cannot connect")

        client.on_connect, client.on_disconnect = on_connect, on_disconnect
        client.on_connect_fail, client.on_message = on_connect_fail, on_message
        return client

    def _on_connected(self) -> None:
        self._down.cleared()
        log.info("home assistant mqtt connected", host=self.cfg.host, port=self.cfg.port,
                 availability=self.availability_topic)
        self.connected.set()
        self._request_announce()

    def _lost(self, reason: str) -> None:
        self.connected.clear()
        self._down.occurred(host=self.cfg.host, port=self.cfg.port, reason=reason)

    def _on_birth(self) -> None:
        delay = random.uniform(0, self.cfg.rediscover_delay_max_s)
        log.info("home assistant came online; discovery sent again", in_s=round(delay, 2))
        assert self._loop is not None
        self._loop.call_later(delay, self._request_announce)

    def _request_announce(self) -> None:
        self._announce = True
        self._wake.set()

    async def run(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self._attach()
        client = self._client = self._make_client(loop)
        client.connect_async(self.cfg.host, self.cfg.port, self.cfg.keepalive_s)
        client.loop_start()
        try:
            while True:
                self._progress = time.monotonic()
                self._waiting = True
                try:
                    async with asyncio.timeout(self.cfg.publish_every_s):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                self._waiting = False
                self._wake.clear()
                if not self.connected.is_set():
                    continue
                if self._announce:
                    self._announce = False
                    self._announce_all()
                await self._publish_status()
                self._publish_states()
        finally:
            await asyncio.shield(asyncio.to_thread(self._close, client))

    def _close(self, client: mqtt.Client) -> None:
        """Say offline (a clean disconnect does not fire the last will), then disconnect."""
        if self.connected.is_set():
            info = client.publish(self.availability_topic, "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=2.0)
            except (RuntimeError, ValueError):
                pass
        client.disconnect()
        client.loop_stop()


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)
