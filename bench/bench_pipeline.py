"""End-to-end throughput and cost of the transaction pipeline, with and without batching.

    .venv/bin/python bench/bench_pipeline.py [--meters 30] [--intervals 20] [--slot-ms 50]

Starts a localnet in this process and gridnode (`python -m gridnode run`) as a child process on
a fresh database holding meters × intervals meter_reading operations, and measures until every
operation is finalized: readings per transaction, transactions and readings per second (from the
first signature to the last finalization, and wall time including start-up), lamports paid per
reading (fees recorded from the finalized transactions), and gridnode's CPU time and peak RSS
per 1,000 readings (from /proc of the child). Then the same with batching off (batch_size = 1),
and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gridnode.store import Store  # noqa: E402
from simulators.chain.localnet import Localnet  # noqa: E402
from tests.e2e.harness import add_readings, recent_intervals, status_counts, wait_for  # noqa: E402
from tests.net import pick_free_port  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_usage(pid: int) -> tuple[float, int]:
    """(CPU seconds user+system, peak RSS bytes) of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    hwm = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) * 1024
    return cpu, hwm


def config_text(net: Localnet, data_dir: Path, batch_size: int) -> str:
    return f"""
[node]
id = "bench"
data_dir = "{data_dir}"
[keys]
gateway_keypair = "{net.bootstrap['keypairs']['gateway']}"
[chain]
rpc_urls = ["{net.rpc_url}"]
ws_urls = ["{net.ws_url}"]
idl_dir = "{REPO / 'idl'}"
require_registered_meters = false
[chain.rpc]
health_interval_s = 2
blockhash_refresh_s = 0.5
[outbox]
batch_size = {batch_size}
poll_interval_s = 0.5
rebroadcast_interval_s = 2
submit_interval_s = 0.1
[api]
enabled = false
[logging]
level = "warning"
"""


async def one_run(meters: int, intervals: int, slot_ms: float, batch_size: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        async with Localnet(port=pick_free_port(), slot_ms=slot_ms,
                            state_dir=tmp_path / "chain") as net:
            data_dir = tmp_path / "node"
            store = await Store.open(data_dir / "gridnode.db")
            ids = [f"bench-meter-{i:03d}" for i in range(meters)]
            ends = recent_intervals(intervals)
            await add_readings(store, ids, ends)
            n = meters * intervals
            cfg = tmp_path / "gridnode.toml"
            cfg.write_text(config_text(net, data_dir, batch_size))
            t0 = time.monotonic()
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gridnode", "run", "-c", str(cfg), cwd=str(REPO),
                env={**os.environ, "PYTHONPATH": str(REPO)},
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            # CPU from the first signature on: start-up (imports, migrations) is not per reading.
            async def signed() -> bool:
                return await store.fetchone("SELECT 1 FROM tx_attempts LIMIT 1") is not None

            await wait_for(signed, 120, "the first signature", step_s=0.01)
            cpu0, _ = proc_usage(proc.pid)
            while (await status_counts(store)).get("finalized", 0) < n:
                if proc.returncode is not None:
                    raise RuntimeError("gridnode exited during the benchmark")
                await asyncio.sleep(0.2)
            wall = time.monotonic() - t0
            cpu, rss = proc_usage(proc.pid)
            proc.terminate()
            await proc.wait()
            row = await store.fetchone(
                "SELECT count(*) AS txs, sum(fee_lamports) AS fees FROM tx_attempts "
                "WHERE observed_status = 'finalized'")
            span = await store.fetchone(
                "SELECT min(created_at_ms) AS first, (SELECT max(finalized_at_ms) FROM operations) "
                "AS last FROM tx_attempts")
            attempts = await store.fetchone("SELECT count(*) AS n FROM tx_attempts")
            await store.close()
            active = (span["last"] - span["first"]) / 1000
            txs = int(row["txs"])
            return {"readings": n, "txs": txs, "signatures": int(attempts["n"]),
                    "readings_per_tx": n / txs, "tx_per_s": txs / active,
                    "readings_per_s": n / active, "readings_per_s_wall": n / wall,
                    "lamports_per_reading": int(row["fees"] or 0) / n,
                    "cpu_s_per_1000": (cpu - cpu0) / n * 1000, "cpu_s_total": cpu,
                    "rss_mb": rss / 2**20, "active_s": active, "wall_s": wall}


def show(name: str, r: dict[str, float]) -> None:
    print(f"{name}: {r['readings']:.0f} readings in {r['txs']:.0f} finalized transactions "
          f"({r['signatures']:.0f} signatures)")
    print(f"  readings per transaction      {r['readings_per_tx']:8.1f}")
    print(f"  transactions per second       {r['tx_per_s']:8.2f}   (first signature to last "
          f"finalization, {r['active_s']:.1f} s)")
    print(f"  readings per second           {r['readings_per_s']:8.1f}   "
          f"(wall incl. start-up: {r['readings_per_s_wall']:.1f}/s over {r['wall_s']:.1f} s)")
    print(f"  lamports per reading          {r['lamports_per_reading']:8.1f}")
    print(f"  gridnode CPU s per 1,000 rdg  {r['cpu_s_per_1000']:8.2f}   (from the first signature; "
          f"process total {r['cpu_s_total']:.2f} s incl. start-up)")
    print(f"  gridnode peak RSS             {r['rss_mb']:8.1f} MB")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--meters", type=int, default=30)
    ap.add_argument("--intervals", type=int, default=20)
    ap.add_argument("--slot-ms", type=float, default=50)
    a = ap.parse_args()
    batched = await one_run(a.meters, a.intervals, a.slot_ms, 64)
    show("batching on (batch_size 64)", batched)
    single = await one_run(a.meters, a.intervals, a.slot_ms, 1)
    show("batching off (batch_size 1)", single)
    print("ratios, batching on / off:")
    print(f"  readings per second           {batched['readings_per_s'] / single['readings_per_s']:8.2f}x")
    print(f"  lamports per reading          "
          f"{batched['lamports_per_reading'] / max(single['lamports_per_reading'], 1e-9):8.3f}x")
    print(f"  CPU per reading               "
          f"{batched['cpu_s_per_1000'] / max(single['cpu_s_per_1000'], 1e-9):8.3f}x")


if __name__ == "__main__":
    asyncio.run(main())
