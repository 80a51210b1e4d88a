"""The one place gridnode calls the pymodbus client (its API changes between minor versions).

A `ModbusLink` is one physical connection: a serial port (RTU), a Modbus TCP endpoint, or an
RTU-over-TCP gateway. It is owned by exactly one bus task and never shared; pymodbus's own
reconnection and retries are switched off, because the bus task decides when to retry and when
to close and reopen.

An answer pymodbus cannot decode (say a byte count beyond the end of its PDU) makes pymodbus raise
inside its protocol callback: asyncio would log a traceback, kill the transport and leave the
request waiting for its timeout. `_guard_decoding` catches it there; the request fails at once as
`MalformedAnswer`, naming what was wrong, and the connection stays usable.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Literal

from pymodbus import FramerType, ModbusException
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.transaction import TransactionManager

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


class MalformedAnswer(LinkError):
    """The slave answered, but not with a valid answer to the request: a frame that does not
    decode, or another number of registers than asked for. Asking again gets the same."""


class _Undecodable(Exception):
    """Carries the cause of an undecodable frame from the protocol callback to the request."""


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
        client: AsyncModbusSerialClient | AsyncModbusTcpClient
        if s.transport == "rtu":
            client = AsyncModbusSerialClient(
                s.port or "", framer=FramerType.RTU, baudrate=s.baudrate, bytesize=s.bytesize,
                parity=s.parity, stopbits=s.stopbits, timeout=s.timeout_s, retries=0,
                reconnect_delay=0.0)
        else:
            framer = FramerType.RTU if s.transport == "rtu_over_tcp" else FramerType.SOCKET
            client = AsyncModbusTcpClient(s.host or "", port=s.tcp_port, framer=framer,
                                          timeout=s.timeout_s, retries=0, reconnect_delay=0.0)
        _guard_decoding(client.ctx)
        return client

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
        if self._client is None or not self._client.connected:   # the peer may have closed it
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
        except _Undecodable as e:
            raise MalformedAnswer(
                f"unit {unit} FC{function_code} @{address}: malformed answer: {e}") from None
        _raise_lost_cancellation()
        if rr.isError():
            code = getattr(rr, "exception_code", None)
            raise ExceptionResponse(
                f"unit {unit} FC{function_code} @{address}: exception response {code}", code)
        regs = list(rr.registers)
        if len(regs) != count:
            raise MalformedAnswer(f"unit {unit} FC{function_code} @{address}: malformed answer: "
                                  f"{len(regs)} registers where {count} were asked for")
        return regs


def _guard_decoding(ctx: TransactionManager) -> None:
    """Fail the pending request, instead of the transport, on an answer that does not decode.

    Wraps pymodbus's protocol callback (pymodbus 3.16: `TransactionManager.callback_data` and
    its `response_future`); the bytes of the bad frame are dropped."""
    decode = ctx.callback_data

    def callback_data(data: bytes, addr: tuple[str, int] | None = None) -> int:
        try:
            return decode(data, addr)
        except Exception as e:  # whatever pymodbus raises on a frame it cannot read
            if not ctx.response_future.done():
                ctx.response_future.set_exception(_Undecodable(_describe(ctx, data, e)))
            return len(data)

    ctx.callback_data = callback_data  # type: ignore[method-assign]


def _describe(ctx: TransactionManager, data: bytes, error: Exception) -> str:
    """What is wrong with an undecodable frame, in the same words each time it recurs."""
    try:
        pdu = ctx.framer.decode(data)[3]
    except Exception:  # a description must not fail
        pdu = b""
    if len(pdu) >= 2 and pdu[0] in (3, 4) and pdu[1] != len(pdu) - 2:
        return f"byte count {pdu[1]} but {len(pdu) - 2} data bytes in the PDU"
    return f"{error} (PDU {pdu[:16].hex(' ') or 'empty'})"


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
