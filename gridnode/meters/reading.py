"""A meter reading as it travels from a source (Modbus poll, MQTT message) to validation."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Reading:
    """Cumulative counters (Wh) and instantaneous values of one meter at one time.

    `import_wh`/`export_wh` are None when the meter said "not available"; `sequence` and
    `signature` come from sources that provide them (the GridTokenX telemetry) and `signed_message`
    is the canonical message the signature covers, built by the payload parser.
    """

    meter_id: str
    read_at_ms: int
    received_at_ms: int
    import_wh: float | None
    export_wh: float | None = None
    power_w: float | None = None
    voltage_v: float | None = None
    current_a: float | None = None
    frequency_hz: float | None = None
    sequence: int | None = None
    signature: str | None = None
    signed_message: bytes | None = field(default=None, repr=False)

    def inverted(self) -> Reading:
        """The reading of a PV meter mounted the other way round: import and export swapped."""
        return Reading(
            meter_id=self.meter_id, read_at_ms=self.read_at_ms,
            received_at_ms=self.received_at_ms, import_wh=self.export_wh,
            export_wh=self.import_wh,
            power_w=None if self.power_w is None else -self.power_w,
            voltage_v=self.voltage_v, current_a=self.current_a, frequency_hz=self.frequency_hz,
            sequence=self.sequence, signature=self.signature, signed_message=self.signed_message,
        )
