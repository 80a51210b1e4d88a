"""The daemon's periodic one-line summary at info: readings, intervals, operations, health."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from gridnode import daemon
from gridnode.config import parse_config
from gridnode.meters.recorder import Recorder
from gridnode.meters.service import MetersSubsystem
from gridnode.store import Store
from gridnode.systemd import Notifier


def _meters(c: Any, store: Store, k: Any) -> list[MetersSubsystem]:
    return [MetersSubsystem(Recorder(store, []), [], None)]


@pytest.mark.parametrize("every_s", [0.25, 0.0])
async def test_a_summary_line_at_the_configured_cadence(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        every_s: float) -> None:
    caplog.set_level(logging.INFO, logger="gridnode.daemon")
    monkeypatch.setattr(daemon, "build_subsystems", _meters)
    cfg = parse_config(f'[node]\ndata_dir = "{tmp_path / "state"}"\n'
                       f"[logging]\nsummary_every_s = {every_s}\n")
    # a watchdog period of 0.3 s: the health loop (and the summary check) runs every 0.1 s
    node = daemon.Daemon(cfg, Notifier({"NOTIFY_SOCKET": str(tmp_path / "n.sock"),
                                        "WATCHDOG_USEC": "300000"}))
    task = asyncio.create_task(node.run())
    await asyncio.sleep(1.6)
    node.request_stop("test")
    assert await asyncio.wait_for(task, 10) == 0
    lines = [getattr(r, "gridnode_fields", {}) for r in caplog.records
             if r.getMessage() == "summary"]
    if not every_s:
        assert lines == []
        return
    assert 3 <= len(lines) <= 7, lines
    assert all(r.levelno == logging.INFO for r in caplog.records if r.getMessage() == "summary")
    assert lines[-1]["readings"] == 0 and lines[-1]["intervals"] == 0
    assert lines[-1]["healthy"] is True
