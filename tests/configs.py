"""One builder for the configuration files the tests write.

A test states the sections it needs as Python data and `write_config` renders them as TOML; the
pieces that recur (a node on a localnet with fast timings, a Modbus bus and its meters, MQTT
meters on the test broker) come from the functions below, so a key or a timing is changed in one
place. Tests about the configuration's own text (errors, the example file) keep writing it raw.

The API is on by default on port 8080; a written configuration has it off unless the test states
its own [api] (tests.api.harness gives it a free port), so no test ever binds 8080.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simulators.chain.localnet import Localnet

# Timings that let a localnet round trip take well under a second.
FAST_RPC: dict[str, Any] = {"health_interval_s": 0.5, "blockhash_refresh_s": 0.3,
                            "blockhash_max_age_s": 1.0}
FAST_OUTBOX: dict[str, Any] = {"poll_interval_s": 0.3, "rebroadcast_interval_s": 0.5,
                               "submit_interval_s": 0.2}

API_OFF: dict[str, Any] = {"api": {"enabled": False}}

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def merge(*parts: Mapping[str, Any]) -> dict[str, Any]:
    """The parts merged left to right: tables merge key by key, anything else is replaced."""
    out: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            old = out.get(key)
            if isinstance(value, Mapping):      # copied: the parts are never changed
                out[key] = merge(old, value) if isinstance(old, Mapping) else merge(value)
            else:
                out[key] = value
    return out


def toml(sections: Mapping[str, Any]) -> str:
    """TOML text of nested mappings: a mapping is a table, a list of mappings an array of tables;
    a key whose value is None is left out (the model's default applies)."""
    lines: list[str] = []
    _table(lines, (), sections)
    return "\n".join(lines).strip() + "\n"


def write_config(path: Path, *parts: Mapping[str, Any], **sections: Any) -> Path:
    """Write the merged `parts` and keyword `sections` as TOML to `path`, with the API off
    unless they say otherwise; returns `path`."""
    path.write_text(toml(merge(API_OFF, *parts, sections)))
    return path


def localnet_node(net: Localnet, data_dir: Path, **chain: Any) -> dict[str, Any]:
    """[node], [keys], [chain] and [outbox] of a node that submits to `net` with fast timings;
    `chain` overrides keys of [chain] (``rpc={...}`` merges into [chain.rpc])."""
    return {
        "node": {"data_dir": str(data_dir)},
        "keys": {"gateway_keypair": str(net.bootstrap["keypairs"]["gateway"])},
        "chain": merge({"rpc_urls": [net.rpc_url], "ws_urls": [net.ws_url],
                        "request_timeout_s": 2, "require_registered_meters": False,
                        "rpc": FAST_RPC}, chain),
        "outbox": dict(FAST_OUTBOX),
    }


def modbus_meter(meter_id: str, unit_id: int, profile: str, rated_power_w: float = 20000,
                 **more: Any) -> dict[str, Any]:
    return {"meter_id": meter_id, "unit_id": unit_id, "profile": profile,
            "rated_power_w": rated_power_w, **more}


def tcp_bus(port: int, *meters: Mapping[str, Any], **more: Any) -> dict[str, Any]:
    """A Modbus TCP bus on loopback with its meters."""
    return {"kind": "tcp", "host": "127.0.0.1", "port": port, **more, "meters": list(meters)}


def mqtt_meter(meter_id: str, topic: str, format: str = "tasmota", rated_power_w: float = 20000,
               **more: Any) -> dict[str, Any]:
    return {"meter_id": meter_id, "format": format, "topic": topic,
            "rated_power_w": rated_power_w, **more}


def mqtt(*meters: Mapping[str, Any], **more: Any) -> dict[str, Any]:
    """[meters.mqtt] on the test broker with a client id of its own (two runs never clash)."""
    return {"host": "127.0.0.1", "port": 1883, "client_id": f"gridnode-{uuid.uuid4().hex[:8]}",
            **more, "meters": list(meters)}


def _table(lines: list[str], path: tuple[str, ...], table: Mapping[str, Any]) -> None:
    present = {k: v for k, v in table.items() if v is not None}
    subtables = {k: v for k, v in present.items() if isinstance(v, Mapping)}
    arrays = {k: v for k, v in present.items() if _is_table(v) and k not in subtables}
    for key, value in present.items():
        if key not in subtables and key not in arrays:
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in subtables.items():
        if not value or any(not _is_table(v) for v in value.values() if v is not None):
            lines += ["", f"[{_dotted((*path, key))}]"]     # else its subtables name it
        _table(lines, (*path, key), value)
    for key, items in arrays.items():
        for item in items:
            lines += ["", f"[[{_dotted((*path, key))}]]"]
            _table(lines, (*path, key), item)


def _is_table(value: Any) -> bool:
    return isinstance(value, Mapping) or (
        isinstance(value, list) and bool(value) and all(isinstance(x, Mapping) for x in value))


def _dotted(path: tuple[str, ...]) -> str:
    return ".".join(_key(k) for k in path)


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key, ensure_ascii=False)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value), ensure_ascii=False)
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()
                                if v is not None) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")
