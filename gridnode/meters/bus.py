"""One owner task per physical bus: polls its meters in turn over one `ModbusLink`.

Per bus: a timeout per request (in the link), `retries` further tries after a failed meter read
with `retry_delay_s` between them, close-and-reopen of the link after any error (a half-dead
serial port or TCP socket is never reused), a pause when the slave ID changes (RS-485 meters such
as Eastron's need it), and each meter's contiguous register blocks read once per cycle and sliced
by the profile. A meter that fails costs only its own time slot; errors never end the task.

A definite answer (a Modbus exception, a malformed answer) is not asked again within the poll
and keeps the link: the device would say the same, and on RS-485 a repeat only takes bus time.
Failures are counted per meter on every poll but logged once per cause: when a meter starts to
fail, when the cause changes, and when it answers again.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from gridnode.meters.clock import Clock, SystemClock
from gridnode.meters.health import MeterHealth, log
from gridnode.meters.modbus_link import ExceptionResponse, LinkError, MalformedAnswer, ModbusLink
from gridnode.meters.profiles import Block, Profile, decode, plan_blocks
from gridnode.meters.reading import Reading
from gridnode.meters.recorder import Recorder

SUNSPEC_MARKER = [0x5375, 0x6E53]          # "SunS"
SUNSPEC_STARTS = (40000, 0, 50000)
SUNSPEC_END = 0xFFFF
ILLEGAL_DATA_ADDRESS = 2


@dataclass(slots=True)
class BusMeter:
    meter_id: str
    unit: int
    profile: Profile
    health: MeterHealth
    base: int | None = None         # SunSpec: first point of the model, once found
    blocks: list[Block] = field(init=False)
    absent: set[Block] = field(default_factory=set)   # optional blocks the device refused
    failing: str | None = None      # the cause of the current run of failures, once logged

    def __post_init__(self) -> None:
        self.base = None if self.profile.sunspec_model else 0
        self.blocks = plan_blocks(self.profile) if self.base == 0 else []


@dataclass(frozen=True, slots=True)
class BusTiming:
    poll_interval_s: float = 10.0
    retries: int = 2
    retry_delay_s: float = 0.2
    slave_pause_s: float = 0.0


class BusPoller:
    """The one task that talks to a physical bus: polls its meters in turn, every
    `timing.poll_interval_s`, and hands each reading to the recorder (see the module docstring).

    Nothing else may use its `link`. `progress_at` (monotonic time of the last completed round)
    tells the subsystem's readiness and watchdog checks that the bus is still being polled.
    """

    def __init__(
        self, name: str, link: ModbusLink, meters: list[BusMeter], recorder: Recorder,
        timing: BusTiming = BusTiming(), clock: Clock | None = None,
    ) -> None:
        self.name = name
        self.link = link
        self.meters = meters
        self.recorder = recorder
        self.timing = timing
        self.clock = clock or SystemClock()
        self.progress_at = time.monotonic()
        self.cycles = 0
        self._last_unit: int | None = None

    async def run(self) -> None:
        try:
            while True:
                start = self.clock.time()
                readings: list[Reading] = []
                for bm in self.meters:
                    r = await self.read_meter(bm)
                    if r is not None:
                        readings.append(r)
                # one hand-over per cycle: the recorder commits the cycle in one transaction
                self.recorder.submit_cycle(readings)
                self.cycles += 1
                self.progress_at = time.monotonic()
                await self.clock.sleep(start + self.timing.poll_interval_s - self.clock.time())
        finally:
            self.link.close()

    async def poll_meter(self, bm: BusMeter) -> Reading | None:
        """Read one meter (with retries) and hand its reading to the recorder."""
        r = await self.read_meter(bm)
        if r is not None:
            self.recorder.submit(r)
        return r

    async def read_meter(self, bm: BusMeter) -> Reading | None:
        """Read one meter (with retries); None when it gave no reading (counted and logged)."""
        t = self.timing
        for attempt in range(t.retries + 1):
            if self._last_unit is not None and bm.unit != self._last_unit and t.slave_pause_s:
                await self.clock.sleep(t.slave_pause_s)
            self._last_unit = bm.unit
            try:
                if bm.base is None:
                    await self._find_sunspec_model(bm)
                regs: dict[Block, list[int]] = {}
                for b in bm.blocks:
                    if b in bm.absent:
                        continue
                    try:
                        regs[b] = await self.link.read(b.function_code, b.address, b.count,
                                                       bm.unit)
                    except ExceptionResponse as e:
                        if not b.optional or e.code != ILLEGAL_DATA_ADDRESS:
                            raise
                        bm.absent.add(b)
                        log.info("optional registers absent on this device", bus=self.name,
                                 meter_id=bm.meter_id, address=b.address)
                    bm.health.request(True)
                break
            except (ExceptionResponse, MalformedAnswer) as e:
                # a definite answer over a working link: no reopen, and asking again won't help
                bm.health.request(False, str(e))
                self._failed(bm, str(e))
                return None
            except LinkError as e:
                bm.health.request(False, str(e))
                self.link.close()
                if attempt == t.retries:
                    self._failed(bm, str(e))
                    return None
                await self.clock.sleep(t.retry_delay_s)
            except (OSError, asyncio.IncompleteReadError) as e:   # transport trouble below pymodbus
                bm.health.request(False, repr(e))
                self.link.close()
                self._failed(bm, repr(e))
                return None
        if bm.failing is not None:
            log.info("meter answers again", bus=self.name, meter_id=bm.meter_id)
            bm.failing = None
        now_ms = int(self.clock.time() * 1000)
        values = decode(bm.profile, regs, bm.base or 0)
        r = Reading(
            meter_id=bm.meter_id, read_at_ms=now_ms, received_at_ms=now_ms,
            import_wh=values.get("import_wh"), export_wh=values.get("export_wh"),
            power_w=values.get("power_w"), voltage_v=values.get("voltage_v"),
            current_a=values.get("current_a"), frequency_hz=values.get("frequency_hz"),
        )
        return r

    def _failed(self, bm: BusMeter, cause: str) -> None:
        """Log a failed read once per cause (every failure is counted in the meter's health)."""
        if cause != bm.failing:
            log.warning("meter read failed", bus=self.name, meter_id=bm.meter_id, error=cause)
            bm.failing = cause

    async def _find_sunspec_model(self, bm: BusMeter) -> None:
        """Walk the device's SunSpec model chain to the profile's model and plan its reads."""
        model = bm.profile.sunspec_model
        for start in SUNSPEC_STARTS:
            try:
                if await self.link.read(3, start, 2, bm.unit) == SUNSPEC_MARKER:
                    break
            except LinkError:
                if not self.link.connected:
                    raise
        else:
            raise LinkError(f"unit {bm.unit}: no SunSpec map at {SUNSPEC_STARTS}")
        addr = start + 2
        for _ in range(64):
            mid, length = await self.link.read(3, addr, 2, bm.unit)
            if mid == SUNSPEC_END:
                break
            if mid == model:
                bm.base = addr + 2
                bm.blocks = plan_blocks(bm.profile, bm.base)
                log.info("sunspec model found", bus=self.name, meter_id=bm.meter_id,
                         model=model, address=bm.base)
                return
            addr += 2 + length
        raise LinkError(f"unit {bm.unit}: SunSpec model {model} not in the device's chain")
