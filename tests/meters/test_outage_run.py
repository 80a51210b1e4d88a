"""A multi-hour accelerated run with a 40-minute outage in the middle."""

from __future__ import annotations

import asyncio
import math

from gridnode.meters.bus import BusPoller, BusTiming
from gridnode.meters.modbus_link import LinkSettings, ModbusLink
from gridnode.testing import AcceleratedClock
from simulators.meters.modbus_server import ModbusTcpMeterServer
from tests.meters.conftest import intervals, running
from tests.meters.test_modbus_bus import PROFILES, setup

START = 1_780_000_000 // 900 * 900 + 300   # 05:00 + 5 min UTC-ish; the day profile turns solar on


async def test_four_hours_with_a_40_minute_outage(store, free_port) -> None:
    clock = AcceleratedClock(START, factor=2000)
    names = ["sdm630", "em24", "sunspec203"]
    sims, entries, rec, bms = setup(store, clock, names)
    async with ModbusTcpMeterServer([(s, PROFILES[n]) for s, n in zip(sims, names, strict=True)],
                                    port=free_port):
        link = ModbusLink(LinkSettings("tcp", host="127.0.0.1", tcp_port=free_port,
                                       timeout_s=0.2))
        bus = BusPoller("b", link, bms, rec, BusTiming(poll_interval_s=30, retries=0), clock)
        async with running(rec, bus.run()):
            await asyncio.sleep(7200 / clock.factor)
            for s in sims:
                s.set_fault("no_answer")
            outage_start = clock.time()
            await asyncio.sleep(2400 / clock.factor)
            for s in sims:
                s.set_fault("none")
            outage_end = clock.time()
            await asyncio.sleep(7200 / clock.factor)
    for s in sims:
        ivs = await intervals(store, s.meter_id)
        starts = [iv["interval_start"] for iv in ivs]
        # one interval per 15 minutes, no gaps, no doubles, over about 4 h 40 min
        assert starts == list(range(starts[0], starts[-1] + 1, 900)), s.meter_id
        assert len(starts) >= 4 * 4   # 4 h 40 min, less the partial first and last intervals
        for col, cs, ce in (("import_wh", "counter_import_start", "counter_import_end"),
                            ("export_wh", "counter_export_start", "counter_export_end")):
            assert sum(iv[col] for iv in ivs) == math.floor(ivs[-1][ce] - ivs[0][cs])
            for a, b in zip(ivs, ivs[1:], strict=False):
                assert a[ce] == b[cs]     # boundaries chain: no energy lost between intervals
        back = [iv for iv in ivs if iv["backfilled"]]
        assert back, s.meter_id
        # exactly the intervals touching the outage are back-filled
        for iv in back:
            assert iv["interval_end"] >= outage_start - 30 and iv["interval_start"] <= outage_end + 30
        assert 2 <= len(back) <= 5
