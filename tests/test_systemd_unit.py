"""systemd/gridnode.service: verified by systemd itself, and hardened without losing serial ports."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from gridnode.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd" / "gridnode.service"
ANALYZE = shutil.which("systemd-analyze")


def _settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def _local_copy(tmp_path: Path) -> Path:
    """The unit with its ExecStart binary pointed at this checkout's gridnode (verify needs it)."""
    exe = shutil.which("gridnode", path=str(Path(REPO / ".venv" / "bin")))
    if exe is None:
        pytest.skip("gridnode is not installed in .venv (make setup installs it)")
    text = UNIT.read_text()
    new, count = re.subn(r"^ExecStart=\S+/gridnode ", f"ExecStart={exe} ", text, flags=re.M)
    assert count == 1
    copy = tmp_path / "gridnode.service"
    copy.write_text(new)
    return copy


def test_unit_settings_follow_the_service_contract() -> None:
    s = _settings()
    assert s["Type"] == ["notify"] and s["Restart"] == ["on-failure"]
    assert int(s["WatchdogSec"][0]) >= 10
    assert s["DynamicUser"] == ["yes"] and s["SupplementaryGroups"] == ["dialout"]
    assert s["StateDirectory"] == ["gridnode"] and s["ProtectSystem"] == ["strict"]
    assert s["LoadCredential"][0].startswith("keypair:")
    assert "PrivateDevices" not in s and "DevicePolicy" not in s   # serial ports stay visible
    assert s["RestartPreventExitStatus"] == ["2"]                  # config errors do not loop
    assert "StartLimitBurst" in s and "StartLimitIntervalSec" in s and "RestartSec" in s
    # The command line is one gridnode itself accepts.
    argv = shlex.split(s["ExecStart"][0])
    args = build_parser().parse_args(argv[1:])
    assert args.command == "run" and args.config == "/etc/gridnode/gridnode.toml"


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed (no systemd here)")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    assert ANALYZE is not None
    copy = _local_copy(tmp_path)
    proc = subprocess.run([ANALYZE, "verify", str(copy)], capture_output=True, text=True,
                          timeout=60)
    complaints = [line for line in proc.stderr.splitlines() if "gridnode.service" in line]
    assert proc.returncode == 0 and complaints == [], proc.stderr


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed (no systemd here)")
def test_security_exposure_is_low(tmp_path: Path) -> None:
    assert ANALYZE is not None
    copy = _local_copy(tmp_path)
    proc = subprocess.run([ANALYZE, "security", "--offline=yes", str(copy)],
                          capture_output=True, text=True, timeout=60)
    if "--offline" in proc.stderr and proc.returncode != 0:
        pytest.skip("this systemd-analyze has no offline security scoring (systemd < 250)")
    match = re.search(r"Overall exposure level for \S+: ([\d.]+)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    print(f"systemd-analyze security exposure: {match.group(1)}")
    assert float(match.group(1)) <= 3.0
