import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from gridnode.meters.payloads import FORMATS, PayloadError, generic_format, parse
from gridnode.meters.signatures import canonical_message

BERLIN = ZoneInfo("Europe/Berlin")
NOW = 1_780_000_000_000


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def test_tasmota_local_time_in_the_configured_zone_summer_and_winter() -> None:
    tf = FORMATS["tasmota"].topics[0]
    for local, utc in (("2026-07-01T14:00:00", "2026-07-01T12:00:00+00:00"),
                       ("2026-01-15T14:00:00", "2026-01-15T13:00:00+00:00")):
        doc = {"Time": local, "ENERGY": {"Total": 1234.567, "ExportActive": 12.5, "Power": 300,
                                         "Voltage": 231, "Current": 1.3}}
        p = parse(tf, json.dumps(doc).encode(), "t1", BERLIN, NOW)
        assert p.reading.read_at_ms == ms(utc)
        assert p.reading.import_wh == pytest.approx(1_234_567.0)
        assert p.reading.export_wh == pytest.approx(12_500.0) and p.reading.power_w == 300


def test_shelly_emdata_counters_and_em_instantaneous() -> None:
    emdata, em = FORMATS["shelly"].topics
    p = parse(emdata, b'{"id":0,"total_act":5000.5,"total_act_ret":12.25}', "s1", BERLIN, NOW)
    assert p.counters and p.reading.read_at_ms == NOW and p.reading.import_wh == 5000.5
    q = parse(em, b'{"id":0,"total_act_power":-350.0,"a_voltage":229.9}', "s1", BERLIN, NOW)
    assert not q.counters and q.reading.power_w == -350.0 and q.reading.import_wh is None
    with pytest.raises(PayloadError) as e:
        parse(emdata, b'{"id":0}', "s1", BERLIN, NOW)
    assert e.value.reason == "no_data"


def test_gridtokenx_deltas_sequence_and_signed_message() -> None:
    tf = FORMATS["gridtokenx"].topics[0]
    doc = {"meter_id": "g1", "timestamp": "2026-05-28T20:00:00+00:00", "sequence_number": 7,
           "energy_consumed": 0.25, "energy_generated": 1.5, "meter_signature": "abc"}
    p = parse(tf, json.dumps(doc).encode(), "g1", BERLIN, NOW)
    assert p.delta and p.reading.sequence == 7 and p.reading.import_wh == 250.0
    t = ms("2026-05-28T20:00:00+00:00")
    assert p.reading.read_at_ms == t
    assert p.reading.signed_message == canonical_message("g1", 1.25, t, 7) == b"g1:1.250000:%d:7" % t


def test_generic_units_and_times() -> None:
    fmt = generic_format("{topic}", {"import_wh": ("a.b", "MWh"), "power_w": ("p", "kW")},
                         "ts", "unix_ms")
    p = parse(fmt.topics[0], b'{"a":{"b":"0.5"},"p":2,"ts":1780000000123}', "x", BERLIN, NOW)
    assert p.reading.import_wh == 500_000.0 and p.reading.power_w == 2000.0
    assert p.reading.read_at_ms == 1_780_000_000_123


@pytest.mark.parametrize("payload,reason", [
    (b"", "malformed"), (b"[1]", "malformed"), (b'{"ENERGY":{"Total":true}}', "malformed"),
    (b'{"Time":"2026-07-01T14:00:00","ENERGY":{"Total":NaN}}', "no_data"),
    (b'{"Time":"noon","ENERGY":{"Total":1}}', "malformed"),
    (b'{"ENERGY":{"Total":1}}', "malformed"),            # no time
    (b"[" * 100_000, "malformed"),
])
def test_bad_payloads_say_why(payload: bytes, reason: str) -> None:
    with pytest.raises(PayloadError) as e:
        parse(FORMATS["tasmota"].topics[0], payload, "t1", BERLIN, NOW)
    assert e.value.reason == reason


def test_utc_default_for_offsetless_iso() -> None:
    fmt = generic_format("{topic}", {"import_wh": ("e", "Wh")}, "t", "iso")
    p = parse(fmt.topics[0], b'{"e":1,"t":"2026-01-01T00:00:00"}', "x", BERLIN, NOW)
    assert p.reading.read_at_ms == int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)


def test_tasmota_multi_channel_arrays() -> None:
    doc = {"Time": "2022-11-24T13:04:03", "ENERGY": {
        "TotalStartTime": "2022-11-22T13:42:58", "Total": 0.00627, "Yesterday": -0.00006,
        "Today": 0.00634, "ExportActive": [0.02465, 0.00001, 0.00001],
        "Power": [-0.2, 0.0, 0.0], "Frequency": [49.96, 48.85, 136.83],
        "Voltage": [236.9, 0.1, 0.1], "Current": [0.013, 0.014, 0.013]}}
    p = parse(FORMATS["tasmota"].topics[0], json.dumps(doc).encode(), "t1", BERLIN, NOW)
    assert p.reading.export_wh == pytest.approx(24.67)
    assert p.reading.voltage_v == 236.9 and p.reading.current_a == pytest.approx(0.040)
    with pytest.raises(PayloadError):
        parse(FORMATS["tasmota"].topics[0],
              json.dumps({**doc, "ENERGY": {"Total": [1, "x"]}}).encode(), "t1", BERLIN, NOW)


def test_gridtokenx_payload_for_another_meter_is_refused() -> None:
    doc = {"meter_id": "other", "timestamp": "2026-05-28T20:00:00Z", "energy_consumed": 0.1}
    with pytest.raises(PayloadError) as e:
        parse(FORMATS["gridtokenx"].topics[0], json.dumps(doc).encode(), "g1", BERLIN, NOW)
    assert e.value.reason == "unknown_meter"


# Every format, with the import counter written as X (raw JSON text) next to a valid value.
AUDIT = {
    "tasmota": (FORMATS["tasmota"].topics[0],
                '{"Time":"2026-07-01T14:00:00","ENERGY":{"Total":X,"ExportActive":1.5,"Power":X}}'),
    "shelly": (FORMATS["shelly"].topics[0], '{"id":0,"total_act":X,"total_act_ret":12.5}'),
    "gridtokenx": (FORMATS["gridtokenx"].topics[0],
                   '{"meter_id":"m","timestamp":"2026-05-28T20:00:00Z","sequence_number":3,'
                   '"energy_consumed":X,"energy_generated":0.0015,"voltage":X}'),
    "generic": (generic_format("{topic}", {"import_wh": ("e", "kWh"), "power_w": ("p", "W"),
                                           "export_wh": ("x", "Wh")}, "ts", "unix_s",
                               delta=True).topics[0], '{"e":X,"p":X,"x":1.5,"ts":1780000000}'),
}
NO_DATA = ['"NaN"', '"nan"', '" inf "', '"-Infinity"', "NaN", "Infinity", "-Infinity", "null",
           "1e400", "[1, NaN]"]
MALFORMED = ["true", "false", '"1_000"', '"0x10"', '"\\u0661\\u0662"', '"12 kWh"', '""', "{}",
             "1" + "0" * 400]


@pytest.mark.parametrize("fmt", sorted(AUDIT))
@pytest.mark.parametrize("token", NO_DATA)
def test_nan_inf_and_null_are_no_data_never_zero_in_every_format(fmt: str, token: str) -> None:
    tf, template = AUDIT[fmt]
    p = parse(tf, template.replace("X", token).encode(), "m", BERLIN, NOW)
    assert p.reading.import_wh is None, "no data must not become a number (or zero)"
    assert p.reading.export_wh == pytest.approx(
        {"tasmota": 1500.0, "shelly": 12.5, "gridtokenx": 1.5, "generic": 1.5}[fmt])
    assert p.reading.power_w is None and p.reading.voltage_v is None


@pytest.mark.parametrize("fmt", sorted(AUDIT))
@pytest.mark.parametrize("token", MALFORMED)
def test_booleans_odd_strings_and_huge_ints_are_malformed_in_every_format(
        fmt: str, token: str) -> None:
    tf, template = AUDIT[fmt]
    with pytest.raises(PayloadError) as e:
        parse(tf, template.replace("X", token, 1).replace("X", "1").encode(), "m", BERLIN, NOW)
    assert e.value.reason == "malformed"


def test_numbers_as_decimal_strings_still_read() -> None:
    tf, template = AUDIT["shelly"]
    for token, wh in (('"5000.5"', 5000.5), ('" -1e3 "', -1000.0), ('".5"', 0.5), ("7", 7.0)):
        assert parse(tf, template.replace("X", token).encode(), "m", BERLIN, NOW
                     ).reading.import_wh == wh


def test_out_of_range_after_the_unit_and_negative_deltas_are_refused() -> None:
    tasmota, template = AUDIT["tasmota"]
    with pytest.raises(PayloadError) as e:   # 1e306 kWh is beyond the float range in Wh
        parse(tasmota, template.replace("X", "1e306", 1).replace("X", "1").encode(), "m",
              BERLIN, NOW)
    assert e.value.reason == "malformed"
    gx, template = AUDIT["gridtokenx"]
    with pytest.raises(PayloadError) as e:
        parse(gx, template.replace("X", "-0.5", 1).replace("X", "230").encode(), "m", BERLIN,
              NOW)
    assert e.value.reason == "invalid" and "negative energy delta" in str(e.value)
