"""Alerts against the real daemon and localnet: a real condition (every RPC endpoint failing
long enough) raises `rpc_down` once, and it is in the event log, /api/v1/alerts, /ready,
/metrics and `gridnode status`; when the RPC answers again it clears once."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from simulators.chain.localnet import Localnet
from tests.api.harness import ApiNode, problem, websocket
from tests.configs import localnet_node
from tests.net import pick_free_port
from tests.test_cli import run_cli

ALERTS = {"evaluate_every_s": 0.2, "rpc_down_s": 1.0}


async def alert(node: ApiNode, token: str, state: str, timeout_s: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        listed = await node.call("GET", "/api/v1/alerts", token=token)
        assert listed.status == 200, listed
        found = {a["name"]: a for a in listed.json["alerts"]}
        if "rpc_down" in found and found["rpc_down"]["state"] == state:
            return dict(listed.json)
        assert time.monotonic() < deadline, f"rpc_down never {state}: {listed.json}"
        await asyncio.sleep(0.1)


def active(metrics_text: str) -> dict[str, float]:
    return {s.labels["alert"]: s.value for f in text_string_to_metric_families(metrics_text)
            if f.name == "gridnode_alert_active" for s in f.samples}


async def test_rpc_down_is_raised_shown_everywhere_and_cleared(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with Localnet(port=pick_free_port(), slot_ms=25, state_dir=tmp_path / "chain") as net:
        node = ApiNode(tmp_path, localnet_node(net, tmp_path / "state",
                                               rpc={"health_interval_s": 0.2}),
                       {"alerts": ALERTS})
        async with node:
            monitor = node.token("monitor", "grafana")
            before = await node.call("GET", "/api/v1/alerts", token=monitor)
            assert before.json == {"active": 0, "alerts": []}
            async with websocket(node, "since=0&type=alert.raised,alert.cleared", monitor) as ws:
                net.faults.update({"http_error_rate": 1.0})
                down_at = time.monotonic()
                raised = await alert(node, monitor, "raised")
                assert time.monotonic() - down_at >= ALERTS["rpc_down_s"]
                assert raised["active"] == 1
                entry = raised["alerts"][0]
                assert entry["threshold"] == ALERTS["rpc_down_s"]
                assert entry["value"] >= ALERTS["rpc_down_s"]
                assert net.rpc_url in entry["detail"] and "no RPC endpoint healthy" in \
                    entry["detail"]
                ready = problem(await node.call("GET", "/ready"), 503)
                assert ready["alerts"] == ["rpc_down"]
                text = (await node.call("GET", "/metrics", token=monitor)).text
                assert active(text)["rpc_down"] == 1 and active(text)["pending"] == 0
                code, out, _ = await asyncio.to_thread(
                    run_cli, capsys, "status", "-c", str(node.config_path))
                assert code == 0 and "alerts:\n  rpc_down since " in out, out

                net.faults.update({"http_error_rate": 0.0})
                cleared = await alert(node, monitor, "cleared")
                assert cleared["active"] == 0
                async with asyncio.timeout(10):
                    got = [json.loads((await ws.receive()).data) for _ in range(2)]
            assert [(e["type"], e["data"]["name"]) for e in got] == [
                ("alert.raised", "rpc_down"), ("alert.cleared", "rpc_down")]
            ready_again = await node.call("GET", "/ready")
            assert ready_again.status == 200 and ready_again.json["alerts"] == []
            assert active((await node.call("GET", "/metrics", token=monitor)).text)[
                "rpc_down"] == 0
            code, out, _ = await asyncio.to_thread(
                run_cli, capsys, "status", "-c", str(node.config_path))
            assert "alerts: none raised" in out, out
        # stored: once each, whatever the number of evaluation rounds
        async with await node.db() as db:
            rows = await db.fetchall("SELECT type FROM events WHERE type LIKE 'alert.%' "
                                     "ORDER BY id")
            stored = await db.fetchall("SELECT name, state FROM alerts")
    assert [r[0] for r in rows] == ["alert.raised", "alert.cleared"]
    assert [tuple(r) for r in stored] == [("rpc_down", "cleared")]


async def stored_state(node: ApiNode, name: str, state: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        async with await node.db() as db:
            row = await db.fetchone("SELECT state FROM alerts WHERE name = ?", (name,))
        if row is not None and row[0] == state:
            return
        assert time.monotonic() < deadline, f"{name} never {state} in the store: {row}"
        await asyncio.sleep(0.1)


async def test_alerts_are_raised_and_cleared_with_the_api_off(tmp_path: Path) -> None:
    """Alerts are the daemon's, not the API's: with `[api] enabled = false` a real condition
    still raises rpc_down and clears it, stored with its events."""
    async with Localnet(port=pick_free_port(), slot_ms=25, state_dir=tmp_path / "chain") as net:
        node = ApiNode(tmp_path, localnet_node(net, tmp_path / "state",
                                               rpc={"health_interval_s": 0.2}),
                       {"alerts": ALERTS}, api={"enabled": False})
        async with node:
            running = {t.get_name() for t in asyncio.all_tasks()}
            assert "alerts" in running and "api" not in running
            assert not node.notifier.listening_at_ready
            net.faults.update({"http_error_rate": 1.0})
            await stored_state(node, "rpc_down", "raised")
            net.faults.update({"http_error_rate": 0.0})
            await stored_state(node, "rpc_down", "cleared")
        async with await node.db() as db:
            rows = await db.fetchall("SELECT type FROM events WHERE type LIKE 'alert.%' "
                                     "ORDER BY id")
    assert [r[0] for r in rows] == ["alert.raised", "alert.cleared"]
