"""Bus pollers against the real pymodbus simulator: Modbus TCP, RTU-over-TCP and RTU through a
pseudo-terminal pair, every profile, each fault mode, and the intervals that land in the store."""

from __future__ import annotations

import asyncio
import json

import pytest

from gridnode.meters.bus import BusMeter, BusPoller, BusTiming
from gridnode.meters.modbus_link import LinkSettings, ModbusLink
from gridnode.meters.profiles import load_profiles
from gridnode.testing import AcceleratedClock
from simulators.meters.modbus_server import ModbusRtuMeterServer, ModbusTcpMeterServer
from simulators.meters.model import SimMeter
from tests.meters.conftest import entry, intervals, make_recorder, operations, running

PROFILES = load_profiles()
NAMES = sorted(PROFILES)
START = 1_780_000_200.0 // 900 * 900 - 30    # just before an interval boundary


def setup(store, clock, names, meter_prefix="m"):
    sims = [SimMeter(f"{meter_prefix}{i + 1}", unit=i + 1, clock=clock) for i in range(len(names))]
    entries = [entry(s.meter_id, profile=n) for s, n in zip(sims, names, strict=True)]
    rec = make_recorder(store, entries, clock)
    bms = [BusMeter(e.meter_id, s.unit, PROFILES[n], e.health)
           for e, s, n in zip(entries, sims, names, strict=True)]
    return sims, entries, rec, bms


async def run_for(clock, sim_seconds: float) -> None:
    await asyncio.sleep(sim_seconds / clock.factor)


@pytest.mark.parametrize("transport", ["tcp", "rtu_over_tcp"])
async def test_every_profile_over_tcp_gives_intervals_and_operations(store, free_port, transport):
    clock = AcceleratedClock(START, factor=600)
    sims, entries, rec, bms = setup(store, clock, NAMES)
    framer = "rtu" if transport == "rtu_over_tcp" else "socket"
    async with ModbusTcpMeterServer([(s, PROFILES[n]) for s, n in zip(sims, NAMES, strict=True)],
                                    port=free_port, framer=framer):
        link = ModbusLink(LinkSettings(transport, host="127.0.0.1", tcp_port=free_port,
                                       timeout_s=0.5))
        bus = BusPoller("b", link, bms, rec, BusTiming(poll_interval_s=20), clock)
        async with running(rec, bus.run()):
            await run_for(clock, 2 * 900 + 120)
    for s, n in zip(sims, NAMES, strict=True):
        ivs = await intervals(store, s.meter_id)
        assert len(ivs) >= 2, n
        for iv in ivs:
            assert iv["interval_end"] - iv["interval_start"] == 900 and iv["interval_end"] % 900 == 0
            assert iv["import_wh"] + iv["export_wh"] > 0, n
            assert iv["backfilled"] == 0
    ops = await operations(store)
    assert len(ops) == sum([len(await intervals(store, s.meter_id)) for s in sims])
    op = json.loads(ops[0]["payload"])
    assert ops[0]["tx_type"] == "meter_reading"
    assert ops[0]["idempotency_key"] == f"meter_reading:{op['meter_id']}:{op['interval_end']}"
    assert set(op) == {"meter_id", "interval_start", "interval_end", "energy_produced_wh",
                       "energy_consumed_wh", "backfilled"}


@pytest.mark.parametrize("transport", ["rtu_pty", "tcp"])
async def test_fault_modes(store, free_port, transport):
    """No answer, slow answer, garbage (CRC errors on RTU) and NaN, then recovery. "rtu_pty" is
    the real serial path: pyserial opens a pty whose peer carries the pymodbus RTU server."""
    clock = AcceleratedClock(START, factor=300)
    names = ["sdm630", "sdm120", "em24", "sdm72", "sdm630"]
    sims, entries, rec, bms = setup(store, clock, names)
    good, silent, garbled, nan, slow = sims
    silent.set_fault("no_answer")
    garbled.set_fault("garbage")
    nan.set_fault("nan")
    slow.set_fault("slow")
    slow.slow_s = 0.6
    pairs = [(s, PROFILES[n]) for s, n in zip(sims, names, strict=True)]
    if transport == "tcp":
        server = ModbusTcpMeterServer(pairs, port=free_port)
        settings = LinkSettings("tcp", host="127.0.0.1", tcp_port=free_port, timeout_s=0.3)
    else:
        server = ModbusRtuMeterServer(pairs, baudrate=19200)
        settings = LinkSettings("rtu", port=server.client_path, baudrate=19200, timeout_s=0.3)
    async with server:
        link = ModbusLink(settings)
        bus = BusPoller("rs485", link, bms, rec,
                        BusTiming(poll_interval_s=30, retries=1, retry_delay_s=0.5,
                                  slave_pause_s=0.2), clock)
        async with running(rec, bus.run()):
            await run_for(clock, 900 + 200)
            for s in sims:
                s.set_fault("none")
            await run_for(clock, 2 * 900)
            await rec.flush_health()
    health = {e.meter_id: e.health for e in entries}
    for s in (silent, garbled, slow):
        assert health[s.meter_id].errors > 0, s.meter_id
    assert health[nan.meter_id].rejections["no_data"] > 0
    assert health[good.meter_id].errors == 0 and health[good.meter_id].accepted > 10
    # nothing stored while a meter failed; it recovered once the fault cleared
    for s in sims:
        assert await intervals(store, s.meter_id), s.meter_id
    rows = await store.fetchall("SELECT meter_id, rejections, errors FROM meter_health")
    assert {r["meter_id"] for r in rows} == {s.meter_id for s in sims}
    assert json.loads(next(r for r in rows if r["meter_id"] == nan.meter_id)["rejections"])


async def test_counter_faults_reset_and_backward(store, free_port):
    clock = AcceleratedClock(START, factor=300)
    sims, entries, rec, bms = setup(store, clock, ["sdm630", "sdm630"])
    glitchy, resetting = sims
    async with ModbusTcpMeterServer([(s, PROFILES["sdm630"]) for s in sims], port=free_port):
        link = ModbusLink(LinkSettings("tcp", host="127.0.0.1", tcp_port=free_port,
                                       timeout_s=0.5))
        bus = BusPoller("b", link, bms, rec, BusTiming(poll_interval_s=15), clock)
        async with running(rec, bus.run()):
            await run_for(clock, 300)
            glitchy.set_fault("backward")
            resetting.set_fault("reset")
            await run_for(clock, 2 * 900)
    h = {e.meter_id: e.health for e in entries}
    assert h[glitchy.meter_id].rejections["backward"] == 1
    assert h[resetting.meter_id].rejections["backward"] == 1   # the first low reading
    # no stored reading ever below the previous one for the glitching meter
    vals = [r["import_wh"] for r in await store.fetchall(
        "SELECT import_wh FROM readings WHERE meter_id = ? ORDER BY read_at_ms",
        (glitchy.meter_id,))]
    assert vals == sorted(vals)
    # the reset meter's intervals stay small (no counter-sized spike)
    for iv in await intervals(store, resetting.meter_id):
        assert iv["import_wh"] + iv["export_wh"] < 5000


@pytest.mark.parametrize("common_length,before", [(65, ()), (66, ((103, 50), (160, 28)))])
async def test_sunspec_model_is_found_in_the_chain(store, free_port, common_length, before):
    """Fronius-style (65-register common model) and SolarEdge-style (meter behind inverter
    models) maps: the meter model is found wherever it sits."""
    clock = AcceleratedClock(START, factor=600)
    names = ["sunspec203", "sunspec201"]
    sims, entries, rec, bms = setup(store, clock, names)
    async with ModbusTcpMeterServer([(s, PROFILES[n]) for s, n in zip(sims, names, strict=True)],
                                    port=free_port, sunspec_common_length=common_length,
                                    sunspec_models_before=before):
        link = ModbusLink(LinkSettings("tcp", host="127.0.0.1", tcp_port=free_port,
                                       timeout_s=0.5))
        bus = BusPoller("b", link, bms, rec, BusTiming(poll_interval_s=20), clock)
        async with running(rec, bus.run()):
            await run_for(clock, 60)
    expected = 40004 + common_length + sum(2 + n for _, n in before) + 2
    assert [bm.base for bm in bms] == [expected, expected]
    for s in sims:
        row = await store.fetchone("SELECT import_wh, export_wh, voltage_v FROM readings "
                                   "WHERE meter_id = ? ORDER BY read_at_ms DESC", (s.meter_id,))
        assert row["import_wh"] == pytest.approx(s.import_wh, abs=2)
        assert row["export_wh"] == pytest.approx(s.export_wh, abs=2)
        assert row["voltage_v"] == pytest.approx(230.0)


async def test_em24_without_the_export_register(store, free_port):
    """Some EM24s refuse 0x005C (exception 2): gridnode reads the rest, asks once, stores
    import-only readings."""
    clock = AcceleratedClock(START, factor=600)
    sims, entries, rec, bms = setup(store, clock, ["em24"])
    sims[0].absent = ("export_wh",)
    async with ModbusTcpMeterServer([(sims[0], PROFILES["em24"])], port=free_port):
        link = ModbusLink(LinkSettings("tcp", host="127.0.0.1", tcp_port=free_port,
                                       timeout_s=0.5))
        bus = BusPoller("b", link, bms, rec, BusTiming(poll_interval_s=20), clock)
        async with running(rec, bus.run()):
            await run_for(clock, 900 + 120)
    h = entries[0].health
    assert h.errors == 0 and h.accepted > 10 and len(bms[0].absent) == 1
    rows = await store.fetchall("SELECT import_wh, export_wh FROM readings")
    assert rows and all(r["export_wh"] is None and r["import_wh"] > 0 for r in rows)
    assert await intervals(store, sims[0].meter_id)


async def test_implausible_instantaneous_values_are_not_stored(store, free_port):
    """A meter reporting -5 V and 1 MHz: its counters are stored, those two values are not."""
    clock = AcceleratedClock(START, factor=600)
    sims, entries, rec, bms = setup(store, clock, ["sdm630"])
    sims[0].voltage_v, sims[0].frequency_hz = -5.0, 1e6
    async with ModbusTcpMeterServer([(sims[0], PROFILES["sdm630"])], port=free_port):
        link = ModbusLink(LinkSettings("tcp", host="127.0.0.1", tcp_port=free_port,
                                       timeout_s=0.5))
        bus = BusPoller("b", link, bms, rec, BusTiming(poll_interval_s=20), clock)
        async with running(rec, bus.run()):
            await run_for(clock, 300)
    h = entries[0].health
    rows = await store.fetchall("SELECT import_wh, power_w, voltage_v, frequency_hz, current_a "
                                "FROM readings")
    assert len(rows) == h.accepted > 5
    assert all(r["import_wh"] > 0 and r["power_w"] is not None for r in rows)
    assert all(r["voltage_v"] is None and r["frequency_hz"] is None for r in rows)
    assert h.rejections["implausible_value"] == h.accepted
