"""`gridnode run` with Modbus meters against the simulator, as separate processes: the daemon
builds the meters subsystem from the file, stores readings and health, and stops cleanly."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time

from tests.configs import modbus_meter, tcp_bus, write_config
from tests.net import pick_free_port


def test_gridnode_run_reads_the_simulator_and_stops_on_sigterm(tmp_path) -> None:
    port = pick_free_port()
    cfg = write_config(
        tmp_path / "gridnode.toml", node={"id": "daemon-test", "data_dir": str(tmp_path)},
        meters={"buses": [tcp_bus(port, modbus_meter("main", 1, "sdm630", 30000),
                                  modbus_meter("sub", 2, "em24", 30000),
                                  poll_interval_s=0.2, timeout_s=0.5)],
                # every reading a raw row, so the stored rows can be checked against the health
                "raw_every_s": 0})
    sim = subprocess.Popen([sys.executable, "-m", "simulators.meters", "tcp", "--port", str(port),
                            "--profile", "sdm630", "--profile", "em24", "--run-for", "30"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    node = None
    try:
        assert "unit 2 em24" in sim.stdout.readline()
        node = subprocess.Popen([sys.executable, "-m", "gridnode", "run", "-c", str(cfg)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        db = tmp_path / "gridnode.db"
        deadline = time.monotonic() + 20
        n = 0
        while time.monotonic() < deadline and n < 10:
            time.sleep(0.3)
            if db.exists():
                with sqlite3.connect(db) as c:
                    try:
                        n = c.execute("SELECT count(*) FROM readings WHERE meter_id = 'sub'"
                                      ).fetchone()[0]
                    except sqlite3.OperationalError:   # schema not there yet
                        n = 0
        node.send_signal(signal.SIGTERM)
        out, _ = node.communicate(timeout=15)
        assert node.returncode == 0, out
        assert n >= 10, out
        with sqlite3.connect(db) as c:
            health = dict(c.execute("SELECT meter_id, accepted FROM meter_health").fetchall())
            stored = dict(c.execute(
                "SELECT meter_id, count(*) FROM readings GROUP BY meter_id").fetchall())
        # the health flushed at shutdown counts every reading that was stored
        assert health == stored and set(stored) == {"main", "sub"}
    finally:
        for p in (node, sim):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
