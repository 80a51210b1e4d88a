"""Footprint of gridnode on an edge device: the rows of issue 12's table in one run.

    .venv/bin/python bench/bench_footprint.py                      # 50 meters, 10 s poll, 3 min
    .venv/bin/python bench/bench_footprint.py --minutes 10 --interval-minutes 15

Starts the localnet, then `gridnode run` twice on fresh data directories, each the gridnode
process alone being measured (the simulators are separate processes):

1. without meters (chain on): RSS once READY has been logged and 5 s have passed;
2. with `--meters` SDM630 meters on one Modbus TCP bus of the meter simulator, registered on
   chain first: after `--warmup-minutes`, a window of `--minutes` in which it measures RSS,
   bytes written (/proc/PID/io write_bytes; the log goes to a pipe, as under journald),
   fdatasync/fsync calls (strace -c attached for the window, when strace can attach), CPU time
   (/proc/PID/stat utime+stime), log lines at info, readings (the meters' accepted counters, as
   flushed to meter_health) and Modbus requests (their request counters).

The database after a year is not extrapolated from minutes: `--year-days 365` runs
`bench/bench_year.py` (an accelerated year of `--meters` meters at 15-minute intervals through
the node's own store code, default retention; about 32 min on 2 cores) after the window and
prints its size as the table's last row.

With `--cpu-quota PCT` the measured gridnode process runs, from its start to the end of the window,
under a CPU quota of PCT % of one core: a cgroup (v2 `cpu.max`, or v1 `cpu.cfs_quota_us`) when one
can be made, otherwise SIGSTOP/SIGCONT in 100 ms periods pinned to one CPU (`taskset`). It then also
prints whether intervals kept up (closed vs expected, the oldest operation not yet sent at the end)
and interval close (the operation's creation) -> transaction sent, p50 and p99.

gridnode runs on `--gridnode-python` (this interpreter by default: the development venv); give a
production install's interpreter for the issue's production figures, e.g.

    python3 -m venv /tmp/prod && /tmp/prod/bin/pip install -c constraints.txt .
    .venv/bin/python bench/bench_footprint.py --gridnode-python /tmp/prod/bin/python
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_soak import (  # noqa: E402 - the soak's process and measuring helpers
    Children,
    config_text,
    register_meters,
    rss_kib,
    write_bytes,
)

from simulators.demo import free_port, wait_file  # noqa: E402

CLK_TCK = 100


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class CpuQuota:
    """Hold one process to `pct` % of one core: a cgroup when this machine lets us make one,
    else a duty cycle of SIGSTOP/SIGCONT (pinned to one CPU) in `PERIOD_US` periods."""

    PERIOD_US = 100_000

    def __init__(self, pct: float) -> None:
        self.pct = pct
        self.how = ""
        self._dir: Path | None = None
        self._stat = ""
        self._duty: asyncio.Task[None] | None = None

    def apply(self, pid: int) -> None:
        quota = int(self.PERIOD_US * self.pct / 100)
        v2, v1 = Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/cpu")
        for root, files in ((v2, {"cpu.max": f"{quota} {self.PERIOD_US}"}),
                            (v1, {"cpu.cfs_period_us": str(self.PERIOD_US),
                                  "cpu.cfs_quota_us": str(quota)})):
            if root == v2 and "cpu" not in _read(v2 / "cgroup.controllers"):
                continue
            d = root / f"gridnode-bench-{pid}"
            try:
                d.mkdir()
                for name, value in files.items():
                    (d / name).write_text(value)
                (d / "cgroup.procs").write_text(str(pid))
            except OSError:
                with contextlib.suppress(OSError):
                    d.rmdir()
                continue
            self._dir, self._stat = d, "cpu.stat"
            self.how = (f"cgroup {'v2 cpu.max' if root == v2 else 'v1 cpu.cfs_quota_us'} "
                        f"{quota} per {self.PERIOD_US} us")
            return
        if shutil.which("taskset"):
            subprocess.run(["taskset", "-a", "-p", "-c", "0", str(pid)], check=False,
                           capture_output=True)
        self._duty = asyncio.create_task(self._cycle(pid, quota / 1e6, self.PERIOD_US / 1e6))
        self.how = f"SIGSTOP/SIGCONT duty cycle {quota} per {self.PERIOD_US} us, one CPU"

    async def _cycle(self, pid: int, run_s: float, period_s: float) -> None:
        try:
            while True:
                os.kill(pid, signal.SIGCONT)
                await asyncio.sleep(run_s)
                os.kill(pid, signal.SIGSTOP)
                await asyncio.sleep(period_s - run_s)
        except ProcessLookupError:
            return
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def throttling(self) -> str:
        """The cgroup's nr_periods / nr_throttled / throttled time, when there is one."""
        if self._dir is None:
            return "duty cycle"
        stat = dict(line.split() for line in _read(self._dir / self._stat).splitlines()
                    if len(line.split()) == 2)
        throttled_s = (int(stat.get("throttled_usec", 0)) / 1e6
                       or int(stat.get("throttled_time", 0)) / 1e9)
        return (f"throttled in {stat.get('nr_throttled', '?')} of {stat.get('nr_periods', '?')} "
                f"periods, {throttled_s:.1f} s in all")

    async def release(self) -> None:
        """End the duty cycle; remove the cgroup once its process has exited. Idempotent."""
        if self._duty is not None:
            self._duty.cancel()
            await asyncio.gather(self._duty, return_exceptions=True)
            self._duty = None
        if self._dir is not None:
            with contextlib.suppress(OSError):
                self._dir.rmdir()
                self._dir = None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def close_to_sent(db: Path, since_ms: int, until_ms: int) -> tuple[list[int], int, float | None]:
    """For meter_reading operations created (their interval closed) in [since, until): the
    close -> first send delays in ms, how many were created, and the age in s at `until` of the
    oldest one not sent yet (None when every one was sent)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as c:
        rows = c.execute("SELECT created_at_ms, submitted_at_ms FROM operations WHERE tx_type = "
                         "'meter_reading' AND created_at_ms >= ? AND created_at_ms < ?",
                         (since_ms, until_ms)).fetchall()
    sent = sorted(int(s) - int(c_) for c_, s in rows if s is not None)
    unsent = [int(c_) for c_, s in rows if s is None]
    return sent, len(rows), (until_ms - min(unsent)) / 1000 if unsent else None


def percentile(values: list[int], q: float) -> float:
    if not values:
        return float("nan")
    return float(values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))])


def health(db: Path) -> tuple[int, int]:
    """(accepted readings, Modbus requests) summed over the meters, as last flushed."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as c:
        row = c.execute("SELECT coalesce(sum(accepted), 0), coalesce(sum(requests), 0) "
                        "FROM meter_health").fetchone()
    return int(row[0]), int(row[1])


def count(db: Path, sql: str) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as c:
        return int(c.execute(sql).fetchone()[0])


async def pump(stream: asyncio.StreamReader, path: Path, lines: list[str]) -> None:
    """gridnode's stderr (a pipe, as journald takes it) into `lines` and a file."""
    with path.open("a") as f:
        while raw := await stream.readline():
            line = raw.decode(errors="replace")
            lines.append(line)
            f.write(line)


def _has(path: Path, text: str) -> bool:
    return path.exists() and text in path.read_text(errors="replace")


async def wait_text(source: Path | list[str], text: str, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while not (any(text in ln for ln in source) if isinstance(source, list)
               else await asyncio.to_thread(_has, source, text)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {text!r} within {within_s:.0f} s")
        await asyncio.sleep(0.2)


def _calls(out: Path) -> dict[str, int] | None:
    """The calls column of an `strace -c` summary, by syscall."""
    if not out.exists():
        return None
    calls = {m.group(2): int(m.group(1)) for m in
             re.finditer(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$",
                         out.read_text(), re.M)}
    calls.pop("total", None)
    return calls


async def strace_window(pid: int, seconds: float, out: Path) -> dict[str, int] | None:
    """fsync/fdatasync calls of `pid` over `seconds` (strace -c attached), or None."""
    if shutil.which("strace") is None:
        return None
    proc = await asyncio.create_subprocess_exec(
        "strace", "-f", "-c", "-e", "trace=fsync,fdatasync", "-p", str(pid), "-o", str(out),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    await asyncio.sleep(seconds)
    proc.send_signal(signal.SIGINT)     # strace detaches and writes its summary
    await proc.wait()
    return _calls(out)


async def start_node(kids: Children, run: Path, cfg_text: str, name: str,
                     python: str) -> tuple[asyncio.subprocess.Process, list[str]]:
    cfg = run / f"{name}.toml"
    cfg.write_text(cfg_text)
    log = run / f"{name}.log"
    node = await kids.start(name, python, "-m", "gridnode", "run", "-c", str(cfg),
                            log=run / f"{name}.stdout.log", stderr_pipe=True)
    assert node.stderr is not None
    lines: list[str] = []
    asyncio.create_task(pump(node.stderr, log, lines))  # noqa: RUF006 - ends with the process
    return node, lines


async def footprint(a: argparse.Namespace, run: Path) -> int:
    kids = Children()
    quota: CpuQuota | None = None
    py = sys.executable
    try:
        rpc_port = free_port()
        net = await kids.start("localnet", py, "-m", "simulators.chain.localnet", "--port",
                               str(rpc_port), "--state", str(run / "chain"), "--bootstrap",
                               log=run / "localnet.log")
        await wait_file(run / "chain" / "bootstrap.json", net, "the localnet")
        bootstrap = json.loads((run / "chain" / "bootstrap.json").read_text())

        # 1. RSS at READY without meters
        idle = config_text(run / "idle", bootstrap, 1, 0, a.poll_s, a.interval_minutes)
        idle = idle.split("[[meters.buses]]")[0] + f"[intervals]\nminutes = {a.interval_minutes}\n"
        node, lines = await start_node(kids, run, idle, "idle", a.gridnode_python)
        await wait_text(lines, "event=ready", 60)
        await asyncio.sleep(5)
        rss_idle = rss_kib(node.pid) / 1024
        node.send_signal(signal.SIGTERM)
        await node.wait()

        # 2. steady with meters
        modbus_port = free_port()
        profiles = [x for _ in range(a.meters) for x in ("--profile", "sdm630")]
        await kids.start("meters", py, "-m", "simulators.meters", "tcp", "--port",
                         str(modbus_port), *profiles, log=run / "meters.log")
        await wait_text(run / "meters.log", "unit", 60)
        text = config_text(run, bootstrap, modbus_port, a.meters, a.poll_s, a.interval_minutes)
        (run / "steady.toml").write_text(text)
        await asyncio.to_thread(register_meters, run / "steady.toml",
                                [f"soak-{i:03d}" for i in range(1, a.meters + 1)])
        node, lines = await start_node(kids, run, text, "steady", a.gridnode_python)
        if a.cpu_quota:
            quota = CpuQuota(a.cpu_quota)
            quota.apply(node.pid)
        db = run / "node" / "gridnode.db"
        await wait_text(lines, "event=ready", 60 if quota is None else 600)
        await asyncio.sleep(a.warmup_minutes * 60)
        pid = node.pid

        def snap() -> dict[str, float]:
            acc, req = health(db)
            info = sum(1 for ln in list(lines) if "level=info" in ln)
            return {"t": time.monotonic(), "rss": rss_kib(pid) / 1024, "wb": write_bytes(pid),
                    "cpu": cpu_s(pid), "acc": acc, "req": req, "info": info,
                    "iv": count(db, "SELECT count(*) FROM intervals"),
                    "batches": count(db, "SELECT count(DISTINCT interval_end) FROM intervals"),
                    "raw": count(db, "SELECT count(*) FROM readings")}

        s0 = snap()
        window_ms = (int(time.time() * 1000), 0)
        syncs = await strace_window(pid, a.minutes * 60, run / "strace.txt")
        s1 = snap()
        window_ms = (window_ms[0], int(time.time() * 1000))
        throttling = quota.throttling() if quota is not None else ""
        delays, closed, oldest_unsent_s = close_to_sent(db, *window_ms)
        if quota is not None:
            await quota.release()       # the duty cycle ends: the process can take SIGTERM
        await kids.stop()

        d = {k: s1[k] - s0[k] for k in s0}
        readings = d["acc"] or float("nan")
        n_sync = sum(syncs.values()) if syncs else None

        print(f"footprint: {a.meters} SDM630 meters, one Modbus TCP bus, {a.poll_s:g} s poll, "
              f"{a.interval_minutes}-min intervals, localnet; window {d['t'] / 60:.1f} min after "
              f"{a.warmup_minutes:g} min warm-up; gridnode on {a.gridnode_python}")
        print("| what | measured |")
        print("|---|---|")
        print(f"| RSS at READY, no meters | {rss_idle:.1f} MB |")
        print(f"| RSS, steady, {a.meters} meters | {s0['rss']:.1f} -> {s1['rss']:.1f} MB |")
        print(f"| bytes written per reading | {d['wb'] / readings:,.0f} B "
              f"({d['wb']:,.0f} B for {readings:.0f} readings, {d['raw']:.0f} raw rows) |")
        print("| fdatasync+fsync per reading | "
              + (f"{n_sync / readings:.4f} ({n_sync} calls; {syncs}) |" if syncs is not None
                 else "n/a (strace unavailable) |"))
        print(f"| log lines at info | {d['info']:.0f} in the window, "
              f"{d['batches']:.0f} interval batches closed ({d['iv']:.0f} intervals) |")
        print(f"| CPU per reading, meter to finalized | {d['cpu'] / readings * 1000:.2f} ms "
              f"({d['cpu']:.1f} s CPU) |")
        print(f"| Modbus requests per meter per cycle | {d['req'] / readings:.2f} |")
        expected = a.meters * (window_ms[1] - window_ms[0]) / 60_000 / a.interval_minutes
        print(f"| interval close -> transaction sent | p50 {percentile(delays, 50):,.0f} ms, "
              f"p99 {percentile(delays, 99):,.0f} ms ({len(delays)} of {closed} operations "
              f"closed in the window sent) |")
        print(f"| intervals keeping up | {closed} closed in the window (about {expected:.0f} "
              "expected); "
              + ("every one sent |" if oldest_unsent_s is None
                 else f"oldest not sent at the end: {oldest_unsent_s:.0f} s old |"))
        if quota is not None:
            print(f"| CPU quota | {a.cpu_quota:g} % of one core ({quota.how}); {throttling} |")
        print(year_row(a.meters, a.year_days))
        return 0
    finally:
        if quota is not None:
            await quota.release()
        await kids.stop()
        if quota is not None:
            await quota.release()       # the cgroup, now empty


def year_row(meters: int, days: float) -> str:
    """The database after `days` of bench_year.py's accelerated run (a row of the table)."""
    if days <= 0:
        return ("| DB after a year, 15-min intervals, default retention | not run here: "
                "--year-days 365 runs bench/bench_year.py's accelerated year |")
    done = subprocess.run([sys.executable, str(REPO / "bench" / "bench_year.py"), "--meters",
                           str(meters), "--days", f"{days:g}"], capture_output=True, text=True,
                          check=False)
    found = re.search(r"db \+ wal ([\d,]+) B", done.stdout)
    if done.returncode != 0 or found is None:
        return f"| DB after {days:g} days | bench_year.py failed: {done.stderr[-300:]!r} |"
    size = int(found.group(1).replace(",", ""))
    return (f"| DB after {days:g} simulated days, {meters} meters, 15-min intervals, default "
            f"retention | {size / 1e9:.2f} GB (bench_year.py, accelerated) |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--meters", type=int, default=50)
    ap.add_argument("--poll-s", type=float, default=10.0)
    ap.add_argument("--interval-minutes", type=int, default=1, choices=[1, 5, 15, 30, 60])
    ap.add_argument("--minutes", type=float, default=3.0, help="measured window")
    ap.add_argument("--warmup-minutes", type=float, default=1.5)
    ap.add_argument("--year-days", type=float, default=0.0,
                    help="after the window, bench_year.py's accelerated run of this many days")
    ap.add_argument("--keep", type=Path, default=None, help="run directory to keep")
    ap.add_argument("--gridnode-python", default=sys.executable, metavar="PYTHON",
                    help="the interpreter that runs gridnode (e.g. a production venv's, "
                         "gridnode installed from the wheel); the simulators run on this one")
    ap.add_argument("--cpu-quota", type=float, default=None, metavar="PCT",
                    help="hold the measured gridnode to PCT %% of one core (e.g. 10)")
    a = ap.parse_args(argv)
    if a.keep is not None:
        a.keep.mkdir(parents=True, exist_ok=True)
        return asyncio.run(footprint(a, a.keep))
    with tempfile.TemporaryDirectory(prefix="gridnode-footprint-") as d:
        return asyncio.run(footprint(a, Path(d)))


if __name__ == "__main__":
    sys.exit(main())
