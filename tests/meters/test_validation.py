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
