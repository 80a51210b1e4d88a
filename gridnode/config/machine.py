"""What a valid configuration needs from the machine it runs on: directories, files, names.

``parse_config`` judges a file by itself; these checks look at the machine, so that what ``run``
would fail on is found by ``gridnode check-config`` first, named by its key: a data directory that
is a file or cannot be created, TLS files that are missing or not PEM, two bus entries whose hosts
resolve to one address or whose serial paths are links to one device. Key files are checked where
they are loaded (``gridnode.keys.load_configured_keypairs``), IDL and profile directories where
the subsystems load them.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time
from collections.abc import Callable

from gridnode.config import ConfigIssue, GridnodeConfig, same_bus_issue
from gridnode.config.meters import MqttBroker, SerialBus, TcpBus

__all__ = ["check_machine"]

RESOLVE_TIMEOUT_S = 3.0


def check_machine(cfg: GridnodeConfig, *, resolve: bool) -> list[ConfigIssue]:
    """Every problem the machine has with `cfg`. ``resolve`` also looks the Modbus TCP hosts up
    (``check-config`` does; ``run`` does not, a lookup can hang at boot while DNS is down)."""
    return [*_data_dir(cfg), *_tls_files(cfg), *_same_physical_bus(cfg, resolve)]


def _data_dir(cfg: GridnodeConfig) -> list[ConfigIssue]:
    path = cfg.node.data_dir
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    why = None
    if existing == path and not path.is_dir():
        why = "it is a file"
    elif existing != path and not existing.is_dir():
        why = f"{existing} is a file"
    elif not os.access(existing, os.W_OK | os.X_OK):
        why = f"{existing} is not writable by this user"
    if why is None:
        return []
    return [ConfigIssue(cfg.source, "node.data_dir", repr(str(path)),
                        f"a directory gridnode can create or write ({why})")]


def _tls_files(cfg: GridnodeConfig) -> list[ConfigIssue]:
    """The files paho's tls_set will load, loaded the same way now, for each MQTT broker."""
    brokers: list[tuple[str, MqttBroker | None]] = [("meters.mqtt", cfg.meters.mqtt)]
    if cfg.publish.mqtt.enabled:
        brokers.append(("publish.mqtt", cfg.publish.mqtt))
    return [i for where, mqtt in brokers if mqtt is not None and mqtt.tls
            for i in _broker_tls(cfg.source, where, mqtt)]


def _broker_tls(source: str, where: str, mqtt: MqttBroker) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    if mqtt.ca_file is not None:
        why = _unusable(lambda: ssl.create_default_context(cafile=str(mqtt.ca_file)))
        if why:
            issues.append(ConfigIssue(source, f"{where}.ca_file", repr(str(mqtt.ca_file)),
                                      f"a PEM file of CA certificates ({why})"))
    if mqtt.cert_file is not None:
        cert, key = str(mqtt.cert_file), str(mqtt.key_file) if mqtt.key_file else None
        # An encrypted key would make OpenSSL prompt on the terminal: answer with no password.
        why = _unusable(lambda: ssl.create_default_context().load_cert_chain(
            cert, key, password=lambda: b""))
        if why:
            issues.append(ConfigIssue(
                source, f"{where}.cert_file", repr(cert),
                "a PEM client certificate with its unencrypted private key "
                f"(in this file or in key_file) ({why})"))
    return issues


def _unusable(load: Callable[[], object]) -> str | None:
    try:
        load()
    except OSError as exc:          # ssl.SSLError is an OSError too
        return exc.strerror or str(exc)
    return None


def _same_physical_bus(cfg: GridnodeConfig, resolve: bool) -> list[ConfigIssue]:
    """Bus entries that look different but reach one device: two names of one serial device,
    two host names of one address (parse_config already compares what is written)."""
    buses = cfg.meters.buses
    ids: dict[int, set[str]] = {}
    for b, bus in enumerate(buses):
        if isinstance(bus, SerialBus):
            ids[b] = {os.path.realpath(bus.port)}
    if resolve:
        tcp = {b: bus for b, bus in enumerate(buses) if isinstance(bus, TcpBus)}
        ids.update(_resolve(tcp))
    issues: list[ConfigIssue] = []
    for b in sorted(ids):
        first = next((a for a in sorted(ids) if a < b and ids[a] & ids[b]), None)
        if first is not None and buses[first].identity != buses[b].identity:
            issues.append(same_bus_issue(cfg.source, cfg, b, first))
    return issues


def _resolve(buses: dict[int, TcpBus]) -> dict[int, set[str]]:
    """(address, port) strings per bus, looked up in parallel for at most RESOLVE_TIMEOUT_S; a
    host that does not resolve (in time) compares by its name."""
    out: dict[int, set[str]] = {b: {bus.identity} for b, bus in buses.items()}

    def lookup(b: int, bus: TcpBus) -> None:
        try:
            infos = socket.getaddrinfo(bus.host, bus.port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            return
        out[b] = {f"{info[4][0]}:{bus.port}" for info in infos}

    # Daemon threads: a lookup stuck on a dead DNS server must not hold the process at exit.
    threads = [threading.Thread(target=lookup, args=item, daemon=True) for item in buses.items()]
    for t in threads:
        t.start()
    deadline = time.monotonic() + RESOLVE_TIMEOUT_S
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return dict(out)
