"""Store throughput: audited outbox inserts and status changes per second, commit latency.

Prints figures for one-operation transactions (every commit an fsync, as the outbox does it)
and for batches, on a fresh database in a temporary directory of this machine's disk.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from gridnode.store import Store

SINGLE = 500
BATCHES, BATCH = 40, 50


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


async def main() -> None:
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        store = await Store.open(Path(tmp) / "bench.db")
        lat: list[float] = []
        t0 = time.perf_counter()
        for i in range(SINGLE):
            s = time.perf_counter()
            async with store.write() as tx:
                await tx.add_operation("meter_reading", {"meter_id": "m1", "i": i}, f"s:{i}")
            lat.append((time.perf_counter() - s) * 1000)
        single = SINGLE / (time.perf_counter() - t0)
        print(f"single-op transactions: {single:8.0f} ops/s   commit p50 {_pct(lat, 50):.2f} ms"
              f"  p99 {_pct(lat, 99):.2f} ms   (synchronous=FULL, audit row each)")

        t0 = time.perf_counter()
        for b in range(BATCHES):
            async with store.write() as tx:
                for i in range(BATCH):
                    await tx.add_operation("meter_reading", {"b": b, "i": i}, f"b:{b}:{i}")
        batched = BATCHES * BATCH / (time.perf_counter() - t0)
        print(f"batched ({BATCH} per tx):     {batched:8.0f} ops/s")

        ids = [r[0] for r in await store.fetchall("SELECT id FROM operations LIMIT 1000")]
        t0 = time.perf_counter()
        for chunk in range(0, len(ids), BATCH):
            async with store.write() as tx:
                for op_id in ids[chunk:chunk + BATCH]:
                    await tx.set_status("operation", op_id, "signed", reason="bench")
        changes = len(ids) / (time.perf_counter() - t0)
        print(f"audited status changes:  {changes:8.0f} /s   ({BATCH} per tx)")
        size = (Path(tmp) / "bench.db").stat().st_size + (Path(tmp) / "bench.db-wal").stat().st_size
        rows = SINGLE + BATCHES * BATCH
        print(f"database + WAL: {size / 1024:.0f} KiB for {rows} operations and their audit rows")
        await store.close()


if __name__ == "__main__":
    asyncio.run(main())
