import subprocess
import sys

import pytest

from gridnode.testing import ManualClock
from simulators.meters.model import DayProfile, SimMeter
from tests.net import pick_free_port

DAY0 = 1_780_012_800  # a UTC midnight


def test_day_profile_counters_follow_sun_and_load() -> None:
    clock = ManualClock(DAY0)
    m = SimMeter("s", clock=clock)
    m.update()
    imp0, exp0 = m.import_wh, m.export_wh
    clock.advance(3 * 3600)          # night: only import
    m.update()
    assert m.import_wh > imp0 and m.export_wh == exp0
    clock.advance(9 * 3600)          # noon: the PV array exports
    m.update()
    exp_noon = m.export_wh
    clock.advance(3600)
    m.update()
    assert m.export_wh - exp_noon > 1000
    assert DayProfile().solar_w(DAY0 + 12 * 3600) == pytest.approx(4000)


def test_faults() -> None:
    m = SimMeter("s", clock=ManualClock(DAY0))
    m.set_fault("nan")
    assert m.values()["import_wh"] is None
    m.set_fault("backward")
    assert m.values()["import_wh"] < m.values()["import_wh"]   # one glitched answer only
    m.set_fault("reset")
    assert m.values()["import_wh"] == 0
    with pytest.raises(ValueError, match="unknown fault"):
        m.set_fault("melt")


def test_cli_serves_tcp_and_rtu() -> None:
    for args in (["tcp", "--port", str(pick_free_port()), "--profile", "em24"], ["rtu", "--profile", "sdm120"]):
        out = subprocess.run([sys.executable, "-m", "simulators.meters", *args, "--run-for",
                              "0.3"], capture_output=True, text=True, timeout=30,
                             stdin=subprocess.DEVNULL)
        assert out.returncode == 0, out.stderr
        assert "unit 1" in out.stdout
