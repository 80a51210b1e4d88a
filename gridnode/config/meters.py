"""[meters]: Modbus buses with their meters, and the MQTT broker with its meters.

One bus entry is one physical bus (a serial port, or one Modbus TCP endpoint): gridnode runs one
task per bus and never lets two tasks share it.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from gridnode.config.base import Section
from gridnode.meters.profiles import Profile
from gridnode.types import Base58Pubkey, MeterId

BAUDRATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)


# Names and addresses that all mean this machine: one Modbus endpoint, however it is written.
_LOCAL_HOSTS = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback",
                "127.0.0.1", "::1"}


def host_identity(host: str) -> str:
    """A host as compared for "same endpoint": case and trailing dot ignored, IP addresses in
    canonical form, the names of this machine as one. Other names are resolved only by
    ``gridnode check-config`` (a lookup can hang at start when DNS is down)."""
    name = host.strip().lower().rstrip(".").removeprefix("[").removesuffix("]")
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return "localhost" if name in _LOCAL_HOSTS else name
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return "localhost" if str(ip) in _LOCAL_HOSTS else str(ip)


def _check_topic(value: str) -> str:
    if "+" in value or "#" in value or "\0" in value:
        raise ValueError("the meter's own MQTT topic, without the wildcards + and # (a wildcard "
                         "would hand this meter other devices' messages)")
    if len(value.encode()) > 65535:
        raise ValueError("an MQTT topic of at most 65535 bytes")
    return value


class ModbusMeter(Section):
    meter_id: MeterId
    unit_id: int = Field(ge=1, le=247)
    profile: str = Field(min_length=1)      # a profile name from config/meters/<name>.toml
    rated_power_w: float = Field(gt=0)      # plausibility bound for power and energy deltas
    invert: bool = False                    # PV inverters counting generation as import
    public_key: Base58Pubkey | None = None  # ed25519 key of a meter that signs its readings


class _BusCommon(Section):
    name: str = Field(default="", max_length=64)
    timeout_s: float = Field(default=1.0, gt=0, le=30)
    retries: int = Field(default=2, ge=0, le=10)
    # Pause after talking to one unit before addressing another (slow RS-485 converters).
    slave_switch_pause_ms: int = Field(default=20, ge=0, le=5000)
    poll_interval_s: float = Field(default=5.0, gt=0, le=3600)
    meters: list[ModbusMeter] = Field(default_factory=list)


class SerialBus(_BusCommon):
    kind: Literal["rtu"]
    port: str = Field(min_length=1)         # prefer /dev/serial/by-id/... paths
    baudrate: int = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8

    @field_validator("baudrate")
    @classmethod
    def _check_baudrate(cls, value: int) -> int:
        if value not in BAUDRATES:
            raise ValueError(f"one of {', '.join(map(str, BAUDRATES))}")
        return value

    @property
    def endpoint(self) -> str:
        return self.port

    @property
    def identity(self) -> str:
        """What makes two entries the same physical bus (see ``host_identity``)."""
        return self.port


class TcpBus(_BusCommon):
    kind: Literal["tcp", "rtu_over_tcp"]
    host: str = Field(min_length=1)
    port: int = Field(default=502, ge=1, le=65535)

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def identity(self) -> str:
        """What makes two entries the same physical bus (see ``host_identity``)."""
        return f"{host_identity(self.host)}:{self.port}"


ModbusBus = Annotated[SerialBus | TcpBus, Field(discriminator="kind")]


class GenericFields(Section):
    """Where the values sit in a JSON payload of format 'generic' (dotted paths) and their units."""

    import_energy: str = Field(min_length=1)
    export_energy: str | None = None
    power: str | None = None
    voltage: str | None = None
    current: str | None = None
    time: str | None = None
    # iso (offset, or UTC when none), local (no offset: the meter's timezone), unix_s, unix_ms;
    # without a time path the receive time is used.
    time_format: Literal["iso", "local", "unix_s", "unix_ms"] = "iso"
    energy_unit: Literal["Wh", "kWh", "MWh"] = "kWh"
    power_unit: Literal["W", "kW"] = "W"
    # true when the energies are per message (added up by gridnode), false for meter totals
    delta: bool = False


class MqttMeter(Section):
    meter_id: MeterId
    # tasmota: tele/<topic>/SENSOR; shelly: <topic>/status/emdata:0 and <topic>/status/em:0;
    # gridtokenx: gridtokenx/ami/telemetry/<topic>; generic: <topic> itself, with [fields].
    format: Literal["tasmota", "shelly", "gridtokenx", "generic"]
    topic: Annotated[str, AfterValidator(_check_topic)] = Field(min_length=1)
    # Zone of timestamps in payloads that carry local time without an offset (Tasmota).
    timezone: str | None = None
    rated_power_w: float = Field(default=50_000, gt=0)
    invert: bool = False
    public_key: Base58Pubkey | None = None
    fields: GenericFields | None = None

    @model_validator(mode="after")
    def _generic_needs_fields(self) -> MqttMeter:
        if self.format == "generic" and self.fields is None:
            raise ValueError("format 'generic' needs a [fields] table saying where the values are")
        if self.format != "generic" and self.fields is not None:
            raise ValueError("[fields] is only used with format 'generic'")
        return self


class MqttBroker(Section):
    """How to reach an MQTT broker: the connection part of [meters.mqtt] and [publish.mqtt]."""

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None           # client certificate for mutual TLS
    key_file: Path | None = None
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    client_id: str = Field(default="", max_length=64)   # empty: derived from node.id
    keepalive_s: int = Field(default=60, ge=5, le=3600)
    reconnect_max_s: float = Field(default=60.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _tls_files_need_tls(self) -> MqttBroker:
        unused = [k for k in ("ca_file", "cert_file", "key_file") if getattr(self, k) is not None]
        if unused and not self.tls:
            raise ValueError(f"tls = true when {', '.join(unused)} is given (without TLS the "
                             "files are not used)")
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("cert_file with key_file (the key of a client certificate)")
        return self


class MqttConfig(MqttBroker):
    meters: list[MqttMeter] = Field(default_factory=list)


class MetersConfig(Section):
    # Profile files that add to or replace (by name) the profiles installed with gridnode.
    profiles_dir: Path | None = None
    # Custom register maps, same shape as a config/meters/<name>.toml file.
    profiles: list[Profile] = Field(default_factory=list)
    # Validation: plausibility margin on rated power x elapsed time; how far in the future or
    # the past a reading may be; when a meter without a good reading counts as stale.
    plausibility_margin: float = Field(default=1.5, ge=1.0, le=100.0)
    max_future_s: float = Field(default=60.0, ge=0, le=86400)
    max_age_s: float = Field(default=7 * 86400.0, gt=0)
    stale_after_s: float = Field(default=300.0, gt=0)
    # Raw readings kept per meter: every one on either side of an interval boundary, and
    # otherwise one every raw_every_s (0: every reading). The counters make the rest derivable.
    raw_every_s: float = Field(default=60.0, ge=0, le=86400)
    buses: list[ModbusBus] = Field(default_factory=list)
    mqtt: MqttConfig | None = None

    def all_meter_ids(self) -> list[tuple[str, str]]:
        """(key path, meter_id) of every configured meter, in file order."""
        out: list[tuple[str, str]] = []
        for b, bus in enumerate(self.buses):
            out += [(f"meters.buses[{b}].meters[{m}].meter_id", meter.meter_id)
                    for m, meter in enumerate(bus.meters)]
        if self.mqtt is not None:
            out += [(f"meters.mqtt.meters[{m}].meter_id", meter.meter_id)
                    for m, meter in enumerate(self.mqtt.meters)]
        return out
