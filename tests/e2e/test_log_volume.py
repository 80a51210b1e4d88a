"""What the node writes to its log at the default `info` level, under traffic and during an outage.

On an SD card under journald every line is wear: a line per RPC request (the HTTP client's own
request log) or per failed polling round buries the few lines an operator needs. These tests run
the real pipeline against the in-process localnet with the logging configuration the daemon
installs, and count the lines it writes.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import gridnode.log
from gridnode.config.logging import LoggingConfig
from gridnode.log import LIBRARY_LEVELS, configure_logging
from gridnode.outbox.pipeline import Pipeline
from gridnode.store import Store
from simulators.chain.localnet import Localnet
from tests.e2e.harness import (
    add_readings,
    all_finalized,
    bootstrap_signers,
    chain_config,
    outbox_config,
    recent_intervals,
    running,
    wait_for,
)
from tests.net import pick_free_port

# Loggers of the libraries under gridnode that log per request or per connection.
LIBRARIES = ("httpx", "httpcore", "aiohttp", "websockets", "apscheduler")


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """The daemon's logging configuration at `info` (JSON lines, to parse), restored afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    out = io.StringIO()
    configure_logging(LoggingConfig(level="info", format="json"), stream=out)
    yield out
    root.handlers[:] = handlers
    root.setLevel(level)
    for name in LIBRARY_LEVELS:
        logging.getLogger(name).setLevel(logging.NOTSET)


def parse(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]


async def test_no_per_request_lines_at_info(tmp_path: Path, log_lines: io.StringIO) -> None:
    meters, n_intervals = ["m-1", "m-2", "m-3"], 6
    async with Localnet(port=pick_free_port(), slot_ms=25, state_dir=tmp_path / "chain") as net:
        store = await Store.open(tmp_path / "node.sqlite")
        cfg = chain_config([net.rpc_url], [net.ws_url], require_registered_meters=False)
        pipeline = Pipeline(store, cfg, outbox_config(), bootstrap_signers(net.bootstrap))
        try:
            async with running(pipeline):
                for i, end in enumerate(recent_intervals(n_intervals)):
                    await add_readings(store, meters, [end], first_index=i)
                    await asyncio.sleep(0.5)
                await wait_for(lambda: all_finalized(store), 60, "every reading finalized")
            row = await store.fetchone("SELECT count(*) AS n FROM tx_attempts")
            assert row is not None
            transactions = int(row["n"])
        finally:
            await store.close()
    lines = parse(log_lines)
    by_logger = Counter(line["logger"] for line in lines)
    noisy = {name: n for name, n in by_logger.items() if name.split(".")[0] in LIBRARIES}
    assert noisy == {}, f"library request lines at info: {noisy} of {len(lines)} lines"
    # What is left are the node's own lines, none per transaction: signing and finalizing are
    # counted by the periodic summary (the one line of an interval batch is the meters').
    assert all(name.startswith("gridnode.") for name in by_logger), by_logger
    assert transactions >= n_intervals and len(lines) <= 3, (lines, transactions)


async def test_chain_outage_is_a_state_not_a_line_per_round(
        tmp_path: Path, log_lines: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 15 s outage with nothing in flight and the status poll every 0.1 s: 150 failed rounds,
    as many as the 150 s outage at one round a second of the field report."""
    monkeypatch.setattr(gridnode.log, "SUMMARY_EVERY_S", 6.0)
    outage_s = 15.0
    async with Localnet(port=pick_free_port(), slot_ms=25, state_dir=tmp_path / "chain") as net:
        store = await Store.open(tmp_path / "node.sqlite")
        cfg = chain_config([net.rpc_url], [net.ws_url], require_registered_meters=False)
        pipeline = Pipeline(store, cfg, outbox_config(poll_interval_s=0.1),
                            bootstrap_signers(net.bootstrap))
        try:
            async with running(pipeline):
                await asyncio.sleep(1.5)
                before = len(parse(log_lines))
                net.faults.update({"http_error_rate": 1.0})
                began = time.monotonic()
                await asyncio.sleep(outage_s)
                net.faults.update({"http_error_rate": 0.0})
                lasted = time.monotonic() - began
                await asyncio.sleep(3.0)
        finally:
            await store.close()
    lines = parse(log_lines)[before:]
    events = Counter(line["event"] for line in lines)
    text = "\n".join(json.dumps(line) for line in lines)

    poll = [x for x in lines if x["event"].startswith("status poll")]
    assert [(x["event"], x.get("state")) for x in poll] == [
        ("status poll: no RPC endpoint answered", "began"),
        ("status poll: no RPC endpoint answered", "ongoing"),
        ("status poll: no RPC endpoint answered", "ongoing"),
        ("status poll: RPC endpoint answered again", "ended")], text
    assert poll[0]["level"] == "warning" and "503 Service Unavailable" in poll[0]["error"]
    assert poll[-1]["level"] == "info"
    assert lasted - 2 <= poll[-1]["duration_s"] <= lasted + 2
    assert poll[-1]["occurrences"] >= 50                  # rounds that failed, in one line

    # Nothing to sign and nothing in flight: no blockhash is asked for, so none fails either
    # (the failure's cause in the refresh line: tests/chain/test_rpc_logging.py).
    refresh = [x for x in lines if x["event"].startswith("blockhash refresh")]
    assert refresh == [], text
    assert "SolanaRpcException()" not in text

    health = [x for x in lines if x["event"] == "rpc endpoint health changed"]
    assert [(x["level"], x["healthy"]) for x in health] == [("warning", False), ("info", True)]
    assert "503" in health[0]["error"] and health[1]["unhealthy_for_s"] >= outage_s - 2

    assert sum(events.values()) == len(poll) + len(refresh) + len(health), events
