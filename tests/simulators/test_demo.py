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
from solders.pubkey import Pubkey

from gridnode.chain.txtypes import new_operation
from gridnode.chain.validation import (
    MarketClearingPayload,
    MeterReadingPayload,
    UserRegistrationPayload,
)
from gridnode.store import Store, operations
from gridnode.store.operations import ChainEvent, NewAttempt
from simulators.demo import snapshot, status_line

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
        assert b"$ gridnode register user " in shown and b" --type prosumer " in shown
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


async def test_the_status_line_counts_what_the_node_stored(tmp_path: Path) -> None:
    db = tmp_path / "gridnode.db"
    assert await snapshot(db) == {} and not db.exists()     # the node has not started yet
    store = await Store.open(db)
    try:
        assert await snapshot(db) == {"ops": {}, "reg": {}, "readings": 0, "events": 0,
                                      "txs": 0, "intervals": []}
        ops = []
        async with store.write() as tx:
            await tx.execute("INSERT INTO meters (meter_id, source, created_at_ms, updated_at_ms) "
                             "VALUES ('m1', 'mqtt', 0, 0)")
            await tx.execute("INSERT INTO readings (meter_id, read_at_ms, received_at_ms, "
                             "import_wh) VALUES ('m1', 1000, 1000, 1.5), ('m1', 2000, 2000, 2.5)")
            for meter in ("m1", "m2", "m3"):
                op_id, _ = await operations.add(tx, new_operation(MeterReadingPayload(
                    meter_id=meter, interval_start=0, interval_end=60, energy_produced_wh=5,
                    energy_consumed_wh=2)))
                ops.append(op_id)
            await operations.add(tx, new_operation(UserRegistrationPayload(
                user=str(Pubkey.default()), user_type="prosumer", location="x")))
            # the market's operations are not registrations (they have lines of their own)
            await operations.add(tx, new_operation(MarketClearingPayload(epoch=1)))
            await operations.record_signed(tx, NewAttempt("sig", b"x", "h", 9, 1, 1),
                                           [(ops[0], 0), (ops[1], 1)])
            for op_id in ops[:2]:
                await operations.move(tx, op_id, "submitted", reason="sent")
                await operations.move(tx, op_id, "finalized", reason="finalized")
            await operations.record_finalized(tx, "sig", 5000, 7, [
                ChainEvent("sig", op_id, "oracle", "MeterReadingSubmitted",
                           f'{{"timestamp": {t}, "energy_produced": {p}, "energy_consumed": 2}}',
                           7)
                for op_id, t, p in ((ops[0], 60, 5), (ops[1], 60, 4), (ops[0], 120, 1))])
        s = await snapshot(db)
    finally:
        await store.close()
    assert s == {"ops": {"finalized": 2, "pending": 1}, "reg": {"pending": 1}, "readings": 2,
                 "events": 3, "txs": 1, "intervals": [(60, 2, 9, 4), (120, 1, 1, 2)]}
    line = status_line(s)
    assert "meters registering {'pending': 1} | raw readings 2 | interval ops pending=1 " \
        "finalized=2 | txs 1 | finalized MeterReadingSubmitted 3" in line
