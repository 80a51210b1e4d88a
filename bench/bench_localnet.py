"""Localnet throughput and latency: sustained transactions per second through HTTP
sendTransaction (with preflight) until confirmed, and p50/p99 latency of getSignatureStatuses.

    .venv/bin/python bench/bench_localnet.py [--txs 3000] [--slot-ms 100] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import socket
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import Message
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from simulators.chain.localnet import Localnet  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def call(session: aiohttp.ClientSession, url: str, method: str, params: list) -> dict:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    async with session.post(url, json=body) as r:
        return await r.json()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with Localnet(port=free_port(), slot_ms=args.slot_ms, state_dir=tmp,
                            users=args.payers) as net:
            payers = net.identities.users
            url = net.rpc_url
            conn = aiohttp.TCPConnector(limit=args.concurrency + 4)
            async with aiohttp.ClientSession(connector=conn) as session:
                blockhash = [Hash.from_string((await call(session, url, "getLatestBlockhash", [
                    {"commitment": "processed"}]))["result"]["value"]["blockhash"])]
                pending: dict[str, float] = {}
                confirmed: dict[str, float] = {}
                status_latency: list[float] = []
                sent = 0
                done_sending = asyncio.Event()

                async def refresh() -> None:
                    while not done_sending.is_set():
                        await asyncio.sleep(1.0)
                        r = await call(session, url, "getLatestBlockhash",
                                       [{"commitment": "processed"}])
                        blockhash[0] = Hash.from_string(r["result"]["value"]["blockhash"])

                async def sender(worker: int) -> None:
                    nonlocal sent
                    while sent < args.txs:
                        sent += 1
                        payer = payers[sent % len(payers)]
                        msg = Message.new_with_blockhash([transfer(TransferParams(
                            from_pubkey=payer.pubkey(), to_pubkey=Keypair().pubkey(),
                            lamports=1_000_000))], payer.pubkey(), blockhash[0])
                        tx = VersionedTransaction(msg, [payer])
                        r = await call(session, url, "sendTransaction", [
                            base64.b64encode(bytes(tx)).decode(),
                            {"encoding": "base64", "preflightCommitment": "processed"}])
                        pending[r["result"]] = time.perf_counter()

                async def poller() -> None:
                    while not (done_sending.is_set() and not pending):
                        await asyncio.sleep(args.slot_ms / 4000)
                        sigs = list(pending)
                        for i in range(0, len(sigs), 256):
                            chunk = sigs[i: i + 256]
                            t0 = time.perf_counter()
                            r = await call(session, url, "getSignatureStatuses", [chunk])
                            status_latency.append(time.perf_counter() - t0)
                            now = time.perf_counter()
                            for sig, st in zip(chunk, r["result"]["value"], strict=True):
                                if st and st["confirmationStatus"] in ("confirmed", "finalized"):
                                    confirmed[sig] = now - pending.pop(sig)

                start = time.perf_counter()
                refresher = asyncio.create_task(refresh())
                poll = asyncio.create_task(poller())
                await asyncio.gather(*(sender(i) for i in range(args.concurrency)))
                send_done = time.perf_counter()
                done_sending.set()
                await poll
                end = time.perf_counter()
                refresher.cancel()
                single: list[float] = []
                one = [next(iter(confirmed))]
                for _ in range(500):
                    t0 = time.perf_counter()
                    await call(session, url, "getSignatureStatuses", [one])
                    single.append(time.perf_counter() - t0)
    conf = list(confirmed.values())
    print(f"localnet: slot {args.slot_ms:.0f} ms, {args.concurrency} concurrent senders, "
          f"{args.payers} payers")
    print(f"sendTransaction (with preflight): {len(confirmed)} txs sent in "
          f"{send_done - start:.2f} s = {len(confirmed) / (send_done - start):.0f} tx/s accepted")
    print(f"sustained with confirmation: {len(confirmed)} txs confirmed in {end - start:.2f} s "
          f"= {len(confirmed) / (end - start):.0f} tx/s")
    print(f"send -> confirmed latency: p50 {pct(conf, 0.5):.0f} ms, p99 {pct(conf, 0.99):.0f} ms")
    print(f"getSignatureStatuses (1 signature, {len(single)} calls): p50 "
          f"{pct(single, 0.5):.2f} ms, p99 {pct(single, 0.99):.2f} ms")
    print(f"getSignatureStatuses (up to 256 signatures, {len(status_latency)} calls during the "
          f"run): p50 {pct(status_latency, 0.5):.2f} ms, p99 {pct(status_latency, 0.99):.2f} ms")
    if len(confirmed) != args.txs:
        raise SystemExit(f"only {len(confirmed)} of {args.txs} confirmed")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--txs", type=int, default=3000)
    p.add_argument("--slot-ms", type=float, default=100)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--payers", type=int, default=8)
    asyncio.run(main(p.parse_args()))
