import math

from solders.keypair import Keypair

from gridnode.meters.reading import Reading
from gridnode.meters.signatures import canonical_message
from gridnode.meters.validation import Limits, Validator

T0 = 1_700_000_000_000


def r(t_s: float, imp: float | None, exp: float | None = 0.0, **kw) -> Reading:
    return Reading("m1", T0 + int(t_s * 1000), T0 + int(t_s * 1000), imp, exp, **kw)


def test_sentinels_backward_reset_confirmation_and_plausibility() -> None:
    v = Validator(Limits(rated_power_w=10_000))
    now = T0 + 10_000_000
    assert v.check(r(0, 1000.0), now).accepted
    assert v.check(r(10, None), now).reason == "no_data"
    assert v.check(r(10, 1000.0, None), now).reason == "no_data"
    assert v.check(r(10, 1010.0), now).accepted
    assert v.check(r(10, 1010.0), now).reason == "duplicate"
    assert v.check(r(5, 1010.0), now).reason == "out_of_order"
    # 10 kW for 10 s is 27.8 Wh; with margin 1.5 about 42 Wh: 100 Wh is implausible
    assert v.check(r(20, 1110.0), now).reason == "implausible"
    assert v.check(r(20, 1030.0), now).accepted
    # one backward jump is rejected; a second reading below the old counter but rising from
    # the first confirms a reset
    assert v.check(r(30, 500.0), now).reason == "backward"
    # rising from a low value but far more than the meter can have counted since: no reset
    assert v.check(r(40, 510.0), now).reason == "backward"
    assert v.check(r(50, 4.0), now).reason == "backward"     # restarted from zero...
    verdict = v.check(r(60, 6.0), now)                        # ...and confirmed by rising
    assert verdict.accepted and verdict.reset
    assert v.check(r(70, 8.0), now).accepted


def test_clock_bounds() -> None:
    v = Validator(Limits(max_future_s=60, max_age_s=3600))
    now = T0
    assert v.check(r(120, 1.0), now).reason == "future"
    assert v.check(r(-7200, 1.0), now).reason == "too_old"
    assert v.check(r(-10, 1.0), now).accepted
    assert v.check(r(-10, -1.0), now).reason == "invalid"


def test_signatures_verified_when_the_meter_has_a_key() -> None:
    kp = Keypair()
    v = Validator(Limits(public_key=kp.pubkey()))
    msg = canonical_message("m1", 0.5, T0, 1)
    good = r(0, 1.0, sequence=1, signature=str(kp.sign_message(msg)), signed_message=msg)
    forged = r(10, 2.0, sequence=2, signature=str(Keypair().sign_message(msg)),
               signed_message=msg)
    assert v.check(r(0, 1.0), T0).reason == "unsigned"
    assert v.check(forged, T0 + 10_000).reason == "bad_signature"
    assert v.check(good, T0).accepted


def test_health_turns_stale_and_logs_rejections_once_per_burst(caplog) -> None:
    from gridnode.log import _FIELDS as FIELDS
    from gridnode.meters.health import MeterHealth

    h = MeterHealth("m1", "mqtt", stale_after_s=60)
    assert h.state(T0) == "unknown"
    h.good(T0)
    assert h.state(T0 + 59_000) == "online" and h.state(T0 + 61_000) == "stale"
    with caplog.at_level("WARNING"):
        for i in range(50):
            h.reject("malformed", "x", now_s=1000 + i)
        h.reject("malformed", "x", now_s=2000)
    lines = [r for r in caplog.records if "reading rejected" in r.getMessage()]
    assert len(lines) == 2
    assert [getattr(r, FIELDS)["suppressed"] for r in lines] == [0, 49]
    assert h.rejections["malformed"] == 51


def test_implausible_instantaneous_values_are_dropped_counters_kept() -> None:
    """Rated 10 kW, margin 1.5: |power| <= 15 kW, |current| <= 10 kW / (100 V x 0.5) x 1.5 =
    300 A; voltage 0..1000 V; frequency 40..70 Hz; NaN and infinity never."""
    v = Validator(Limits(rated_power_w=10_000))
    now = T0 + 10_000_000
    bad = r(0, 1000.0, power_w=1e308, voltage_v=-1e308, current_a=1e9, frequency_hz=1e6)
    verdict = v.check(bad, now)
    assert verdict.accepted and len(verdict.dropped) == 4
    assert (bad.import_wh, bad.power_w, bad.voltage_v, bad.current_a, bad.frequency_hz) == (
        1000.0, None, None, None, None)
    assert "voltage_v=-1e+308 V outside [0, 1000] V" in verdict.dropped
    edge = r(10, 1000.0, power_w=-15_000.0, voltage_v=1000.0, current_a=-300.0,
             frequency_hz=40.0)
    verdict = v.check(edge, now)
    assert verdict.accepted and verdict.dropped == ()
    assert (edge.power_w, edge.voltage_v, edge.current_a, edge.frequency_hz) == (
        -15_000.0, 1000.0, -300.0, 40.0)
    for i, (name, value) in enumerate((
            ("power_w", 15_001.0), ("voltage_v", -0.1), ("voltage_v", 1000.1),
            ("current_a", 300.1), ("frequency_hz", 39.9), ("frequency_hz", 70.1),
            ("power_w", math.nan), ("frequency_hz", math.inf))):
        reading = r(20 + i, 1000.0, **{name: value})
        verdict = v.check(reading, now)
        assert verdict.accepted and getattr(reading, name) is None, (name, value)
        assert verdict.dropped and verdict.dropped[0].startswith(f"{name}="), verdict.dropped
    # a rejected reading is judged by its counters alone and keeps its values untouched
    rejected = r(5, 1000.0, power_w=1e308)
    assert v.check(rejected, now).reason == "out_of_order" and rejected.power_w == 1e308


def test_counters_beyond_what_a_float_counts_are_invalid() -> None:
    v = Validator(Limits())
    assert v.check(r(0, float(2**53) * 2), T0).reason == "invalid"
    assert v.check(r(0, 1.0, math.nan), T0).reason == "invalid"
    assert v.check(r(0, float(2**53)), T0).accepted
