"""`make demo` stops the processes it started, whatever ends it.

The children (localnet, meter simulators, gridnode) run in sessions of their own, so nothing but
the demo stops them. `make demo | tee log` and Ctrl-C used to leave them all running: the SIGINT
killed tee as well, and the demo died on the broken pipe while printing "stopping ...".
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def read_until(fd: int, marker: bytes, timeout_s: float) -> bytes:
    """What the demo printed, up to `marker` (or EOF)."""
    out = b""
    deadline = time.monotonic() + timeout_s
    while marker not in out:
        left = deadline - time.monotonic()
        assert left > 0, f"no {marker!r} within {timeout_s} s; got {out.decode()[-2000:]}"
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            out += chunk
    return out


def children(pid: int) -> list[int]:
    """Processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("ending", ["ctrl-c-with-tee", "sigterm", "sighup", "output-closed"])
def test_the_demo_stops_its_children_whatever_ends_it(tmp_path: Path, ending: str) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "simulators.demo", "--run-dir",
                             str(tmp_path / "demo")], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    started: list[int] = []
    try:
        shown = read_until(fd, b"gridnode running", 120)
        assert b"$ gridnode register user --type prosumer" in shown
        started = children(proc.pid)
        # localnet, Modbus meters, MQTT meters, gridnode (and mosquitto when none was running)
        assert len(started) >= 4, started
        if ending == "ctrl-c-with-tee":
            # The terminal's SIGINT reaches the demo and its reader (tee) at once.
            proc.stdout.close()
            proc.send_signal(signal.SIGINT)
        elif ending == "output-closed":
            proc.stdout.close()         # the reader went away; the next status line finds out
        else:
            proc.send_signal(signal.SIGTERM if ending == "sigterm" else signal.SIGHUP)
            rest = read_until(fd, b"stopped localnet", 60)
            assert rest.index(b"stopped gridnode") < rest.index(b"stopped localnet")
        assert proc.wait(timeout=60) == 0
        deadline = time.monotonic() + 10
        while any(alive(p) for p in started) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [p for p in started if alive(p)] == []
    finally:
        for p in [proc.pid, *started]:
            if alive(p):
                os.kill(p, signal.SIGKILL)
        proc.wait()
