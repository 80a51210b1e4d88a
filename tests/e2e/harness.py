"""Shared pieces of the end-to-end tests: a localnet, a pipeline on it, readings, on-chain counts.

Everything is real: the localnet serves JSON-RPC over HTTP and WebSocket with the SBF programs,
the store is SQLite on disk, gridnode talks to the chain only through its RPC endpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from solders.keypair import Keypair
from solders.pubkey import Pubkey

from gridnode.chain.signers import Signers
from gridnode.config.chain import ChainConfig, RpcPolicyConfig
from gridnode.config.outbox import OutboxConfig
from gridnode.keys import load_keypair
from gridnode.outbox.pipeline import Pipeline
from gridnode.store import Store
from tests.configs import FAST_OUTBOX, FAST_RPC

ORACLE = Pubkey.from_string("DvdtU4quEbuxUY2FckmvcXwTpC9qp4HLJKb1PMLaqAoE")
ORACLE_DATA = Pubkey.find_program_address([b"oracle_data"], ORACLE)[0]
REPO = Path(__file__).resolve().parents[2]


def chain_config(rpc_urls: list[str], ws_urls: list[str] | None = None, **over: Any) -> ChainConfig:
    rpc = {**FAST_RPC, "max_slot_lag": 20, **over.pop("rpc", {})}
    return ChainConfig(rpc_urls=rpc_urls, ws_urls=ws_urls or [], idl_dir=REPO / "idl",
                       request_timeout_s=over.pop("request_timeout_s", 2.0),
                       rpc=RpcPolicyConfig(**rpc), **over)


def outbox_config(**over: Any) -> OutboxConfig:
    return OutboxConfig(**{**FAST_OUTBOX, "rule_retry_s": 0.5, **over})


def bootstrap_signers(bootstrap: dict[str, Any]) -> Signers:
    keys = bootstrap["keypairs"]
    return Signers.of(load_keypair(keys["gateway"]), load_keypair(keys["authority"]),
                      [load_keypair(p) for p in keys.get("users", [])])


def reading(meter_id: str, end: int, produced: int, consumed: int, minutes: int = 1) -> dict[str, Any]:
    return {"meter_id": meter_id, "interval_start": end - 60 * minutes, "interval_end": end,
            "energy_produced_wh": produced, "energy_consumed_wh": consumed, "backfilled": False}


def expected_value(meter_index: int, interval_index: int) -> tuple[int, int]:
    """Deterministic, distinct energy values so a mix-up between meters or intervals shows."""
    return 1000 + 37 * meter_index + interval_index, 200 + 11 * meter_index + 3 * interval_index


def recent_intervals(n: int, minutes: int = 1) -> list[int]:
    """The ends of the last `n` closed, UTC-aligned intervals, oldest first."""
    step = 60 * minutes
    last = int(time.time()) // step * step
    return [last - step * (n - 1 - i) for i in range(n)]


async def add_readings(store: Store, meters: list[str], intervals: list[int],
                       first_index: int = 0) -> int:
    """One outbox operation per (meter, interval), as the interval builder writes them."""
    n = 0
    async with store.write() as tx:
        for i, end in enumerate(intervals, start=first_index):
            for m, meter in enumerate(meters):
                produced, consumed = expected_value(m, i)
                _, created = await tx.add_operation(
                    "meter_reading", reading(meter, end, produced, consumed),
                    f"meter_reading:{meter}:{end}")
                n += created
    return n


async def register_users(store: Store, users: list[str], user_type: str = "prosumer") -> None:
    """Outbox operations that register each user on chain (each signed by that user)."""
    async with store.write() as tx:
        for user in users:
            await tx.add_operation("user_registration", {
                "user": user, "user_type": user_type, "location": "test site"},
                f"user_registration:{user}")


async def register(store: Store, owner: Keypair, meters: list[str]) -> None:
    """Outbox operations that register the owner and its meters on chain (signed by the owner)."""
    await register_users(store, [str(owner.pubkey())])
    async with store.write() as tx:
        for meter in meters:
            await tx.add_operation("meter_registration", {
                "owner": str(owner.pubkey()), "meter_id": meter, "meter_type": "solar"},
                f"meter_registration:{meter}")


async def wait_for(check: Callable[[], Awaitable[bool]], timeout_s: float, what: str,
                   step_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; "
                                 f"operations not final: {LAST_SEEN[:10]}")
        await asyncio.sleep(step_s)


async def status_counts(store: Store) -> dict[str, int]:
    rows = await store.fetchall("SELECT status, count(*) AS n FROM operations GROUP BY status")
    return {r["status"]: int(r["n"]) for r in rows}


async def all_finalized(store: Store) -> bool:
    counts = await status_counts(store)
    if bool(counts) and set(counts) == {"finalized"}:
        return True
    global LAST_SEEN
    LAST_SEEN = [tuple(r) for r in await store.fetchall(
        "SELECT id, tx_type, status, last_error FROM operations WHERE status != 'finalized'")]
    return False


LAST_SEEN: list[tuple[Any, ...]] = []   # operations not yet final at the last check (for failures)


async def oracle_total_readings(rpc_url: str) -> int:
    """The oracle's on-chain counter of submit_meter_reading calls (OracleData.total_readings)."""
    import base64

    import httpx

    async with httpx.AsyncClient(timeout=5) as client:
        resp = await client.post(rpc_url, json={
            "jsonrpc": "2.0", "id": 1, "method": "getAccountInfo",
            "params": [str(ORACLE_DATA), {"encoding": "base64", "commitment": "finalized"}]})
    data = base64.b64decode(resp.json()["result"]["value"]["data"][0])
    return int(struct.unpack_from("<Q", data, 72)[0])


async def reading_events(store: Store) -> list[dict[str, Any]]:
    rows = await store.fetchall(
        "SELECT e.data, e.operation_id FROM chain_events e WHERE e.name = 'MeterReadingSubmitted' "
        "ORDER BY e.id")
    return [{**json.loads(r["data"]), "operation_id": r["operation_id"]} for r in rows]


def assert_events_match(events: list[dict[str, Any]], meters: list[str], intervals: list[int]) -> None:
    """Exactly one event per (meter, interval), with the values that were submitted (interval
    index i is the position in `intervals`)."""
    seen: dict[tuple[str, int], dict[str, Any]] = {}
    for e in events:
        key = (e["meter_id"], int(e["timestamp"]))
        assert key not in seen, f"duplicate event for {key}"
        seen[key] = e
    assert len(seen) == len(meters) * len(intervals), (len(seen), len(meters) * len(intervals))
    for i, end in enumerate(intervals):
        for m, meter in enumerate(meters):
            produced, consumed = expected_value(m, i)
            e = seen[(meter, end)]
            assert (int(e["energy_produced"]), int(e["energy_consumed"])) == (produced, consumed)


@contextlib.asynccontextmanager
async def running(pipeline: Pipeline) -> AsyncIterator[Pipeline]:
    task = asyncio.create_task(pipeline.run())
    try:
        yield pipeline
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
