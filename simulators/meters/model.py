"""A simulated meter: cumulative import/export counters driven by a solar and load day profile,
on any clock (accelerated in tests), with fault modes switched on demand."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from gridnode.meters.clock import Clock, SystemClock

FAULTS = ("none", "no_answer", "slow", "garbage", "nan", "reset", "backward", "disconnect")


@dataclass(slots=True)
class DayProfile:
    """Power in W at a UTC time of day: a household load with morning and evening peaks, minus a
    PV array's bell-shaped output between 06:00 and 18:00."""

    pv_peak_w: float = 4000.0
    base_load_w: float = 400.0
    peak_load_w: float = 1500.0

    def solar_w(self, t: float) -> float:
        h = (t % 86400) / 3600
        return self.pv_peak_w * math.sin(math.pi * (h - 6) / 12) ** 2 if 6 <= h <= 18 else 0.0

    def load_w(self, t: float) -> float:
        h = (t % 86400) / 3600
        bump = math.exp(-((h - 7.5) ** 2) / 2) + math.exp(-((h - 19) ** 2) / 3)
        return self.base_load_w + self.peak_load_w * bump

    def net_w(self, t: float) -> float:
        return self.load_w(t) - self.solar_w(t)


@dataclass(slots=True)
class SimMeter:
    meter_id: str
    unit: int = 1
    day: DayProfile = field(default_factory=DayProfile)
    import_wh: float = 1_000_000.0
    export_wh: float = 250_000.0
    voltage_v: float = 230.0
    frequency_hz: float = 50.0
    fault: str = "none"
    slow_s: float = 2.0
    clock: Clock = field(default_factory=SystemClock)
    last_t: float | None = None
    power_w: float = 0.0
    glitches: int = 0
    absent: tuple[str, ...] = ()   # roles whose registers this device does not have

    def update(self) -> None:
        """Advance the counters to the clock's now (1-minute integration steps)."""
        now = self.clock.time()
        if self.last_t is None:
            self.last_t = now
        t = self.last_t
        while t < now:
            dt = min(60.0, now - t)
            p = self.day.net_w(t + dt / 2)
            if p >= 0:
                self.import_wh += p * dt / 3600
            else:
                self.export_wh += -p * dt / 3600
            t += dt
        self.last_t = now
        self.power_w = self.day.net_w(now)

    def set_fault(self, fault: str) -> None:
        """Switch a fault on. `reset` and `backward` act once, on the counters, right away."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known: {', '.join(FAULTS)}")
        self.update()
        if fault == "reset":
            self.import_wh, self.export_wh = 0.0, 0.0
            fault = "none"
        elif fault == "backward":   # one glitched answer 5 kWh below the true counter
            self.glitches = 1
            fault = "none"
        self.fault = fault

    def values(self) -> dict[str, float | None]:
        """Values by role (gridnode's units); None where the meter says "not available"."""
        self.update()
        nan = self.fault == "nan"
        glitch = 5000.0 if self.glitches > 0 else 0.0
        self.glitches = max(0, self.glitches - 1)
        return {
            "import_wh": None if nan else max(0.0, self.import_wh - glitch),
            "export_wh": None if nan else self.export_wh,
            "power_w": self.power_w, "voltage_v": self.voltage_v,
            "current_a": abs(self.power_w) / self.voltage_v, "frequency_hz": self.frequency_hz,
        }
