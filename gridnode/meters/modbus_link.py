"""The one place gridnode calls the pymodbus client (its API changes between minor versions).

A `ModbusLink` is one physical connection: a serial port (RTU), a Modbus TCP endpoint, or an
RTU-over-TCP gateway. It is owned by exactly one bus task and never shared; pymodbus's own
reconnection and retries are switched off, because the bus task decides when to retry and when
to close and reopen.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Literal

from pymodbus import FramerType, ModbusException
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

Transport = Literal["rtu", "tcp", "rtu_over_tcp"]

# pymodbus logs every timeout at ERROR; the bus task counts and logs failures per meter itself.
logging.getLogger("pymodbus.logging").setLevel(logging.CRITICAL)


class LinkError(Exception):
    """A request that got no usable answer (timeout, connection, CRC, Modbus exception)."""


class ExceptionResponse(LinkError):
    """The slave answered with a Modbus exception (2: illegal data address, 4: device failure)."""

    def __init__(self, message: str, code: int | None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class LinkSettings:
    transport: Transport
    port: str | None = None          # serial device (prefer /dev/serial/by-id/...)
    host: str | None = None
    tcp_port: int = 502
    baudrate: int = 9600
    bytesize: int = 8
    parity: Literal["N", "E", "O"] = "N"
    stopbits: int = 1
    timeout_s: float = 1.0

    @property
    def name(self) -> str:
        if self.transport == "rtu":
            return f"rtu:{self.port}"
        return f"{self.transport}:{self.host}:{self.tcp_port}"


class ModbusLink:
    def __init__(self, settings: LinkSettings) -> None:
        self.settings = settings
        self._client: AsyncModbusSerialClient | AsyncModbusTcpClient | None = None

    def _make(self) -> AsyncModbusSerialClient | AsyncModbusTcpClient:
        s = self.settings
        common = {"timeout": s.timeout_s, "retries": 0, "reconnect_delay": 0.0}
        if s.transport == "rtu":
            return AsyncModbusSerialClient(
                s.port or "", framer=FramerType.RTU, baudrate=s.baudrate, bytesize=s.bytesize,
                parity=s.parity, stopbits=s.stopbits, **common)
        framer = FramerType.RTU if s.transport == "rtu_over_tcp" else FramerType.SOCKET
        return AsyncModbusTcpClient(s.host or "", port=s.tcp_port, framer=framer, **common)

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    async def open(self) -> None:
        self.close()
        client = self._make()
        try:
            ok = await client.connect()
            _raise_lost_cancellation()
        except Exception as e:  # serial open errors surface as several exception types
            client.close()
            raise LinkError(f"{self.settings.name}: cannot open: {e}") from e
        except asyncio.CancelledError:
            client.close()
            raise
        if not ok:
            client.close()
            raise LinkError(f"{self.settings.name}: cannot connect")
        self._client = client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def read(self, function_code: int, address: int, count: int, unit: int) -> list[int]:
        """`count` registers from `address` of slave `unit` (FC3 holding, FC4 input)."""
        if self._client is None:
            await self.open()
        assert self._client is not None
        try:
            if function_code == 3:
                rr = await self._client.read_holding_registers(address, count=count,
                                                               device_id=unit)
            elif function_code == 4:
                rr = await self._client.read_input_registers(address, count=count,
                                                             device_id=unit)
            else:
                raise LinkError(f"function code {function_code} is not supported")
        except ModbusException as e:
            raise LinkError(f"unit {unit} FC{function_code} @{address}: {e}") from e
        _raise_lost_cancellation()
        if rr.isError():
            code = getattr(rr, "exception_code", None)
            raise ExceptionResponse(
                f"unit {unit} FC{function_code} @{address}: exception response {code}", code)
        regs = list(rr.registers)
        if len(regs) < count:
            raise LinkError(f"unit {unit}: short answer, {len(regs)} of {count} registers")
        return regs[:count]


def _raise_lost_cancellation() -> None:
    """Re-raise a cancellation that pymodbus swallowed.

    pymodbus awaits its answers with `asyncio.wait_for`, which on Python 3.11 returns the result
    instead of raising when the task is cancelled in the same loop turn as the answer arrives
    (CPython gh-86296, fixed in 3.12). About one cancel in ten against a busy bus was lost that
    way, leaving a bus task that never stops. The task still counts the pending cancel request.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
