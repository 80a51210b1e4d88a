"""``make demo``: meters -> gridnode -> chain, on one machine, until Ctrl-C.

Starts, each as its own process:
  1. the localnet with the five programs and its bootstrap (keypairs, global accounts),
  2. the meter simulators: two meters on Modbus TCP, two publishing Tasmota JSON over MQTT
     (Mosquitto on 127.0.0.1:1883, started here when nothing listens there),
  3. gridnode with config/demo.toml (1-minute intervals), its addresses and key paths pointed
     at this run's processes (written to var/demo/gridnode.toml).
The prosumer and its meters are registered on chain through gridnode's own outbox first; then
every closed interval's readings travel as batched oracle transactions to finality. A status
line shows the flow; each closed interval gets a line of its own once its readings are final.
Ctrl-C stops everything (children first, in reverse order).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import sqlite3
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "var" / "demo"
CONFIG = REPO / "config" / "demo.toml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


class Processes:
    """Children started by the demo, stopped in reverse order."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, asyncio.subprocess.Process]] = []

    async def start(self, name: str, *args: str, log: Path) -> asyncio.subprocess.Process:
        out = log.open("ab")
        proc = await asyncio.create_subprocess_exec(
            *args, cwd=str(REPO), stdout=out, stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(REPO)},
            start_new_session=True)
        self.procs.append((name, proc))
        return proc

    async def stop(self) -> None:
        for name, proc in reversed(self.procs):
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    async with asyncio.timeout(10):
                        await proc.wait()
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
            print(f"  stopped {name}")

    def dead(self) -> list[str]:
        return [n for n, p in self.procs if p.returncode is not None]


async def wait_file(path: Path, proc: asyncio.subprocess.Process, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not await asyncio.to_thread(path.exists):
        if proc.returncode is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start; see {RUN / 'logs'}")
        await asyncio.sleep(0.1)


def demo_config(bootstrap: dict, modbus_port: int) -> Path:
    """config/demo.toml with this run's addresses and key files."""
    keys = bootstrap["keypairs"]
    text = CONFIG.read_text()
    for old, new in (
        ('"http://127.0.0.1:8899"', json.dumps(bootstrap["rpc_url"])),
        ('"ws://127.0.0.1:8900"', json.dumps(bootstrap["ws_url"])),
        ('"var/demo/chain/gateway.json"', json.dumps(str(keys["gateway"]))),
        ('"var/demo/chain/user-0.json"', json.dumps(str(keys["users"][0]))),
        ("port = 5020", f"port = {modbus_port}"),
    ):
        text = text.replace(old, new)
    path = RUN / "gridnode.toml"
    path.write_text(text)
    return path


async def enqueue(db: Path, owner: str, meters: list[str]) -> None:
    from gridnode.store import Store

    store = await Store.open(db)
    try:
        async with store.write() as tx:
            await tx.add_operation("user_registration", {
                "user": owner, "user_type": "prosumer", "location": "demo street 1"},
                f"user_registration:{owner}")
            for m in meters:
                await tx.add_operation("meter_registration", {
                    "owner": owner, "meter_id": m, "meter_type": "solar"},
                    f"meter_registration:{m}")
    finally:
        await store.close()


def snapshot(db: Path) -> dict:
    """Counts for the status line, read-only."""
    if not db.exists():
        return {}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=2)
    try:
        q = conn.execute
        ops = dict(q("SELECT status, count(*) FROM operations WHERE tx_type = 'meter_reading' "
                     "GROUP BY status").fetchall())
        reg = dict(q("SELECT status, count(*) FROM operations WHERE tx_type != 'meter_reading' "
                     "GROUP BY status").fetchall())
        readings = q("SELECT count(*) FROM readings").fetchone()[0]
        events = q("SELECT count(*) FROM chain_events WHERE name = 'MeterReadingSubmitted'").fetchone()[0]
        per_interval = q(
            "SELECT json_extract(data, '$.timestamp') AS t, count(*), "
            "sum(json_extract(data, '$.energy_produced')), sum(json_extract(data, '$.energy_consumed')) "
            "FROM chain_events WHERE name = 'MeterReadingSubmitted' GROUP BY t ORDER BY t").fetchall()
        txs = q("SELECT count(DISTINCT signature) FROM tx_attempts").fetchone()[0]
        return {"ops": ops, "reg": reg, "readings": readings, "events": events,
                "intervals": per_interval, "txs": txs}
    except sqlite3.Error:
        return {}
    finally:
        conn.close()


def status_line(s: dict) -> str:
    ops = s.get("ops", {})
    reg = s.get("reg", {})
    reg_text = "registered" if reg and set(reg) == {"finalized"} else f"registering {reg}"
    flow = " ".join(f"{k}={ops.get(k, 0)}" for k in ("pending", "signed", "submitted", "confirmed",
                                                     "finalized") if ops.get(k))
    return (f"{time.strftime('%H:%M:%S')} meters {reg_text} | raw readings {s.get('readings', 0)} | "
            f"interval ops {flow or '-'} | txs {s.get('txs', 0)} | "
            f"finalized MeterReadingSubmitted {s.get('events', 0)}")


async def run() -> int:
    if RUN.exists():
        shutil.rmtree(RUN)
    (RUN / "logs").mkdir(parents=True)
    procs = Processes()
    py = sys.executable
    try:
        rpc_port = free_port()
        print(f"gridnode demo: logs in {RUN / 'logs'}; Ctrl-C stops everything")
        net = await procs.start("localnet", py, "-m", "simulators.chain.localnet", "--port",
                                str(rpc_port), "--slot-ms", "400", "--state", str(RUN / "chain"),
                                "--bootstrap", log=RUN / "logs" / "localnet.log")
        await wait_file(RUN / "chain" / "bootstrap.json", net, "the localnet")
        bootstrap = json.loads((RUN / "chain" / "bootstrap.json").read_text())
        print(f"  localnet at {bootstrap['rpc_url']} (programs deployed, bootstrap done)")

        modbus_port = free_port()
        await procs.start("modbus meters", py, "-m", "simulators.meters", "tcp", "--port",
                          str(modbus_port), "--profile", "sdm630", "--profile", "sdm120",
                          log=RUN / "logs" / "modbus.log")
        print(f"  Modbus TCP meter simulator at 127.0.0.1:{modbus_port} (sdm630, sdm120)")
        if not port_open(1883):
            exe = shutil.which("mosquitto")
            if exe is None:
                print("  mosquitto is not installed: the MQTT meters will stay silent")
            else:
                await procs.start("mosquitto", exe, "-p", "1883", log=RUN / "logs" / "mosquitto.log")
                for _ in range(50):
                    if port_open(1883):
                        break
                    await asyncio.sleep(0.1)
        await procs.start("mqtt meters", py, "-m", "simulators.meters", "mqtt", "--format",
                          "tasmota", "--meters", "2", "--interval", "5",
                          log=RUN / "logs" / "mqtt.log")
        print("  MQTT meter simulator publishing Tasmota telemetry for 2 meters")

        config = demo_config(bootstrap, modbus_port)
        from gridnode.config import load_config
        from gridnode.keys import load_keypair

        cfg = load_config(config)
        owner = str(load_keypair(bootstrap["keypairs"]["users"][0]).pubkey())
        meter_ids = [m.meter_id for b in cfg.meters.buses for m in b.meters]
        if cfg.meters.mqtt is not None:
            meter_ids += [m.meter_id for m in cfg.meters.mqtt.meters]
        await enqueue(cfg.node.database, owner, meter_ids)
        await procs.start("gridnode", py, "-m", "gridnode", "run", "-c", str(config),
                                 log=RUN / "logs" / "gridnode.log")
        print(f"  gridnode running ({config.relative_to(REPO)}): registering {len(meter_ids)} "
              f"meters on chain, then one oracle reading per meter per minute")
        print(f"  inspect: .venv/bin/gridnode status -c {config.relative_to(REPO)}")
        shown: set[int] = set()
        while True:
            await asyncio.sleep(1.0)
            dead = procs.dead()
            if dead:
                print(f"\n{', '.join(dead)} stopped unexpectedly; see {RUN / 'logs'}")
                return 1
            s = snapshot(cfg.node.database)
            rows = s.get("intervals", [])
            for k, (t, n, produced, consumed) in enumerate(rows):
                complete = n >= len(meter_ids) or k < len(rows) - 1
                if complete and t not in shown:
                    shown.add(t)
                    print(f"\r\033[Kinterval ending {time.strftime('%H:%M', time.gmtime(t))} UTC: "
                          f"{n} finalized MeterReadingSubmitted events, produced {produced} Wh, "
                          f"consumed {consumed} Wh")
            print(f"\r\033[K{status_line(s)}", end="", flush=True)
    except (KeyboardInterrupt, asyncio.CancelledError):
        return 0
    finally:
        print("\nstopping ...")
        await procs.stop()


def main() -> int:
    try:
        return asyncio.run(run())
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
