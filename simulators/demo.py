"""``make demo``: meters -> gridnode -> chain, on one machine, until Ctrl-C.

Starts, each as its own process:
  1. the localnet with the five programs and its bootstrap (keypairs, global accounts),
  2. the meter simulators: two meters on Modbus TCP, two publishing Tasmota JSON over MQTT
     (Mosquitto on 127.0.0.1:1883, started here when nothing listens there),
  3. gridnode with config/demo.toml (1-minute intervals), its addresses and key paths pointed
     at this run's processes (written to var/demo/gridnode.toml).
The prosumer, the two consumers and their meters are registered on chain with `gridnode
register`, as an operator would, through gridnode's own outbox; then every closed interval's
readings travel as batched oracle transactions to finality. A status line shows the flow; each
closed interval gets a line of its own once its readings are final.

The market ([market] in config/demo.toml, the node holding the market authority): the PV meter
(its simulated day at noon) and the two consumers (without PV) are served by this
module's own child (`--market-meters`); the prosumer's surplus is minted as GRID and offered,
the consumers' deficits are bid for, each 1-minute epoch is cleared and settled, and a line per
epoch such as `epoch 22:15: 1 sell / 2 buy orders, 2 matches, 0.026 kWh at 0.145 avg,
2 settled, GRID balances ...` shows it.

The children run in sessions of their own (a Ctrl-C reaches only the demo), so the demo stops
them, in reverse order, whatever ends it: Ctrl-C (SIGINT), SIGTERM, SIGHUP (the terminal went
away), or a reader of its output that left (`make demo | tee log` and Ctrl-C kills tee too).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import sqlite3
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gridnode.chain.txtypes import TX_TYPES
from gridnode.chain.validation import (
    MeterReadingPayload,
    MeterRegistrationPayload,
    UserRegistrationPayload,
)
from gridnode.store import StoreError, meters, operations
from gridnode.store.readonly import ReadOnlyStore

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "var" / "demo"
CONFIG = REPO / "config" / "demo.toml"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Console:
    """The demo's output. Writing never raises: when the reader has gone (a closed pipe), output
    goes to /dev/null from then on and `on_gone` is called once, so the demo stops its children
    instead of dying on BrokenPipeError with them still running."""

    def __init__(self, on_gone: Callable[[], object]) -> None:
        self.on_gone = on_gone
        self.gone = False

    def say(self, text: str = "", end: str = "\n") -> None:
        if self.gone:
            return
        try:
            sys.stdout.write(text + end)
            sys.stdout.flush()
        except OSError:         # BrokenPipeError, or EIO from a terminal that hung up
            self.gone = True
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            self.on_gone()


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

    def __init__(self, console: Console) -> None:
        self.console = console
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
            self.console.say(f"  stopped {name}")

    def dead(self) -> list[str]:
        return [n for n, p in self.procs if p.returncode is not None]


async def wait_file(path: Path, proc: asyncio.subprocess.Process, what: str,
                    timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not await asyncio.to_thread(path.exists):
        if proc.returncode is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start; see {path.parent.parent / 'logs'}")
        await asyncio.sleep(0.1)


def demo_config(run_dir: Path, bootstrap: dict, modbus_port: int, api_port: int,
                platform_port: int = 8700, pv_port: int = 5021) -> Path:
    """config/demo.toml with this run's directory, addresses and key files."""
    keys = bootstrap["keypairs"]
    text = CONFIG.read_text()
    for old, new in (
        ('"var/demo/node"', json.dumps(str(run_dir / "node"))),
        ('"var/demo/api-jwt.secret"', json.dumps(str(run_dir / "api-jwt.secret"))),
        ("port = 8080", f"port = {api_port}"),
        ('"http://127.0.0.1:8899"', json.dumps(bootstrap["rpc_url"])),
        ('"ws://127.0.0.1:8900"', json.dumps(bootstrap["ws_url"])),
        ('"var/demo/chain/gateway.json"', json.dumps(str(keys["gateway"]))),
        ('"var/demo/chain/user-0.json"', json.dumps(str(keys["users"][0]))),
        ('"var/demo/chain/user-1.json"', json.dumps(str(keys["users"][1]))),
        ('"var/demo/chain/user-2.json"', json.dumps(str(keys["users"][2]))),
        ('"var/demo/chain/authority.json"', json.dumps(str(keys["authority"]))),
        ("port = 5021", f"port = {pv_port}"),
        ("port = 5020", f"port = {modbus_port}"),
        ("127.0.0.1:8700", f"127.0.0.1:{platform_port}"),
        ('"var/demo/upstream.secret"', json.dumps(str(run_dir / "upstream.secret"))),
    ):
        text = text.replace(old, new)
    path = run_dir / "gridnode.toml"
    path.write_text(text)
    return path


async def register(console: Console, config: Path, meters: list[str]) -> None:
    """The demo's users and their meters, registered as an operator does: `gridnode register`
    (each wallet is one of the configuration's user keypairs; [[market.users]] says whose
    meters are whose: the prosumer's are solar, the consumers' grid)."""
    from gridnode.config import load_config
    from gridnode.keys import load_keypair

    cfg = load_config(config)
    commands: list[list[str]] = []
    owned: set[str] = set()
    for u in cfg.market.users if cfg.market is not None else []:
        assert u.keypair is not None
        pubkey = str(load_keypair(u.keypair).pubkey())
        kind = "prosumer" if u.policy == "sell_surplus" else "consumer"
        commands.append(["user", pubkey, "--type", kind, "--location", f"demo street, {u.name}"])
        commands += [["meter", m, "--owner", pubkey, "--type",
                      "solar" if kind == "prosumer" else "grid"] for m in u.meters]
        owned.update(u.meters)
    commands += [["meter", m, "--type", "solar"] for m in meters if m not in owned]
    for args in commands:
        argv = ["register", *args, "-c", shown(config)]
        console.say("  $ gridnode " + " ".join(a if " " not in a else repr(a) for a in argv))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gridnode", *argv, cwd=str(REPO),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL)
        out, _ = await proc.communicate()
        for line in out.decode().splitlines()[:1]:
            console.say(f"    {line}")
        if proc.returncode != 0:
            raise RuntimeError(f"gridnode register failed: {out.decode().strip()}")


async def gridnode_cli(*argv: str) -> str:
    """Run the gridnode CLI as an operator would; its standard output (an error raises)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gridnode", *argv, cwd=str(REPO), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"gridnode {argv[0]} {argv[1]} failed: {err.decode().strip()}")
    return out.decode().strip()


async def dashboard_token(config: Path, secret: Path) -> str:
    """A fresh API secret for this run and an operator token for the dashboard (12 h)."""
    await gridnode_cli("token", "secret", str(secret))
    return await gridnode_cli("token", "issue", "--role", "operator", "--sub", "demo",
                              "--ttl", "12h", "-c", str(config))


def shown(path: Path) -> str:
    """A path as the operator would type it from the repository."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


READING_EVENT = "MeterReadingSubmitted"     # the oracle program's event for one reading


async def snapshot(db: Path) -> dict:
    """Counts for the status line, read from gridnode's database without writing to it: the
    operations of the oracle readings and of the registrations, the raw readings, the
    signed transactions, and the finalized reading events with their sums per interval end."""
    reading = next(t.name for t in TX_TYPES.values() if t.payload is MeterReadingPayload)
    registration = {t.name for t in TX_TYPES.values()
                    if t.payload in (UserRegistrationPayload, MeterRegistrationPayload)}
    try:
        async with await ReadOnlyStore.open(db) as store:
            by_type = await operations.status_counts_by_type(store)
            readings = await meters.reading_count(store)
            events = await operations.events(store, READING_EVENT)
            txs = await operations.attempt_count(store)
    except (StoreError, sqlite3.Error):     # not created yet, or its tables not yet
        return {}
    reg: dict[str, int] = {}
    for tx_type, counts in by_type.items():
        if tx_type in registration:     # the market's operations have lines of their own
            for status, n in counts.items():
                reg[status] = reg.get(status, 0) + n
    per_interval: dict[int, list[int]] = {}
    for e in events:
        data = json.loads(e.data)
        row = per_interval.setdefault(int(data["timestamp"]), [0, 0, 0])
        row[0] += 1
        row[1] += int(data["energy_produced"])
        row[2] += int(data["energy_consumed"])
    return {"ops": by_type.get(reading, {}), "reg": reg, "readings": readings,
            "events": len(events), "txs": txs,
            "intervals": [(t, *row) for t, row in sorted(per_interval.items())]}


async def platform_held(port: int) -> int | None:
    """How many items the platform simulator holds (None when it does not answer)."""
    def get() -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/stats", timeout=2) as resp:
            return int(json.loads(resp.read())["held"])
    try:
        return await asyncio.to_thread(get)
    except (OSError, ValueError, KeyError):
        return None


def status_line(s: dict) -> str:
    ops = s.get("ops", {})
    reg = s.get("reg", {})
    reg_text = "registered" if reg and set(reg) == {"finalized"} else f"registering {reg}"
    flow = " ".join(f"{k}={ops.get(k, 0)}" for k in ("pending", "signed", "submitted", "confirmed",
                                                     "finalized") if ops.get(k))
    return (f"{time.strftime('%H:%M:%S')} meters {reg_text} | raw readings {s.get('readings', 0)} | "
            f"interval ops {flow or '-'} | txs {s.get('txs', 0)} | "
            f"finalized MeterReadingSubmitted {s.get('events', 0)}"
            + (f" | platform holds {s['platform']}" if "platform" in s else ""))


async def run(run_dir: Path = RUN) -> int:
    """The demo until a stop signal or a closed output (0), or a child that died (1)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    console = Console(stop.set)
    procs = Processes(console)
    demo = asyncio.create_task(show(run_dir, procs, console))
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({demo, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (demo, stopped):
            task.cancel()
        await asyncio.gather(demo, stopped, return_exceptions=True)
        console.say("\nstopping ...")
        await procs.stop()      # further signals only set `stop` again: cleanup runs to its end
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
    if demo.cancelled():
        return 0
    if demo.exception() is not None:
        console.say(f"demo failed: {demo.exception()}")
        return 1
    return demo.result()


async def show(run_dir: Path, procs: Processes, console: Console) -> int:
    """Start everything, then show the flow; returns 1 when a child stops unexpectedly."""
    say = console.say
    logs = run_dir / "logs"
    py = sys.executable
    rpc_port = free_port()
    say(f"gridnode demo: logs in {logs}; Ctrl-C stops everything")
    net = await procs.start("localnet", py, "-m", "simulators.chain.localnet", "--port",
                            str(rpc_port), "--slot-ms", "400", "--state", str(run_dir / "chain"),
                            "--bootstrap", log=logs / "localnet.log")
    await wait_file(run_dir / "chain" / "bootstrap.json", net, "the localnet")
    bootstrap = json.loads((run_dir / "chain" / "bootstrap.json").read_text())
    say(f"  localnet at {bootstrap['rpc_url']} (programs deployed, bootstrap done)")

    modbus_port = free_port()
    await procs.start("modbus meters", py, "-m", "simulators.meters", "tcp", "--port",
                      str(modbus_port), "--profile", "sdm630", "--profile", "sdm120",
                      log=logs / "modbus.log")
    say(f"  Modbus TCP meter simulator at 127.0.0.1:{modbus_port} (sdm630, sdm120)")
    if not port_open(1883):
        exe = shutil.which("mosquitto")
        if exe is None:
            say("  mosquitto is not installed: the MQTT meters will stay silent")
        else:
            await procs.start("mosquitto", exe, "-p", "1883", log=logs / "mosquitto.log")
            for _ in range(50):
                if port_open(1883):
                    break
                await asyncio.sleep(0.1)
    pv_port = free_port()
    await procs.start("market meters", py, "-m", "simulators.demo", "--market-meters",
                      str(pv_port), log=logs / "market-meters.log")
    say(f"  market meters: a PV meter on Modbus TCP 127.0.0.1:{pv_port} (its sun at noon), two "
        "consumers without PV publishing Tasmota telemetry over MQTT")

    platform_port = free_port()
    await gridnode_cli("deliveries", "secret", str(run_dir / "upstream.secret"))
    platform = await procs.start(
        "platform", py, "-m", "simulators.platform", "--port", str(platform_port), "--db",
        str(run_dir / "platform.db"), "--secret",
        (run_dir / "upstream.secret").read_text().strip(), log=logs / "platform.log")
    for _ in range(100):
        if port_open(platform_port) or platform.returncode is not None:
            break
        await asyncio.sleep(0.1)
    say(f"  platform simulator at 127.0.0.1:{platform_port} receives the upstream deliveries")
    api_port = free_port()
    config = demo_config(run_dir, bootstrap, modbus_port, api_port, platform_port, pv_port)
    token = await dashboard_token(config, run_dir / "api-jwt.secret")
    from gridnode.config import load_config

    cfg = load_config(config)
    meter_ids = [m.meter_id for b in cfg.meters.buses for m in b.meters]
    if cfg.meters.mqtt is not None:
        meter_ids += [m.meter_id for m in cfg.meters.mqtt.meters]
    await register(console, config, meter_ids)
    await procs.start("gridnode", py, "-m", "gridnode", "run", "-c", str(config),
                      log=logs / "gridnode.log")
    say(f"  gridnode running ({shown(config)}): registering {len(meter_ids)} meters on chain, "
        "then one oracle reading per meter per minute")
    say(f"  inspect: .venv/bin/gridnode status -c {shown(config)}")
    for _ in range(300):                # the URL is printed once it answers
        if port_open(api_port) or procs.dead():
            break
        await asyncio.sleep(0.1)
    say(f"  dashboard: http://127.0.0.1:{api_port}/  (log in with this operator token, valid "
        f"12 h):\n    {token}")
    seen: set[int] = set()
    market = MarketLines(cfg, bootstrap["rpc_url"])
    while True:
        await asyncio.sleep(1.0)
        dead = procs.dead()
        if dead:
            say(f"\n{', '.join(dead)} stopped unexpectedly; see {logs}")
            return 1
        s = await snapshot(cfg.node.database)
        held = await platform_held(platform_port)
        if held is not None:
            s["platform"] = held
        rows = s.get("intervals", [])
        for k, (t, n, produced, consumed) in enumerate(rows):
            complete = n >= len(meter_ids) or k < len(rows) - 1
            if complete and t not in seen:
                seen.add(t)
                say(f"\r\033[Kinterval ending {time.strftime('%H:%M', time.gmtime(t))} UTC: "
                    f"{n} finalized MeterReadingSubmitted events, produced {produced} Wh, "
                    f"consumed {consumed} Wh")
        for line in await market.lines(cfg.node.database):
            say(f"\r\033[K{line}")
        say(f"\r\033[K{status_line(s)}", end="")


class MarketLines:
    """The line of each cleared epoch once its trades are settled (gridnode.market.report), with
    the GRID balances of the market's users read from chain."""

    def __init__(self, cfg: Any, rpc_url: str) -> None:
        from gridnode.chain.idl import load_idls
        from gridnode.keys import load_keypair
        from gridnode.market.users import grid_mint, token_account

        mint = grid_mint(load_idls())
        users = cfg.market.users if cfg.market is not None else []
        self.accounts = {u.name: token_account(load_keypair(u.keypair).pubkey(), mint)
                         for u in users if u.keypair is not None}
        self.rpc_url = rpc_url
        self.reported = 0

    async def lines(self, db: Path) -> list[str]:
        from gridnode.chain.accounts import token_balances
        from gridnode.chain.rpc import RpcPool, RpcUnavailable
        from gridnode.market.report import epoch_line
        from gridnode.store import market

        out: list[str] = []
        try:
            async with await ReadOnlyStore.open(db) as store:
                for row in await market.epochs_since(store, self.reported):
                    if await epoch_line(store, row) is None:
                        break
                    pool = RpcPool([self.rpc_url], commitment="confirmed")
                    try:
                        got = await token_balances(pool, list(self.accounts.values()))
                    finally:
                        await pool.close()
                    line = await epoch_line(store, row, {n: got[a] for n, a in
                                                         self.accounts.items()})
                    out.append(f"{line}")
                    self.reported = row.epoch
        except (StoreError, sqlite3.Error, OSError, RpcUnavailable):   # again next second
            pass
        return out


async def market_meters(pv_port: int, mqtt_port: int = 1883) -> None:
    """The market's meters, whatever the time of day: a PV prosumer's meter (SDM120 on Modbus
    TCP, which carries no time) whose simulated day stands at noon, exporting, and two consumers
    without PV (Tasmota over MQTT), importing. The energy flows at real speed."""
    from gridnode.meters.profiles import load_profiles
    from gridnode.testing import AcceleratedClock
    from simulators.meters.modbus_server import ModbusTcpMeterServer
    from simulators.meters.model import DayProfile, SimMeter
    from simulators.meters.mqtt_publisher import MqttMeterPublisher, PublishedMeter

    day = time.time() // 86400 * 86400
    pv = SimMeter("demo-pv", unit=1, clock=AcceleratedClock(start=day + 12 * 3600))
    server = ModbusTcpMeterServer([(pv, load_profiles()["sdm120"])], host="127.0.0.1",
                                  port=pv_port)
    await server.start()
    # Tasmota telemetry carries the meter's time: the consumers keep the real clock, without PV.
    pub = MqttMeterPublisher("127.0.0.1", mqtt_port, [
        PublishedMeter(SimMeter(f"sim-{n}", day=DayProfile(pv_peak_w=0.0,
                                                           base_load_w=600.0 + 300.0 * n)),
                       "tasmota", f"tele/demo-flat-{n}/SENSOR")
        for n in (1, 2)])
    print(f"pv meter on modbus tcp 127.0.0.1:{pv_port}; 2 consumers on mqtt", flush=True)
    try:
        while True:
            await asyncio.to_thread(pub.publish_all)
            await asyncio.sleep(5)
    finally:
        pub.disconnect()
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulators.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--market-meters", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", type=Path, default=RUN,
                        help=f"where this run's state and logs go, emptied first (default: {RUN})")
    args = parser.parse_args(argv)
    if args.market_meters:      # the demo's own child: the market's meters
        try:
            asyncio.run(market_meters(args.market_meters))
        except KeyboardInterrupt:
            pass
        return 0
    run_dir = args.run_dir.resolve()
    if run_dir.exists():
        shutil.rmtree(run_dir)
    (run_dir / "logs").mkdir(parents=True)
    try:
        return asyncio.run(run(run_dir))
    except KeyboardInterrupt:       # before the loop ran: nothing was started yet
        return 0


if __name__ == "__main__":
    sys.exit(main())
