"""Upstream deliveries: items/s to the platform simulator, batched and one per request, and the
time to drain the backlog of a 1-day platform outage (50 meters, 15-minute intervals: 4,800
finalized intervals).

The platform simulator runs in its own process (``python -m simulators.platform``) on a free
loopback port, so the node's engine and the receiver do not share an event loop; every request
is signed, verified and deduped for real, and every item is fsynced by both sides (the node's
store with synchronous=FULL; the simulator's SQLite in WAL). Runs in well under 2 minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from gridnode.deliveries import signing
from gridnode.deliveries.engine import DeliveryEngine, Policy
from gridnode.deliveries.upstream import UpstreamDestination
from gridnode.store import Store

REPO = Path(__file__).resolve().parents[1]
SINGLE_ITEMS = 600
BATCHED_ITEMS = 2000
METERS, PER_DAY = 50, 96            # 15-minute intervals
T0 = 1_800_000_000


async def finalized_intervals(store: Store, meters: int, intervals: int, first: int = 0) -> int:
    """Meter-reading operations taken to `finalized` (each status change logs its event, as the
    pipeline's do), one write transaction per interval across all meters."""
    n = 0
    for i in range(first, first + intervals):
        end = T0 + 900 * i
        async with store.write() as tx:
            for m in range(meters):
                meter = f"meter-{m:02d}"
                op_id, _ = await tx.add_operation("meter_reading", {
                    "meter_id": meter, "interval_start": end - 900, "interval_end": end,
                    "energy_produced_wh": 100 + m, "energy_consumed_wh": 50 + i,
                    "backfilled": False}, f"meter_reading:{meter}:{end}")
                for status in ("signed", "submitted", "confirmed", "finalized"):
                    await tx.set_status("operation", op_id, status, reason="bench")
                n += 1
    return n


def _get(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        return json.loads(resp.read())


@contextlib.asynccontextmanager
async def platform_process(db: Path, secret: str, port: int = 0):  # type: ignore[no-untyped-def]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simulators.platform", "--port", str(port), "--db", str(db),
        "--secret", secret, cwd=str(REPO), stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
    if not line.startswith("listening "):
        proc.kill()
        raise RuntimeError(f"platform simulator did not start: {line!r}")
    url = line.split()[1]
    try:
        yield url, int(url.split(":")[2].split("/")[0])
    finally:
        proc.terminate()
        await proc.wait()


async def held(port: int) -> int:
    stats = await asyncio.to_thread(_get, port, "/v1/stats")
    return int(stats["held"])


async def deliver(store: Store, url: str, port: int, secret: str, batch: int, expect: int,
                  name: str) -> tuple[float, int]:
    """Seconds until the platform holds `expect` items, and the requests it took."""
    engine = DeliveryEngine(store)
    engine.add(UpstreamDestination(store, "bench", url, [secret], timeout_s=10, name=name),
               Policy(batch_size=batch, retry_base_s=0.5, retry_max_s=5, poll_s=0.05,
                      capture_ahead=max(500, 4 * batch)))
    t0 = time.perf_counter()
    task = asyncio.create_task(engine.run())
    while True:         # the platform is another process: ask it
        if await held(port) >= expect:
            break
        await asyncio.sleep(0.05)
    took = time.perf_counter() - t0
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return took, engine.stats()[name]["requests"]


async def main() -> None:
    secret = signing.generate_secret()
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp_s:
        tmp = Path(tmp_s)
        # -- throughput: one item per request vs batches of 50 ---------------------------------
        store = await Store.open(tmp / "a" / "gridnode.db")
        await finalized_intervals(store, 50, SINGLE_ITEMS // 50)
        async with platform_process(tmp / "p1.db", secret) as (url, port):
            took, reqs = await deliver(store, url, port, secret, 1, SINGLE_ITEMS, "single")
        print(f"one item per request:    {SINGLE_ITEMS / took:8.0f} items/s  "
              f"({SINGLE_ITEMS} items, {reqs} requests, {took:.1f} s)")
        await store.close()
        store = await Store.open(tmp / "b" / "gridnode.db")
        await finalized_intervals(store, 50, BATCHED_ITEMS // 50)
        async with platform_process(tmp / "p2.db", secret) as (url, port):
            took, reqs = await deliver(store, url, port, secret, 50, BATCHED_ITEMS, "batched")
        print(f"batches of 50:           {BATCHED_ITEMS / took:8.0f} items/s  "
              f"({BATCHED_ITEMS} items, {reqs} requests, {took:.1f} s)")
        await store.close()

        # -- backlog: a day of 50 meters while the platform was down ---------------------------
        store = await Store.open(tmp / "c" / "gridnode.db")
        t0 = time.perf_counter()
        n = await finalized_intervals(store, METERS, PER_DAY)
        made = time.perf_counter() - t0
        size_mb = (tmp / "c" / "gridnode.db").stat().st_size / 1e6
        async with platform_process(tmp / "p3.db", secret) as (url, port):
            took, reqs = await deliver(store, url, port, secret, 50, n, "upstream")
        print(f"1-day outage backlog:    {n} items ({METERS} meters x {PER_DAY} intervals) "
              f"drained in {took:.1f} s, {reqs} requests, {n / took:.0f} items/s "
              f"(backlog built in {made:.1f} s; node database {size_mb:.1f} MB)")
        await store.close()


if __name__ == "__main__":
    asyncio.run(main())
