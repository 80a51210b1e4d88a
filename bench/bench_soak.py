"""Soak: gridnode's memory over a long run with 50 Modbus meters, and whether it stays flat.

    .venv/bin/python bench/bench_soak.py                  # 60 min, 50 meters, 1 s poll, 1-min intervals
    .venv/bin/python bench/bench_soak.py --minutes 10     # a short run
    .venv/bin/python bench/bench_soak.py --minutes 20 --tracemalloc   # where the growth comes from

Starts, each as its own process: the localnet (bootstrap on), one Modbus TCP simulator serving
`--meters` SDM630 meters, and `gridnode run` on a fresh data directory with those meters on one
bus and the localnet as its chain (the owner and the meters are registered on chain through the
outbox first). The load is accelerated, not the clocks: a `--poll-s` of 1 polls each meter ten
times as often as the usual 10 s, and 1-minute intervals close fifteen times as many intervals as
the default 15, so an hour of this run carries the readings of ten hours and the interval
operations of fifteen.

It samples gridnode's VmRSS (its process only, not the simulators) every `--sample-s`, and
prints RSS at the start of the measured window (after `--warmup-minutes`), at its end, the slope
over that window by least squares (MB/min), bytes written to disk per reading accepted
(/proc/PID/io write_bytes; gridnode's log goes to a pipe, as under journald, so it is not counted),
and how far the outbox kept up. Exit status 1 when the slope exceeds `--max-slope`.

`--diagnose` runs the same daemon with a thread beside it that samples what its RSS is made of
(SQLite's heap, each glibc malloc heap with its free bytes, resident memory by kind of mapping,
gc-tracked objects by type, subscriptions held by the websocket client) and prints how each
changed over the measured window. `--tracemalloc` adds the Python allocation sites that grew most
(the daemon's RSS is then not representative).

Everything it started is stopped on exit, on Ctrl-C and on SIGTERM; the children also get SIGTERM
from the kernel if this process dies without cleaning up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import io
import json
import os
import pickle
import re
import signal
import sqlite3
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from simulators.demo import free_port, wait_file  # noqa: E402

DIAGNOSED = "--diagnosed-daemon"   # internal: gridnode with diagnostics (see _diagnosed_daemon)


# -- gridnode with diagnostics (the child side of --diagnose / --tracemalloc) -------------------
class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _malloc_heaps() -> dict[str, float]:
    """Size and free bytes of each glibc malloc heap (arena) in MB, from malloc_info()."""
    libc = ctypes.CDLL(None)
    libc.open_memstream.restype = ctypes.c_void_p
    buf, size = ctypes.c_char_p(), ctypes.c_size_t()
    fp = libc.open_memstream(ctypes.byref(buf), ctypes.byref(size))
    libc.malloc_info(0, ctypes.c_void_p(fp))
    libc.fclose(ctypes.c_void_p(fp))
    xml = ctypes.string_at(buf, size.value).decode()
    libc.free(buf)
    out: dict[str, float] = {}
    for nr, body in re.findall(r'<heap nr="(\d+)">(.*?)</heap>', xml, re.S):
        free = sum(int(v) for v in re.findall(r'<total type="(?:fast|rest)" count="\d+" '
                                               r'size="(\d+)"', body))
        current = re.search(r'<system type="current" size="(\d+)"', body)
        out[f"heap{nr}_mb"] = int(current.group(1)) / 2**20 if current else 0.0
        out[f"heap{nr}_free_mb"] = free / 2**20
    return out


def _rss_by_mapping() -> dict[str, float]:
    """Resident MB of this process by kind of mapping: brk heap, anonymous, files."""
    out = {"rss_heap_mb": 0.0, "rss_anon_mb": 0.0, "rss_files_mb": 0.0}
    kind = "rss_anon_mb"
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5:
            name = head[5] if len(head) > 5 else ""
            kind = ("rss_heap_mb" if name == "[heap]" else "rss_files_mb" if name.startswith("/")
                    else "rss_anon_mb")
        elif head and head[0] == "Rss:":
            out[kind] += int(head[1]) / 1024
    return out


def _native_stats() -> dict[str, float]:
    """What tracemalloc cannot see: SQLite's heap, glibc's malloc totals (MB), threads, and the
    subscriptions solana-py's websocket clients hold."""
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _MallInfo2
    mi = libc.mallinfo2()
    sqlite = ctypes.CDLL("libsqlite3.so.0")
    sqlite.sqlite3_memory_used.restype = ctypes.c_int64
    mb = 2**20
    sockets = [o for o in gc.get_objects() if type(o).__name__ == "SolanaWsClientProtocol"]
    return {"sqlite_mb": sqlite.sqlite3_memory_used() / mb,
            "ws_subscriptions_held": sum(len(ws.subscriptions) + len(ws.sent_subscriptions)
                                         for ws in sockets),
            "malloc_in_use_mb": (mi.uordblks + mi.hblkhd) / mb,
            "malloc_free_held_mb": mi.fordblks / mb, "malloc_arena_mb": mi.arena / mb,
            "threads": threading.active_count(),
            "python_traced_mb": tracemalloc.get_traced_memory()[0] / mb,
            **_rss_by_mapping(), **_malloc_heaps()}


def _diagnosed_daemon(out_dir: Path, every_s: float, trace: bool, argv: list[str]) -> int:
    """Run `gridnode <argv>` in this process and, from a thread (the daemon is unchanged),
    append native memory figures and gc object counts by type to `out_dir/stats.jsonl` every
    `every_s` seconds, plus a tracemalloc snapshot when `trace`."""
    if trace:
        tracemalloc.start(12)
    out_dir.mkdir(parents=True, exist_ok=True)

    def dump() -> None:
        n = 0
        while True:
            time.sleep(every_s)
            types = Counter(type(o).__qualname__ for o in gc.get_objects())
            with (out_dir / "stats.jsonl").open("a") as f:
                f.write(json.dumps({"t": time.monotonic(), **_native_stats(),
                                    "types": dict(types)}) + "\n")
            if trace:
                snap = tracemalloc.take_snapshot().filter_traces(
                    [tracemalloc.Filter(False, tracemalloc.__file__)])
                tmp = out_dir / f".snap-{n:05d}"
                with tmp.open("wb") as f:
                    pickle.dump({"t": time.monotonic(), "snapshot": snap}, f)
                tmp.rename(out_dir / f"snap-{n:05d}.pickle")
            n += 1

    threading.Thread(target=dump, name="soak-diagnostics", daemon=True).start()
    from gridnode.cli import main
    return main(argv)


def _growth_report(out_dir: Path, after_t: float, top: int = 15) -> None:
    """Native figures at the start and end of the measured window, the object types whose
    counts grew, and (when traced) the allocation sites that grew most."""
    rows = [json.loads(line) for line in (out_dir / "stats.jsonl").read_text().splitlines()]
    warm = [r for r in rows if r["t"] >= after_t] or rows
    if len(warm) < 2:
        print("diagnostics: fewer than two samples in the measured window")
        return
    first, last = warm[0], warm[-1]
    print(f"diagnostics over {(last['t'] - first['t']) / 60:.1f} min of the measured window:")
    for key in [k for k in last if k not in ("t", "types")]:
        print(f"  {key:22s} {first.get(key, 0):9.2f} -> {last[key]:9.2f}")
    grew = Counter(last["types"])
    grew.subtract(first["types"])
    print("  object counts that grew most (gc-tracked objects by type):")
    for name, d in grew.most_common(10):
        if d <= 0:
            break
        print(f"    {d:+8d} {name} (now {last['types'][name]})")
    snaps = []
    for p in sorted(out_dir.glob("snap-*.pickle")):
        with p.open("rb") as f:
            snap = pickle.load(f)   # noqa: S301 - our own child's files
        if snap["t"] >= after_t:
            snaps.append(snap)
    if len(snaps) < 2:
        return
    print("  allocation sites that grew most (tracemalloc):")
    for stat in snaps[-1]["snapshot"].compare_to(snaps[0]["snapshot"], "traceback")[:top]:
        if stat.size_diff <= 0:
            break
        print(f"    {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks")
        for line in stat.traceback.format(limit=6, most_recent_first=True):
            print(f"        {line}")


# -- measuring a process ---------------------------------------------------------------------
def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def write_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise RuntimeError(f"no write_bytes for pid {pid}")


def slope_per_min(samples: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) samples, in MB per minute."""
    n = len(samples)
    if n < 2:
        return float("nan")
    mt = sum(t for t, _ in samples) / n
    mv = sum(v for _, v in samples) / n
    var = sum((t - mt) ** 2 for t, _ in samples)
    cov = sum((t - mt) * (v - mv) for t, v in samples)
    return cov / var * 60 if var else float("nan")


def db_counts(db: Path) -> dict[str, int]:
    """Readings accepted (the meters' counters, as last flushed), raw rows kept, closed
    intervals and operations by status, read-only."""
    if not db.exists():
        return {}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        q = conn.execute
        out = {"readings": q("SELECT coalesce(sum(accepted), 0) FROM meter_health").fetchone()[0],
               "raw_rows": q("SELECT count(*) FROM readings").fetchone()[0],
               "intervals": q("SELECT count(*) FROM intervals").fetchone()[0]}
        for status, n in conn.execute("SELECT status, count(*) FROM operations GROUP BY status"):
            out[f"ops_{status}"] = n
        return out
    except sqlite3.Error:
        return {}
    finally:
        conn.close()


# -- the processes ---------------------------------------------------------------------------
def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the bench dies, however it dies."""
    PR_SET_PDEATHSIG = 1  # noqa: N806 - the kernel's name
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Children:
    """Processes started by the bench, stopped in reverse order."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, asyncio.subprocess.Process]] = []

    async def start(self, name: str, *args: str, log: Path | None = None,
                    stderr_pipe: bool = False) -> asyncio.subprocess.Process:
        out = log.open("ab") if log is not None else asyncio.subprocess.DEVNULL
        try:
            proc = await asyncio.create_subprocess_exec(
                *args, cwd=str(REPO), stdin=asyncio.subprocess.DEVNULL, stdout=out,
                stderr=asyncio.subprocess.PIPE if stderr_pipe else asyncio.subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": str(REPO)}, preexec_fn=_die_with_parent)
        finally:
            if log is not None:
                out.close()   # type: ignore[union-attr]
        self.procs.append((name, proc))
        return proc

    def dead(self) -> list[str]:
        return [f"{n} (exit {p.returncode})" for n, p in self.procs if p.returncode is not None]

    async def stop(self) -> None:
        for _name, proc in reversed(self.procs):
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    async with asyncio.timeout(15):
                        await proc.wait()
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await proc.wait()


async def pump_log(stream: asyncio.StreamReader, path: Path, counter: list[int]) -> None:
    """gridnode's stderr into a file, as journald would take it; counts the lines."""
    with path.open("ab") as f:
        while line := await stream.readline():
            f.write(line)
            counter[0] += 1


def config_text(run: Path, bootstrap: dict, modbus_port: int, meters: int, poll_s: float,
                interval_minutes: int, api_port: int | None = None) -> str:
    """gridnode's configuration: every section at its default except the addresses, the bus
    and the interval length (the local API on a free port, so that runs can share a host)."""
    keys = bootstrap["keypairs"]
    meter_rows = "\n".join(
        f'[[meters.buses.meters]]\nmeter_id = "soak-{i:03d}"\nunit_id = {i}\n'
        f'profile = "sdm630"\nrated_power_w = 30000\n' for i in range(1, meters + 1))
    return f"""
[node]
id = "soak"
data_dir = "{run / 'node'}"

[keys]
gateway_keypair = "{keys['gateway']}"

[chain]
rpc_urls = ["{bootstrap['rpc_url']}"]
ws_urls = ["{bootstrap['ws_url']}"]
idl_dir = "{REPO / 'idl'}"
user_keypairs = ["{keys['users'][0]}"]

[[meters.buses]]
kind = "tcp"
name = "soak-bus"
host = "127.0.0.1"
port = {modbus_port}
timeout_s = 1.0
poll_interval_s = {poll_s}
slave_switch_pause_ms = 0

{meter_rows}
[intervals]
minutes = {interval_minutes}

[api]
port = {api_port or free_port()}
"""


def register_meters(cfg: Path, meter_ids: list[str]) -> None:
    """The owner and its meters queued for registration on chain, as an operator does it
    (`gridnode register`, the wallet being the configuration's one user keypair)."""
    from gridnode.cli import main as gridnode

    commands = [["user", "--type", "prosumer", "--location", "soak test site"]]
    commands += [["meter", m, "--type", "solar"] for m in meter_ids]
    for args in commands:
        with contextlib.redirect_stdout(io.StringIO()) as out:
            code = gridnode(["register", *args, "-c", str(cfg)])
        if code != 0:
            raise RuntimeError(f"gridnode register {' '.join(args)}: {out.getvalue().strip()}")


async def soak(a: argparse.Namespace, run: Path) -> int:
    kids = Children()
    py = sys.executable
    logs = run / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    try:
        rpc_port = free_port()
        net = await kids.start("localnet", py, "-m", "simulators.chain.localnet", "--port",
                               str(rpc_port), "--slot-ms", str(a.slot_ms), "--state",
                               str(run / "chain"), "--bootstrap", log=logs / "localnet.log")
        await wait_file(run / "chain" / "bootstrap.json", net, "the localnet")
        bootstrap = json.loads((run / "chain" / "bootstrap.json").read_text())

        modbus_port = free_port()
        profiles = [arg for _ in range(a.meters) for arg in ("--profile", "sdm630")]
        sim = await kids.start("modbus meters", py, "-m", "simulators.meters", "tcp", "--port",
                               str(modbus_port), *profiles, log=logs / "meters.log")
        deadline = time.monotonic() + 60
        while (logs / "meters.log").stat().st_size == 0:
            if sim.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError("the Modbus simulator did not start")
            await asyncio.sleep(0.2)

        cfg = run / "gridnode.toml"
        cfg.write_text(config_text(run, bootstrap, modbus_port, a.meters, a.poll_s,
                                   a.interval_minutes))
        db = run / "node" / "gridnode.db"
        meter_ids = [f"soak-{i:03d}" for i in range(1, a.meters + 1)]
        await asyncio.to_thread(register_meters, cfg, meter_ids)

        diag_dir = run / "diagnostics"
        daemon_args = (["bench/bench_soak.py", DIAGNOSED, str(diag_dir), str(a.sample_s * 3),
                        str(int(a.tracemalloc))]
                       if a.diagnose or a.tracemalloc else ["-m", "gridnode"])
        node = await kids.start("gridnode", py, *daemon_args, "run", "-c", str(cfg),
                                log=logs / "gridnode.stdout.log", stderr_pipe=True)
        assert node.stderr is not None
        lines = [0]
        pump = asyncio.create_task(pump_log(node.stderr, logs / "gridnode.log", lines))
        pid = node.pid
        t0 = time.monotonic()
        warm_s = a.warmup_minutes * 60
        end_s = warm_s + a.minutes * 60
        samples: list[tuple[float, float]] = []
        first: dict | None = None
        print(f"soak: {a.meters} meters every {a.poll_s:g} s, {a.interval_minutes}-min intervals; "
              f"warm-up {a.warmup_minutes:g} min, then {a.minutes:g} min measured; "
              f"gridnode pid {pid}, run dir {run}", flush=True)
        next_print = 0.0
        while True:
            el = time.monotonic() - t0
            dead = kids.dead()
            if dead:
                print(f"stopped unexpectedly: {', '.join(dead)}; see {logs}")
                return 2
            mb = rss_kib(pid) / 1024
            if el >= warm_s:
                if first is None:
                    first = {"t": el, "rss": mb, "wb": write_bytes(pid), "db": db_counts(db),
                             "lines": lines[0], "mono": time.monotonic()}
                samples.append((el, mb))
            if el >= next_print:
                c = db_counts(db)
                print(f"  {el / 60:6.1f} min  RSS {mb:6.1f} MB  readings {c.get('readings', 0):>7}"
                      f"  finalized ops {c.get('ops_finalized', 0):>5}"
                      f"  pending {c.get('ops_pending', 0)}  log lines {lines[0]}", flush=True)
                next_print = el + a.print_every_s
            if el >= end_s:
                break
            await asyncio.sleep(a.sample_s)
        assert first is not None
        wb, last_db = write_bytes(pid), db_counts(db)
        end_lines = lines[0]
        await kids.stop()
        await pump
        readings = last_db.get("readings", 0) - first["db"].get("readings", 0)
        slope = slope_per_min(samples)
        inflight = {k[4:]: v for k, v in last_db.items() if k.startswith("ops_")}
        print(f"gridnode RSS at start (after {a.warmup_minutes:g} min warm-up) {first['rss']:.1f} MB, "
              f"at end {samples[-1][1]:.1f} MB, min {min(v for _, v in samples):.1f}, "
              f"max {max(v for _, v in samples):.1f}")
        print(f"RSS slope over {a.minutes:g} min ({len(samples)} samples): {slope:+.4f} MB/min "
              f"(threshold {a.max_slope:g})")
        raw = last_db.get("raw_rows", 0) - first["db"].get("raw_rows", 0)
        print(f"readings accepted in the window: {readings} ({readings / a.minutes:.0f}/min; "
              f"{raw} raw rows kept); "
              f"bytes written per reading: "
              f"{(wb - first['wb']) / readings if readings else float('nan'):,.0f} B; "
              f"log lines in the window: {end_lines - first['lines']}")
        print(f"operations at the end: {inflight}")
        if a.diagnose or a.tracemalloc:
            _growth_report(diag_dir, first["mono"])
        return 1 if slope > a.max_slope else 0
    finally:
        await kids.stop()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [DIAGNOSED]:
        return _diagnosed_daemon(Path(argv[1]), float(argv[2]), argv[3] == "1", argv[4:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=60.0, help="measured window (wall minutes)")
    ap.add_argument("--warmup-minutes", type=float, default=None,
                    help="before the measured window (default: a sixth of it, 3 to 10 min)")
    ap.add_argument("--meters", type=int, default=50)
    ap.add_argument("--poll-s", type=float, default=1.0, help="poll interval of the bus")
    ap.add_argument("--interval-minutes", type=int, default=1, choices=[1, 5, 15, 30, 60])
    ap.add_argument("--slot-ms", type=float, default=400)
    ap.add_argument("--sample-s", type=float, default=10.0, help="RSS sampling period")
    ap.add_argument("--print-every-s", type=float, default=300.0)
    ap.add_argument("--max-slope", type=float, default=0.02, help="MB/min allowed once warm")
    ap.add_argument("--diagnose", action="store_true",
                    help="report SQLite and malloc heap figures and object counts from inside")
    ap.add_argument("--tracemalloc", action="store_true",
                    help="--diagnose plus allocation sites (RSS then is not representative)")
    ap.add_argument("--keep", type=Path, default=None,
                    help="a new or empty directory for the run, kept afterwards (default: a "
                         "temporary one, removed)")
    a = ap.parse_args(argv)
    if a.keep is not None and a.keep.exists() and any(a.keep.iterdir()):
        ap.error(f"--keep {a.keep}: not empty (a run needs fresh chain and node state)")
    if a.warmup_minutes is None:
        a.warmup_minutes = min(10.0, max(3.0, a.minutes / 6))

    async def go() -> int:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        if a.keep is not None:
            a.keep.mkdir(parents=True, exist_ok=True)
            return await soak(a, a.keep)
        with tempfile.TemporaryDirectory(prefix="gridnode-soak-") as tmp:
            return await soak(a, Path(tmp))

    try:
        return asyncio.run(go())
    except asyncio.CancelledError:
        print("interrupted; everything started was stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
