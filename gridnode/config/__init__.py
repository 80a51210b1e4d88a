"""gridnode configuration: one TOML file, one pydantic model per section.

``load_config(path)`` either returns a complete, validated ``GridnodeConfig`` or raises
``ConfigError`` listing EVERY problem found, each with the file, the key path (like
``meters.buses[0].port``), the bad value and what is allowed, so an installer fixes a file in one
round instead of one error at a time.
"""

from __future__ import annotations

import tomllib
import types
import typing
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, Field, PrivateAttr, ValidationError

from gridnode.config.alerts import AlertsConfig
from gridnode.config.api import NO_SECRET, ApiConfig
from gridnode.config.base import Section
from gridnode.config.chain import ChainConfig
from gridnode.config.intervals import IntervalsConfig
from gridnode.config.keys import KeysConfig
from gridnode.config.logging import LoggingConfig
from gridnode.config.market import MarketConfig, market_summary
from gridnode.config.meters import MetersConfig, MqttMeter
from gridnode.config.node import NodeConfig
from gridnode.config.outbox import OutboxConfig
from gridnode.config.publish import PublishConfig
from gridnode.config.reconciliation import ReconciliationConfig
from gridnode.config.retention import RetentionConfig
from gridnode.config.storage import StorageConfig
from gridnode.config.upstream import UpstreamConfig
from gridnode.config.webhooks import WebhooksConfig
from gridnode.meters.payloads import FORMATS

__all__ = ["ConfigError", "ConfigIssue", "GridnodeConfig", "does_nothing", "load_config",
           "parse_config", "summary"]


class GridnodeConfig(Section):
    node: NodeConfig = Field(default_factory=NodeConfig)
    keys: KeysConfig = Field(default_factory=KeysConfig)
    chain: ChainConfig | None = None          # absent: no chain, readings are only stored
    meters: MetersConfig = Field(default_factory=MetersConfig)
    intervals: IntervalsConfig = Field(default_factory=IntervalsConfig)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    upstream: UpstreamConfig | None = None    # absent: nothing is synced upstream
    api: ApiConfig = Field(default_factory=ApiConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    reconciliation: ReconciliationConfig = Field(default_factory=ReconciliationConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    publish: PublishConfig = Field(default_factory=PublishConfig)
    webhooks: WebhooksConfig = Field(default_factory=WebhooksConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    market: MarketConfig | None = None       # absent: no trading, minting or settlement
    _source: str = PrivateAttr(default="<config>")

    @property
    def source(self) -> str:
        """The file this configuration came from, for error messages."""
        return self._source


class ConfigIssue(NamedTuple):
    file: str
    path: str          # "meters.buses[0].port"; "" for the file as a whole
    value: str         # repr of the bad value, or "<missing>"
    allowed: str       # what would have been accepted

    def __str__(self) -> str:
        where = f"{self.file}: {self.path}" if self.path else self.file
        return f"{where} = {self.value}: expected {self.allowed}"


class ConfigError(Exception):
    """Every problem in a configuration file; ``errors`` lists them as ConfigIssue tuples."""

    def __init__(self, errors: list[ConfigIssue]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


def load_config(path: str | Path) -> GridnodeConfig:
    """Read and validate a TOML configuration file; raises ConfigError with every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([ConfigIssue(str(path), "", "<unreadable>",
                                       f"a readable TOML file ({exc.strerror})")]) from None
    except UnicodeDecodeError:
        raise ConfigError([ConfigIssue(str(path), "", "<not UTF-8>",
                                       "a UTF-8 TOML file")]) from None
    cfg = parse_config(text, str(path))
    if not cfg.model_fields_set:
        # Every key has a default, so an empty file is valid, and would run a node that does
        # nothing while reporting itself healthy: a truncated copy or the wrong path, refused.
        raise ConfigError([ConfigIssue(
            str(path), "", "<empty>", "at least one section; an empty file configures nothing "
            "(config/gridnode.example.toml shows every section and key)")])
    return cfg


def does_nothing(cfg: GridnodeConfig) -> bool:
    """No meter to read and no chain to submit to: the node would only keep its database open."""
    m = cfg.meters
    return cfg.chain is None and not m.buses and not (m.mqtt and m.mqtt.meters)


def parse_config(text: str, file: str = "<string>") -> GridnodeConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([ConfigIssue(file, "", "<invalid TOML>", f"valid TOML ({exc})")]) from None
    try:
        cfg = GridnodeConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_issue(file, err) for err in exc.errors()]) from None
    issues = _cross_checks(cfg, file)
    if issues:
        raise ConfigError(issues)
    cfg._source = file
    return cfg


def _cross_checks(cfg: GridnodeConfig, file: str) -> list[ConfigIssue]:
    """Rules that span entries: unique meter IDs, one task per physical bus, one meter per topic."""
    issues: list[ConfigIssue] = []
    ids = cfg.meters.all_meter_ids()
    seen = Counter(meter_id for _, meter_id in ids)
    for key, meter_id in ids:
        if seen[meter_id] > 1:
            issues.append(ConfigIssue(file, key, repr(meter_id),
                                      "a meter_id used by no other meter"))
    endpoints: dict[str, int] = {}
    for b, bus in enumerate(cfg.meters.buses):
        first = endpoints.setdefault(bus.identity, b)
        if first != b:
            issues.append(same_bus_issue(file, cfg, b, first))
        units = Counter(m.unit_id for m in bus.meters)
        for m, meter in enumerate(bus.meters):
            if units[meter.unit_id] > 1:
                issues.append(ConfigIssue(file, f"meters.buses[{b}].meters[{m}].unit_id",
                                          repr(meter.unit_id), "a unit_id unique on its bus"))
    if cfg.meters.mqtt is not None:
        owners: dict[str, int] = {}
        for q, mqtt_meter in enumerate(cfg.meters.mqtt.meters):
            for topic in subscribed_topics(mqtt_meter):
                first = owners.setdefault(topic, q)
                if first != q:
                    issues.append(ConfigIssue(
                        file, f"meters.mqtt.meters[{q}].topic", repr(mqtt_meter.topic),
                        f"a topic no other meter listens on ({topic!r} is also "
                        f"meters.mqtt.meters[{first}]'s; one of them would receive nothing)"))
                    break
    return issues


def same_bus_issue(file: str, cfg: GridnodeConfig, b: int, first: int) -> ConfigIssue:
    """meters.buses[b] is the physical bus of meters.buses[first]."""
    bus = cfg.meters.buses[b]
    return ConfigIssue(
        file, f"meters.buses[{b}].{'port' if bus.kind == 'rtu' else 'host'}", repr(bus.endpoint),
        f"a bus endpoint not already used by meters.buses[{first}] "
        f"({cfg.meters.buses[first].endpoint!r}; one entry per physical bus: put all its "
        "meters in that entry)")


def subscribed_topics(meter: MqttMeter) -> list[str]:
    """The topics gridnode subscribes to for this meter (a Shelly listens on two)."""
    templates = (["{topic}"] if meter.format == "generic"
                 else [t.topic for t in FORMATS[meter.format].topics])
    return [t.format(topic=meter.topic) for t in templates]


# pydantic error types whose message does not read as "expected <what is allowed>".
_ALLOWED = {"ip_any_address": "an IPv4 or IPv6 address such as 127.0.0.1 or ::1"}


def _issue(file: str, err: Any) -> ConfigIssue:
    loc, kind, msg = _clean_loc(err["loc"]), err["type"], err["msg"]
    value = "<missing>" if kind == "missing" else _show(err.get("input"))
    if kind == "missing":
        allowed = "a value (this key is required)"
    elif kind == "extra_forbidden":
        known = _known_keys(loc[:-1])
        allowed = "no such key" + (f"; known keys here: {', '.join(known)}" if known else "")
    elif kind == "union_tag_invalid":
        loc = (*loc, err["ctx"]["discriminator"].strip("'"))
        value = repr(err["ctx"]["tag"])
        allowed = f"one of {err['ctx']['expected_tags']}"
    elif kind == "union_tag_not_found":
        loc = (*loc, err["ctx"]["discriminator"].strip("'"))
        value = "<missing>"
        allowed = "a value (this key is required and selects the kind of entry)"
    elif kind in _ALLOWED:
        allowed = _ALLOWED[kind]
    else:
        allowed = msg.removeprefix("Value error, ").removeprefix("Input should be ")
        if kind == "literal_error":
            allowed = "one of " + allowed
    return ConfigIssue(file, _dotted(loc), value, allowed)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Drop the discriminator tags pydantic puts in locations (buses.0.tcp.port -> buses.0.port)."""
    out: list[Any] = []
    model: Any = GridnodeConfig
    for part in loc:
        tagged = [c for c in _models_in(model) if part in _tags(c)] if isinstance(part, str) else []
        if len(_models_in(model)) > 1 and tagged:
            model = tagged[0]   # a discriminator tag, not a key: narrow to the tagged model
            continue
        out.append(part)
        model = _step(model, part)
    return tuple(out)


def _tags(model: type[BaseModel]) -> set[Any]:
    """The Literal values of a model's fields (where a discriminated union finds its tag)."""
    return {v for f in model.model_fields.values()
            if typing.get_origin(f.annotation) is typing.Literal
            for v in typing.get_args(f.annotation)}


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    model: Any = GridnodeConfig
    for part in loc:
        model = _step(model, part)
    models = _models_in(model)
    return sorted({k for m in models for k in m.model_fields})


def _models_in(tp: Any) -> list[type[BaseModel]]:
    """The pydantic models a type annotation can hold (through Optional, unions, Annotated)."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType) or origin is typing.Annotated:
        args = typing.get_args(tp)[:1] if origin is typing.Annotated else typing.get_args(tp)
        return [m for a in args for m in _models_in(a)]
    return []


def _step(tp: Any, part: Any) -> Any:
    """The annotation one location step below `tp` (a field of a model, an item of a list)."""
    if isinstance(part, int):
        for inner in (tp, *typing.get_args(tp)):
            if typing.get_origin(inner) is list:
                return typing.get_args(inner)[0]
        return None
    for model in _models_in(tp):
        field = model.model_fields.get(part)
        if field is not None:
            return field.annotation
    return None


def summary(cfg: GridnodeConfig) -> list[str]:
    """Lines for `gridnode check-config`: what this configuration will make the node do."""
    m = cfg.meters
    modbus = sum(len(b.meters) for b in m.buses)
    mqtt = len(m.mqtt.meters) if m.mqtt else 0
    lines = [
        f"node {cfg.node.id}: database {cfg.node.database}, timezone {cfg.node.timezone}",
        f"meters: {modbus} on {len(m.buses)} Modbus bus(es)"
        + (f", {mqtt} over MQTT at {m.mqtt.host}:{m.mqtt.port}" if m.mqtt else ", no MQTT"),
        f"intervals: {cfg.intervals.minutes} min",
    ]
    for bus in m.buses:
        lines.append(f"  bus {bus.name or bus.endpoint} ({bus.kind} {bus.endpoint}): "
                     + ", ".join(f"{x.meter_id}@{x.unit_id}/{x.profile}" for x in bus.meters))
    if cfg.chain is None:
        lines.append("chain: not configured (readings are stored, nothing is submitted)")
    else:
        lines.append(f"chain: {', '.join(str(u) for u in cfg.chain.rpc_urls)} "
                     f"({cfg.chain.commitment})")
    up = cfg.upstream
    lines.append(f"upstream: {up.url}, {up.batch_size} items per request, signed with the "
                 f"systemd credential {up.credential} or "
                 + (str(up.secret_file) if up.secret_file else "(no secret_file) nothing")
                 if up else "upstream: not configured (nothing is synced)")
    api = cfg.api
    host = f"[{api.bind}]" if api.bind.version == 6 else str(api.bind)
    lines.append(f"api: http://{host}:{api.port}, tokens signed with the systemd credential "
                 "api-jwt or " + (f"{api.jwt_secret_file}" if api.jwt_secret_file else
                                  f"(no jwt_secret_file) nothing, and then: {NO_SECRET}")
                 if api.enabled else "api: off (enable it with [api] enabled = true)")
    lines.append(f"logging: {cfg.logging.level}, {cfg.logging.format}")
    ha = cfg.publish.mqtt
    lines.append(f"home assistant: MQTT discovery under {ha.discovery_prefix}/, states under "
                 f"{ha.base_topic}/{cfg.node.id}/, broker {ha.host}:{ha.port}" if ha.enabled
                 else "home assistant: off ([publish.mqtt] enabled = true publishes the meters)")
    lines.append(f"disk guard: raw readings held back below {cfg.storage.min_free_mb:g} MiB free"
                 if cfg.storage.min_free_mb > 0 else "disk guard: off ([storage] min_free_mb)")
    lines += market_summary(cfg.market, bool(cfg.chain and cfg.chain.registry_readings),
                            bool(cfg.chain and cfg.chain.authority_keypair))
    if does_nothing(cfg):
        lines.insert(0, "does nothing: no meters and no [chain] are configured, so the node would "
                        "only keep its database open")
    return lines
