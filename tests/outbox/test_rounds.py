"""The pipeline's round loop logs lasting conditions (a full disk, an RPC outage) as states."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from gridnode.chain.rpc import RpcPool
from gridnode.outbox.rounds import run_rounds
from gridnode.store import Store
from tests.net import pick_free_port


async def cap_at_current_size(store: Store, pages: int | None = None) -> None:
    """SQLite's page cap: past it a write is refused with SQLITE_FULL, as on a full disk."""
    async with store.write() as tx:
        if pages is None:
            row = await tx.fetchone("PRAGMA page_count")
            assert row is not None
            pages = int(row[0])
        await tx.execute(f"PRAGMA max_page_count = {pages}")


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, dict[str, Any]]]:
    return [(r.levelname, r.getMessage(), getattr(r, "gridnode_fields", {}))
            for r in caplog.records if r.name == "gridnode.outbox.rounds"]


async def test_full_disk_is_logged_when_it_starts_and_when_it_clears(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gridnode.outbox.rounds")
    store = await Store.open(tmp_path / "node.sqlite")
    async with store.write() as tx:
        await tx.execute("CREATE TABLE scratch (blob TEXT)")

    async def write_round() -> None:        # a round that stores something, as each stage does
        async with store.write() as tx:
            await tx.execute("INSERT INTO scratch VALUES (?)", ("x" * 50_000,))

    task = asyncio.create_task(run_rounds("submission", write_round, 0.02))
    try:
        await asyncio.sleep(0.2)
        await cap_at_current_size(store)
        await asyncio.sleep(1.0)             # some 50 rounds refused
        await cap_at_current_size(store, 1_073_741_823)
        await asyncio.sleep(0.3)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()
    got = lines(caplog)
    assert [(level, event, f["state"]) for level, event, f in got] == [
        ("WARNING", "submission: storage full, round paused", "began"),
        ("INFO", "submission: storage writable again", "ended")], got
    assert "storage full" in got[0][2]["error"]
    assert got[1][2]["occurrences"] >= 10 and got[1][2]["duration_s"] >= 0.9
    assert not any(r.exc_info for r in caplog.records)      # expected weather: no traceback


async def test_rpc_outage_is_logged_once_per_state(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gridnode.outbox.rounds")
    pool = RpcPool([f"http://127.0.0.1:{pick_free_port()}"], rounds=1)
    task = asyncio.create_task(run_rounds("status poll", pool.block_height, 0.02))
    await asyncio.sleep(1.0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await pool.close()
    got = lines(caplog)
    assert [(level, event, f["state"]) for level, event, f in got] == [
        ("WARNING", "status poll: no RPC endpoint answered", "began")], got
    assert "ConnectionRefusedError" in got[0][2]["error"]


async def test_a_bug_that_fails_every_round_logs_its_traceback_once(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gridnode.outbox.rounds")
    rounds = 0

    async def buggy_round() -> None:
        nonlocal rounds
        rounds += 1
        if rounds <= 40:
            raise KeyError("missing column")     # the same bug, every round
        if rounds <= 45:
            raise ValueError("another bug")      # a new one gets its own traceback

    task = asyncio.create_task(run_rounds("submission", buggy_round, 0.005))
    try:
        for _ in range(400):
            if rounds > 50:
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    got = lines(caplog)
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert [r.exc_info[0] for r in tracebacks if r.exc_info] == [KeyError, ValueError]
    assert [(level, event) for level, event, f in got if f.get("state") in
            ("began", "ended")] == [("ERROR", "submission: round failed"),
                                    ("INFO", "submission: rounds succeed again")]
    assert len(got) <= 5, got           # 45 failed rounds, not 45 tracebacks
