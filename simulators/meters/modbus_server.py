"""Modbus servers for simulated meters: TCP, and RTU on a pseudo-terminal pair.

Every pymodbus server call of the simulators is in this module. A server carries several meters
(slave IDs on one "bus"), each with a profile from config/meters/; the action callback rewrites
the registers from the meter's live counters before each answer. Fault modes per meter:
`no_answer` (the answer is dropped), `slow` (answers after `slow_s`), `garbage` (the answer's
bytes are corrupted, so RTU sees a CRC error), `nan` (energy registers hold the "not available"
sentinel), and the one-off counter faults `reset` and `backward` (see model.SimMeter).
"""

from __future__ import annotations

import asyncio
import functools
import os
import tty

from pymodbus import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from gridnode.meters.profiles import Profile, raw_to_registers
from simulators.meters.model import SimMeter

# SunSpec scale factors the simulator serves, by role (value = raw x 10^sf).
SUNSPEC_SF = {"current_a": -2, "voltage_v": -1, "frequency_hz": -2, "power_w": 0,
              "import_wh": 0, "export_wh": 0}


def sunspec_header(model: int, common_length: int = 65,
                   models_before: tuple[tuple[int, int], ...] = ()) -> tuple[dict[int, int], int]:
    """The SunSpec chain around a meter model: "SunS" at 40000, the common model (65 registers,
    as Fronius serves it; 66 in newer specs), any `models_before` (id, length), the meter model
    (105 registers) and the end marker. Returns the registers and the model's first point."""
    regs = {40000: 0x5375, 40001: 0x6E53, 40002: 1, 40003: common_length}
    addr = 40004 + common_length
    for mid, length in models_before:
        regs[addr], regs[addr + 1] = mid, length
        addr += 2 + length
    regs[addr], regs[addr + 1] = model, 105
    base = addr + 2
    regs[base + 105], regs[base + 106] = 0xFFFF, 0
    return regs, base


def encode(profile: Profile, values: dict[str, float | None], base: int = 0) -> dict[int, int]:
    """Register address -> word for every register of `profile` holding `values`."""
    out: dict[int, int] = {}
    for f in profile.fields(base):
        v = values.get(f.role)
        factor = f.scale
        if f.scale_factor_address is not None:
            sf = SUNSPEC_SF[f.role]
            out[f.scale_factor_address] = sf & 0xFFFF
            factor *= 10.0 ** sf
        raw = None if v is None else v / factor
        for i, w in enumerate(raw_to_registers(raw, f.data_type, f.word_order)):
            out[f.address + i] = w
    return out


def _device(meter: SimMeter, profile: Profile, common_length: int,
            models_before: tuple[tuple[int, int], ...]) -> SimDevice:
    header: dict[int, int] = {}
    base = 0
    if profile.sunspec_model:
        header, base = sunspec_header(profile.sunspec_model, common_length, models_before)
    regs = {**header, **encode(profile, meter.values(), base)}
    lo, hi = min(regs), max(regs)

    async def action(fc, start_address, address, count, current_registers, set_values):
        if meter.fault == "slow":
            await asyncio.sleep(meter.slow_s)
        for addr, word in encode(profile, meter.values(), base).items():
            i = addr - start_address
            if 0 <= i < len(current_registers) and addr not in absent:
                current_registers[i] = word
        return None

    # registers of roles this device lacks are left undefined: reading them is exception 2
    absent = {f.address + i for f in profile.fields(base) if f.role in meter.absent
              for i in range(f.width)}
    simdata: list[SimData] = []
    run: list[int] = []
    for addr in range(lo, hi + 2):
        if addr <= hi and addr not in absent:
            run.append(addr)
        elif run:
            simdata.append(SimData(run[0], values=[regs.get(a, 0) for a in run],
                                   datatype=DataType.REGISTERS))
            run = []
    return SimDevice(meter.unit, simdata=simdata, action=action)


class MeterBus:
    """Meters on one simulated bus, and the packet hook that applies transport faults."""

    def __init__(self, meters: list[tuple[SimMeter, Profile]], framer: str,
                 sunspec_common_length: int = 65,
                 sunspec_models_before: tuple[tuple[int, int], ...] = ()) -> None:
        self.meters = {m.unit: m for m, _ in meters}
        self.devices = [_device(m, p, sunspec_common_length, sunspec_models_before)
                        for m, p in meters]
        self.framer = framer

    def _unit_of(self, packet: bytes) -> int | None:
        if self.framer == "rtu":
            return packet[0] if packet else None
        return packet[6] if len(packet) > 6 else None

    def trace_packet(self, sending: bool, data: bytes) -> bytes:
        if not sending:
            return data
        meter = self.meters.get(self._unit_of(data) or -1)
        if meter is None:
            return data
        if meter.fault == "no_answer":
            return b""
        if meter.fault == "garbage":
            if self.framer == "rtu":
                return data[:-2] + bytes([data[-2] ^ 0x5A, data[-1] ^ 0xA5])
            return data[:7] + bytes([0x83]) + os.urandom(max(0, len(data) - 8))
        return data


class ModbusTcpMeterServer:
    """Modbus TCP (or RTU-over-TCP with `framer="rtu"`) server for simulated meters."""

    def __init__(self, meters: list[tuple[SimMeter, Profile]], host: str = "127.0.0.1",
                 port: int = 5020, framer: str = "socket", **sunspec: object) -> None:
        self.bus = MeterBus(meters, framer, **sunspec)  # type: ignore[arg-type]
        self.host, self.port = host, port
        self._server = ModbusTcpServer(
            self.bus.devices, address=(host, port),
            framer=FramerType.RTU if framer == "rtu" else FramerType.SOCKET,
            trace_packet=self.bus.trace_packet)

    async def start(self) -> None:
        await self._server.serve_forever(background=True)

    async def stop(self) -> None:
        await self._server.shutdown()

    async def __aenter__(self) -> ModbusTcpMeterServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class PtyPair:
    """Two pseudo-terminals joined back to back, like a null-modem cable: what is written to
    one slave device comes out of the other. The bridge runs on the event loop."""

    def __init__(self) -> None:
        self._fds: list[tuple[int, int, str]] = []
        for _ in range(2):
            master, slave = os.openpty()
            tty.setraw(slave)
            os.set_blocking(master, False)
            self._fds.append((master, slave, os.ttyname(slave)))
        self.server_path = self._fds[0][2]
        self.client_path = self._fds[1][2]
        self.corrupt = False

    def _pump(self, src: int, dst: int) -> None:
        try:
            data = os.read(src, 4096)
        except (BlockingIOError, OSError):
            return
        try:
            os.write(dst, data)
        except OSError:
            pass

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        a, b = self._fds[0][0], self._fds[1][0]
        loop.add_reader(a, functools.partial(self._pump, a, b))
        loop.add_reader(b, functools.partial(self._pump, b, a))

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        for master, slave, _ in self._fds:
            loop.remove_reader(master)
            os.close(master)
            os.close(slave)
        self._fds = []


class ModbusRtuMeterServer:
    """Modbus RTU server on one end of a pty pair; gridnode opens `client_path` as its port."""

    def __init__(self, meters: list[tuple[SimMeter, Profile]], baudrate: int = 9600,
                 parity: str = "N") -> None:
        self.bus = MeterBus(meters, "rtu")
        self.pty = PtyPair()
        self.client_path = self.pty.client_path
        self._server = ModbusSerialServer(
            self.bus.devices, framer=FramerType.RTU, port=self.pty.server_path,
            baudrate=baudrate, parity=parity, trace_packet=self.bus.trace_packet)

    async def start(self) -> None:
        self.pty.start()
        await self._server.serve_forever(background=True)

    async def stop(self) -> None:
        await self._server.shutdown()
        self.pty.close()

    async def __aenter__(self) -> ModbusRtuMeterServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
