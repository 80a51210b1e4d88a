"""`ModbusLink` against the real pymodbus simulator: cancellation always stops a reading task."""

from __future__ import annotations

import asyncio
import random

from gridnode.meters.modbus_link import LinkSettings, ModbusLink
from gridnode.meters.profiles import load_profiles
from gridnode.testing import AcceleratedClock
from simulators.meters.modbus_server import ModbusTcpMeterServer
from simulators.meters.model import SimMeter

CANCELS = 300


async def test_a_cancel_racing_an_answer_is_never_lost(free_port) -> None:
    """pymodbus's `wait_for` on 3.11 drops a cancel that lands with the answer; the link must not.

    Without the guard about one cancel in ten was lost here and the task read on forever, which
    is how a bus task once outlived its daemon's shutdown.
    """
    sim = SimMeter("m1", unit=1, clock=AcceleratedClock(1_780_000_000))
    rng = random.Random(7)
    async with ModbusTcpMeterServer([(sim, load_profiles()["sdm630"])], port=free_port):
        link = ModbusLink(LinkSettings("tcp", host="127.0.0.1", tcp_port=free_port,
                                       timeout_s=0.5))

        async def read_forever() -> None:
            while True:
                await link.read(4, 0, 2, 1)

        lost = 0
        try:
            for _ in range(CANCELS):
                task = asyncio.create_task(read_forever())
                await asyncio.sleep(rng.uniform(0.0005, 0.005))
                task.cancel()
                done, _ = await asyncio.wait([task], timeout=1.0)
                if not done:
                    lost += 1
                    task.cancel()
                    await asyncio.wait([task], timeout=1.0)
                else:
                    assert task.cancelled()
        finally:
            link.close()
    assert lost == 0, f"{lost} of {CANCELS} cancellations were swallowed"
