"""The local API under load, and what that load does to the pipeline and to memory.

    .venv/bin/python bench/bench_api.py [--meters 10] [--idle-s 120] [--load-s 60]

Starts the localnet and a Modbus TCP meter simulator (`--meters` SDM630s on one bus) as child
processes, then `gridnode run` twice on fresh data directories with 1-minute intervals:

1. API off: its RSS once readings flow and `--warmup-s` has passed;
2. API on: its RSS at the same point; then `--idle-s` with no API traffic, then an open-loop load
   of 100 and then 500 requests/s (`--load-s` each), alternating `/api/v1/transactions/stats`
   and `/api/v1/meters` with an operator token. Each request's latency is counted from when it
   was due, so a server (or a load generator) falling behind shows up in the figures.

It prints the API's p50/p99 per endpoint and rate, the achieved rate and errors, the pipeline's
interval-close -> transaction-sent p50/p99 (intervals.created_at_ms -> the first send of the
operation's first transaction) for the intervals closed in the idle window and in the load
window, and the RSS the API adds (run 2 minus run 1; goal <= 10 MB). The load generator runs in
this process, gridnode and the localnet in their own; on a shared machine the figures move with
what else runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sqlite3
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gridnode.api.auth import Role, Secret, issue  # noqa: E402
from simulators.demo import free_port, port_open, wait_file  # noqa: E402

PATHS = ("/api/v1/transactions/stats", "/api/v1/meters")
RATES = (100, 500)
SECRET = b"bench-api-secret-of-at-least-32-bytes!!"


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def pct(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def config(run: Path, bootstrap: dict, modbus_port: int, meters: int, api_port: int | None
           ) -> Path:
    chain = {"rpc_urls": [bootstrap["rpc_url"]], "ws_urls": [bootstrap["ws_url"]]}
    lines = [
        "[node]", 'id = "bench-api"', f"data_dir = {json.dumps(str(run / 'node'))}",
        "[keys]", f"gateway_keypair = {json.dumps(str(bootstrap['keypairs']['gateway']))}",
        "[chain]", f"rpc_urls = {json.dumps(chain['rpc_urls'])}",
        f"ws_urls = {json.dumps(chain['ws_urls'])}", "require_registered_meters = false",
        "[[meters.buses]]", 'kind = "tcp"', 'name = "bench"', 'host = "127.0.0.1"',
        f"port = {modbus_port}", "timeout_s = 1.0", "poll_interval_s = 2",
    ]
    for n in range(1, meters + 1):
        lines += ["[[meters.buses.meters]]", f'meter_id = "m{n:02d}"', f"unit_id = {n}",
                  'profile = "sdm630"', "rated_power_w = 30000"]
    lines += ["[intervals]", "minutes = 1", "[logging]", 'level = "warning"']
    if api_port is not None:
        secret = run / "api-jwt.secret"
        secret.write_bytes(SECRET)
        secret.chmod(0o600)
        lines += ["[api]", "enabled = true", f"port = {api_port}",
                  f"jwt_secret_file = {json.dumps(str(secret))}", "rate_per_s = 10000",
                  "rate_burst = 100000"]
    path = run / "gridnode.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@contextlib.asynccontextmanager
async def child(*argv: str, log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(*argv, cwd=str(REPO), stdout=out,
                                                    stderr=asyncio.subprocess.STDOUT,
                                                    stdin=asyncio.subprocess.DEVNULL)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def query(db: Path, sql: str, params: Sequence[object] = ()) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as c:
        return list(c.execute(sql, params))


async def wait_readings(db: Path, proc: asyncio.subprocess.Process, timeout_s: float = 60
                        ) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise RuntimeError("gridnode stopped; see its log")
        if readings(db) > 0:
            return
        await asyncio.sleep(0.5)
    raise RuntimeError("no reading stored")


def readings(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        return int(query(db, "SELECT count(*) FROM readings")[0][0])
    except sqlite3.Error:       # not created yet
        return 0


def close_to_sent(db: Path, from_ms: int, to_ms: int) -> tuple[list[float], int]:
    """Seconds from each interval's close to its operation's first send, for the intervals
    closed in [from_ms, to_ms); and how many of those were not sent (yet)."""
    rows = query(db, "SELECT i.created_at_ms, (SELECT min(a.first_sent_at_ms) FROM "
                 "tx_attempt_operations t JOIN tx_attempts a ON a.id = t.attempt_id "
                 "WHERE t.operation_id = o.id) FROM intervals i JOIN operations o ON "
                 "o.idempotency_key = 'meter_reading:' || i.meter_id || ':' || i.interval_end "
                 "WHERE i.created_at_ms >= ? AND i.created_at_ms < ?", (from_ms, to_ms))
    sent = [(s - c) / 1000 for c, s in rows if s is not None]
    return sent, sum(1 for _, s in rows if s is None)


@dataclass
class Load:
    rate: int
    achieved: float
    errors: int
    latency_ms: dict[str, tuple[float, float, int]]     # path -> p50, p99, answered


async def load(url: str, token: str, rate: int, seconds: float) -> Load:
    """Open-loop load: request i is due at start + i/rate, whatever earlier ones are doing."""
    lat: dict[str, list[float]] = {p: [] for p in PATHS}
    errors = 0
    loop = asyncio.get_running_loop()
    headers = {"Authorization": f"Bearer {token}"}
    conn = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=conn) as session:
        async def one(path: str, due: float) -> None:
            nonlocal errors
            try:
                async with session.get(url + path, headers=headers) as resp:
                    await resp.read()
                    ok = resp.status == 200
            except aiohttp.ClientError:
                ok = False
            if ok:
                lat[path].append(loop.time() - due)
            else:
                errors += 1

        start = loop.time()
        tasks = []
        for i in range(int(rate * seconds)):
            due = start + i / rate
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.create_task(one(PATHS[i % len(PATHS)], due)))
        await asyncio.gather(*tasks)
        took = loop.time() - start
    done = sum(len(v) for v in lat.values())
    return Load(rate, round((done + errors) / took, 1), errors,
                {p: (pct(v, 50) * 1000, pct(v, 99) * 1000, len(v)) for p, v in lat.items()})


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--meters", type=int, default=10)
    ap.add_argument("--warmup-s", type=float, default=20)
    ap.add_argument("--idle-s", type=float, default=120)
    ap.add_argument("--load-s", type=float, default=60)
    a = ap.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        root = Path(tmp)
        rpc_port, modbus_port = free_port(), free_port()
        async with child(py, "-m", "simulators.chain.localnet", "--port", str(rpc_port),
                         "--slot-ms", "400", "--state", str(root / "chain"), "--bootstrap",
                         log=root / "localnet.log") as net:
            await wait_file(root / "chain" / "bootstrap.json", net, "the localnet")
            bootstrap = json.loads((root / "chain" / "bootstrap.json").read_text())
            profiles = [arg for _ in range(a.meters) for arg in ("--profile", "sdm630")]
            async with child(py, "-m", "simulators.meters", "tcp", "--port", str(modbus_port),
                             *profiles, log=root / "meters.log"):
                for _ in range(100):
                    if port_open(modbus_port):
                        break
                    await asyncio.sleep(0.1)
                rss: dict[str, int] = {}
                for name, with_api in (("api off", False), ("api on", True)):
                    run = root / name.replace(" ", "-")
                    run.mkdir()
                    api_port = free_port() if with_api else None
                    cfg = config(run, bootstrap, modbus_port, a.meters, api_port)
                    async with child(py, "-m", "gridnode", "run", "-c", str(cfg),
                                     log=run / "gridnode.log") as node:
                        db = run / "node" / "gridnode.db"
                        try:
                            await wait_readings(db, node)
                        except RuntimeError:
                            print((run / "gridnode.log").read_text()[-3000:], file=sys.stderr)
                            raise
                        await asyncio.sleep(a.warmup_s)
                        rss[name] = rss_bytes(node.pid)
                        print(f"{name}: RSS {rss[name] / 2**20:.1f} MiB after readings flowed "
                              f"and {a.warmup_s:g} s", flush=True)
                        if api_port is None:
                            continue
                        await measure(a, db, node.pid, f"http://127.0.0.1:{api_port}")
                        rss["api on, after load"] = rss_bytes(node.pid)
                added = rss["api on"] - rss["api off"]
                print(f"\nRSS added by the API: {added / 2**20:+.1f} MiB at rest, "
                      f"{(rss['api on, after load'] - rss['api off']) / 2**20:+.1f} MiB after "
                      "the load (goal <= 10 MB)")


async def measure(a: argparse.Namespace, db: Path, pid: int, url: str) -> None:
    token = issue(Secret(SECRET, "bench"), "bench", Role.OPERATOR, 3600)
    now_ms = lambda: int(time.time() * 1000)  # noqa: E731
    idle_from = now_ms()
    await asyncio.sleep(a.idle_s)
    idle_to = load_from = now_ms()
    results = [await load(url, token, rate, a.load_s) for rate in RATES]
    load_to = now_ms()
    await asyncio.sleep(15)          # the last intervals of the window get sent
    print(f"\nAPI latency, open loop, {a.load_s:g} s per rate (ms from when each was due):")
    print(f"  {'endpoint':<30} {'rate':>5} {'achieved':>8} {'p50':>8} {'p99':>8} {'n':>6}")
    for r in results:
        for p in PATHS:
            p50, p99, n = r.latency_ms[p]
            print(f"  {p:<30} {r.rate:>5} {r.achieved:>8} {p50:>8.1f} {p99:>8.1f} {n:>6}")
        if r.errors:
            print(f"  {r.errors} errors at {r.rate} req/s")
    print("\nPipeline, interval close -> transaction sent (s):")
    for name, lo, hi in (("without API load", idle_from, idle_to),
                         ("with API load", load_from, load_to)):
        sent, unsent = close_to_sent(db, lo, hi)
        print(f"  {name:<18} p50 {pct(sent, 50):6.2f}  p99 {pct(sent, 99):6.2f}  "
              f"intervals {len(sent)}" + (f"  (not sent: {unsent})" if unsent else ""))


if __name__ == "__main__":
    asyncio.run(main())
