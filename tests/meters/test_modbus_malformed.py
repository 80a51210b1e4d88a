"""Malformed Modbus answers from a raw asyncio TCP server that counts what it receives.

A device (or gateway) that answers with a frame pymodbus cannot decode used to cost an asyncio
traceback per request and a timeout, and the bus asked it again within the same poll. Now each
poll sends one request, the read fails at once with the cause, and the cause is logged once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import AsyncIterator

import pytest
from pymodbus.framer import FramerRTU

from gridnode.meters.bus import BusMeter, BusPoller, BusTiming
from gridnode.meters.modbus_link import LinkSettings, ModbusLink
from gridnode.meters.profiles import load_profiles, raw_to_registers
from gridnode.testing import AcceleratedClock
from tests.meters.conftest import entry, make_recorder, running

START = 1_780_000_200.0
POLLS = 5


class RawMeterServer:
    """Answers FC3/FC4 reads of one unit, correctly or (while `malformed`) with a broken frame:
    on Modbus TCP a byte count beyond the end of the PDU, on RTU-over-TCP a valid frame holding
    more registers than were asked for. Every float32 register pair reads 50.0."""

    def __init__(self, framer: str) -> None:
        self.framer = framer
        self.malformed = True
        self.requests: list[float] = []
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    def _answer(self, fc: int, count: int) -> bytes:
        words = raw_to_registers(50.0, "float32", "big") * ((count + 1) // 2)
        data = b"".join(w.to_bytes(2, "big") for w in words[:count])
        if not self.malformed:
            return bytes([fc, len(data)]) + data
        if self.framer == "socket":
            return bytes([fc, 200]) + data[:4]
        data += data[:4]
        return bytes([fc, len(data)]) + data

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                if self.framer == "socket":
                    head = await reader.readexactly(7)
                    pdu = await reader.readexactly(int.from_bytes(head[4:6], "big") - 1)
                else:
                    frame = await reader.readexactly(8)
                    head, pdu = frame[:1], frame[1:6]
                self.requests.append(time.monotonic())
                fc, _, count = struct.unpack(">BHH", pdu[:5])
                body = self._answer(fc, count)
                if self.framer == "socket":
                    out = head[:4] + (len(body) + 1).to_bytes(2, "big") + head[6:7] + body
                else:
                    out = head[:1] + body
                    out += FramerRTU.compute_CRC(out).to_bytes(2, "big")
                writer.write(out)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[RawMeterServer]:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            for w in list(self._writers):
                w.close()
            self._server.close()
            await self._server.wait_closed()


@pytest.mark.parametrize("framer,transport,cause", [
    ("socket", "tcp", "byte count 200 but 4 data bytes in the PDU"),
    ("rtu", "rtu_over_tcp", "78 registers where 76 were asked for"),
])
async def test_malformed_answer_one_request_per_poll_one_log_line(
        store, caplog, framer: str, transport: str, cause: str) -> None:
    clock = AcceleratedClock(START)
    e = entry("m1", profile="sdm120")
    rec = make_recorder(store, [e], clock)
    server = RawMeterServer(framer)
    caplog.set_level(logging.INFO)
    async with server.running(), running(rec):
        link = ModbusLink(LinkSettings(transport, host="127.0.0.1", tcp_port=server.port,
                                       timeout_s=1.0))
        bm = BusMeter("m1", 1, load_profiles()["sdm120"], e.health)
        assert len(bm.blocks) == 1      # one request is one read of the meter
        bus = BusPoller("b", link, [bm], rec, BusTiming(retries=2, retry_delay_s=0.05), clock)
        per_poll: list[int] = []
        started = time.monotonic()
        for _ in range(POLLS):
            before = len(server.requests)
            assert await bus.poll_meter(bm) is None
            per_poll.append(len(server.requests) - before)
        elapsed = time.monotonic() - started
        server.malformed = False
        reading = await bus.poll_meter(bm)
        link.close()
    assert per_poll == [1] * POLLS, f"requests per poll: {per_poll}"
    assert elapsed < 1.0, f"{POLLS} polls took {elapsed:.2f} s: the reads waited for timeouts"
    assert e.health.errors == POLLS and cause in (e.health.last_error or "")
    records = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert not [r for r in records if r.name.startswith(("asyncio", "pymodbus"))]
    failed = [r for r in records if r.getMessage() == "meter read failed"]
    assert len(failed) == 1, [r.getMessage() for r in records]
    assert cause in str(failed[0].__dict__["gridnode_fields"]["error"])
    assert [r.getMessage() for r in records if r.name == "gridnode.meters"] == [
        "meter read failed", "meter answers again"]
    # the link stayed usable: the good answer came over the same connection
    assert reading is not None and reading.import_wh == pytest.approx(50_000.0)
