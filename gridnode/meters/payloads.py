"""MQTT payload formats as a table: which topics a format listens on, where each value sits in
the JSON, its unit, and how the payload states time.

Built-in formats:
- tasmota: `tele/<topic>/SENSOR`, `{"Time": local time without offset, "ENERGY": {"Total": kWh,
  "ExportActive": kWh, "Power": W, "Voltage": V, "Current": A, "Frequency": Hz}}`. The time is
  read in the meter's configured time zone; multi-channel devices send arrays (see `_value`).
- shelly: Shelly Gen2 Pro 3EM, `<prefix>/status/emdata:0` (totals in Wh, no time: receive time)
  and `<prefix>/status/em:0` (power, voltage, current only; kept as the latest instantaneous
  values and attached to the next counter reading).
- gridtokenx: the GridTokenX meter simulator, `gridtokenx/ami/telemetry/<meter_id>`, with the
  energy of each reading period (kWh, `energy_consumed`/`energy_generated`), an ISO timestamp,
  `sequence_number` and an optional base58 Ed25519 `meter_signature`. Its energies are deltas;
  the ingest adds them to the meter's running counters.
- generic: the same description, given in the configuration (`GenericFormat`).

A value is a JSON number or a string holding a decimal number. NaN and infinity (as JSON literals
or strings such as "NaN", "inf") and null mean "no data": the value is None, never zero, in every
format, deltas included. Booleans, other strings and numbers beyond the float range are malformed.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from gridnode.meters.reading import Reading
from gridnode.meters.signatures import canonical_message

UNITS: dict[str, float] = {
    "Wh": 1.0, "kWh": 1000.0, "MWh": 1e6, "W": 1.0, "kW": 1000.0, "V": 1.0, "A": 1.0, "mA": 0.001,
    "Hz": 1.0,
}
TimeKind = Literal["iso", "local", "unix_s", "unix_ms", "receive"]
_DECIMAL = re.compile(r"\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*", re.ASCII)
_NOT_A_NUMBER = re.compile(r"\s*[-+]?(nan|inf|infinity)\s*", re.ASCII | re.IGNORECASE)


class PayloadError(ValueError):
    """A payload that cannot be read; `reason` is the rejection counter it goes to."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TopicFormat:
    """One topic of a format and how to read its JSON."""

    topic: str                              # template; {topic} is the meter's configured topic
    fields: dict[str, tuple[str, str]]      # role -> (dotted JSON path, unit)
    time_path: str | None = None
    time_kind: TimeKind = "receive"
    counters: bool = True                   # False: instantaneous values only (Shelly em:0)
    delta: bool = False                     # energies are per-period deltas, not totals
    sequence_path: str | None = None
    signature_path: str | None = None
    meter_id_path: str | None = None        # when the payload names its meter, it must match


@dataclass(frozen=True, slots=True)
class PayloadFormat:
    name: str
    topics: tuple[TopicFormat, ...]
    default_topic: str = "{meter_id}"   # what `topic` usually is, for documentation
    extra: dict[str, Any] = field(default_factory=dict)


FORMATS: dict[str, PayloadFormat] = {
    "tasmota": PayloadFormat("tasmota", default_topic="tele/<device>/SENSOR", topics=(
        TopicFormat(
            topic="{topic}",
            fields={
                "import_wh": ("ENERGY.Total", "kWh"),
                "export_wh": ("ENERGY.ExportActive", "kWh"),
                "power_w": ("ENERGY.Power", "W"),
                "voltage_v": ("ENERGY.Voltage", "V"),
                "current_a": ("ENERGY.Current", "A"),
                "frequency_hz": ("ENERGY.Frequency", "Hz"),
            },
            time_path="Time", time_kind="local",
        ),
    )),
    "shelly": PayloadFormat("shelly", default_topic="<prefix>", topics=(
        TopicFormat(
            topic="{topic}/status/emdata:0",
            fields={"import_wh": ("total_act", "Wh"), "export_wh": ("total_act_ret", "Wh")},
        ),
        TopicFormat(
            topic="{topic}/status/em:0",
            fields={
                "power_w": ("total_act_power", "W"), "current_a": ("total_current", "A"),
                "voltage_v": ("a_voltage", "V"),
            },
            counters=False,
        ),
    )),
    "gridtokenx": PayloadFormat("gridtokenx", default_topic="gridtokenx/ami/telemetry/<meter_id>", topics=(
        TopicFormat(
            topic="{topic}",
            fields={
                "import_wh": ("energy_consumed", "kWh"), "export_wh": ("energy_generated", "kWh"),
                "voltage_v": ("voltage", "V"), "current_a": ("current", "A"),
                "frequency_hz": ("frequency", "Hz"),
            },
            time_path="timestamp", time_kind="iso", delta=True,
            sequence_path="sequence_number", signature_path="meter_signature",
            meter_id_path="meter_id",
        ),
    )),
}


def _get(doc: Any, path: str) -> Any:
    cur = doc
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise PayloadError("malformed", f"{where}: boolean where a number belongs")
    if isinstance(value, int | float):
        try:
            v = float(value)
        except OverflowError:
            raise PayloadError("malformed", f"{where}: number out of range") from None
    elif isinstance(value, str):
        if _NOT_A_NUMBER.fullmatch(value):
            return None
        if not _DECIMAL.fullmatch(value):
            raise PayloadError("malformed", f"{where}: {value[:40]!r} is not a number")
        v = float(value)
    else:
        raise PayloadError("malformed", f"{where}: {type(value).__name__} where a number belongs")
    if not math.isfinite(v):
        return None   # NaN / inf: "no data"
    return v


def _value(value: Any, where: str, role: str) -> float | None:
    """A number, or a per-channel array of numbers (Tasmota on multi-channel devices, e.g.
    `"ExportActive": [0.02, 0.0, 0.0]`): energies, power and current add up, voltage and
    frequency take the first channel."""
    if not isinstance(value, list):
        return _number(value, where)
    if not value or len(value) > 16:
        raise PayloadError("malformed", f"{where}: array of {len(value)} values")
    items = [_number(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if any(v is None for v in items):
        return None
    nums = [v for v in items if v is not None]
    return nums[0] if role in ("voltage_v", "frequency_hz") else sum(nums)


def _time_ms(value: Any, kind: TimeKind, tz: ZoneInfo, received_ms: int) -> int:
    if kind == "receive":
        return received_ms
    if value is None:
        raise PayloadError("malformed", "time missing")
    try:
        if kind in ("unix_s", "unix_ms"):
            v = _number(value, "time")
            if v is None:
                raise PayloadError("malformed", "time is not finite")
            ms = v * 1000 if kind == "unix_s" else v
            if not 0 <= ms < 2**53:
                raise PayloadError("malformed", "time out of range")
            return int(ms)
        if not isinstance(value, str) or len(value) > 64:
            raise PayloadError("malformed", "time is not an ISO-8601 string")
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if dt.tzinfo is None:
            if kind == "iso":
                dt = dt.replace(tzinfo=UTC)
            else:
                dt = dt.replace(tzinfo=tz)
        return int(dt.timestamp() * 1000)
    except (ValueError, OverflowError, OSError) as e:
        raise PayloadError("malformed", f"time {str(value)[:40]!r}: {e}") from None


@dataclass(slots=True)
class Parsed:
    """What one message says: a counter reading (`reading.import_wh` may be a delta) or, for
    topics without counters, only instantaneous values."""

    reading: Reading
    counters: bool
    delta: bool


def parse(
    tf: TopicFormat, payload: bytes, meter_id: str, tz: ZoneInfo, received_ms: int
) -> Parsed:
    """Read one message; PayloadError (reason "malformed" or "no_data") when it cannot be used."""
    if len(payload) > 65536:
        raise PayloadError("malformed", f"payload of {len(payload)} bytes is too large")
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError) as e:
        raise PayloadError("malformed", f"not JSON: {str(e)[:60]}") from None
    if not isinstance(doc, dict):
        raise PayloadError("malformed", f"JSON {type(doc).__name__}, expected an object")
    if tf.meter_id_path:
        named = _get(doc, tf.meter_id_path)
        if named is not None and named != meter_id:
            raise PayloadError("unknown_meter", f"payload is for meter {str(named)[:40]!r}")
    values: dict[str, float | None] = {}
    for role, (path, unit) in tf.fields.items():
        v = _value(_get(doc, path), path, role)
        if v is not None:
            v *= UNITS[unit]
            if not math.isfinite(v):
                raise PayloadError("malformed", f"{path}: number out of range in {unit}")
            if tf.delta and role in ("import_wh", "export_wh") and v < 0:
                raise PayloadError("invalid", f"{path}: negative energy delta {v:.6g} Wh")
        values[role] = v
    if tf.counters and values.get("import_wh") is None and values.get("export_wh") is None:
        raise PayloadError("no_data", "no energy counter in payload")
    read_ms = _time_ms(_get(doc, tf.time_path) if tf.time_path else None, tf.time_kind, tz,
                       received_ms)
    seq = None
    if tf.sequence_path:
        s = _number(_get(doc, tf.sequence_path), tf.sequence_path)
        if s is not None:
            if s != int(s) or not 0 <= s < 2**63:
                raise PayloadError("malformed", "sequence is not a non-negative integer")
            seq = int(s)
    sig = None
    signed = None
    if tf.signature_path:
        raw_sig = _get(doc, tf.signature_path)
        if raw_sig is not None and not isinstance(raw_sig, str):
            raise PayloadError("malformed", "signature is not a string")
        sig = raw_sig or None
        kwh = ((values.get("export_wh") or 0.0) - (values.get("import_wh") or 0.0)) / 1000.0
        signed = canonical_message(meter_id, kwh, read_ms, seq if seq is not None else 0)
    reading = Reading(
        meter_id=meter_id, read_at_ms=read_ms, received_at_ms=received_ms,
        import_wh=values.get("import_wh"), export_wh=values.get("export_wh"),
        power_w=values.get("power_w"), voltage_v=values.get("voltage_v"),
        current_a=values.get("current_a"), frequency_hz=values.get("frequency_hz"),
        sequence=seq, signature=sig,
        signed_message=signed,
    )
    return Parsed(reading, tf.counters, tf.delta)


def generic_format(
    topic: str, fields: dict[str, tuple[str, str]], time_path: str | None, time_kind: TimeKind,
    delta: bool = False,
) -> PayloadFormat:
    """A format described in the configuration (validated there: known roles and units)."""
    return PayloadFormat("generic", (
        TopicFormat(topic=topic, fields=dict(fields), time_path=time_path, time_kind=time_kind,
                    delta=delta),
    ), default_topic=topic)
