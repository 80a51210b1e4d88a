"""GET /metrics against the real daemon (localnet, a Modbus meter, the pipeline): a real scrape,
parsed by prometheus_client's own parser, agrees with the store and the subsystems."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from gridnode import __version__
from gridnode.keys import load_keypair
from simulators.chain.localnet import Localnet
from simulators.meters.fleet import MeterFleet
from tests.api.harness import ApiNode, problem
from tests.configs import localnet_node, modbus_meter, tcp_bus
from tests.net import pick_free_port

pytestmark = pytest.mark.asyncio(loop_scope="module")
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def node(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[ApiNode, str]]:
    tmp = tmp_path_factory.mktemp("api-metrics")
    async with Localnet(port=pick_free_port(), slot_ms=25, state_dir=tmp / "chain") as net:
        users = [str(p) for p in net.bootstrap["keypairs"]["users"][:1]]
        api = ApiNode(tmp, localnet_node(net, tmp / "state", user_keypairs=users),
                      {"meters": {"buses": [tcp_bus(pick_free_port(),
                                                    modbus_meter("house", 1, "sdm630"),
                                                    poll_interval_s=0.5, timeout_s=0.5)]}})
        async with MeterFleet.from_config(api.config), api:
            yield api, str(load_keypair(users[0]).pubkey())


async def scrape(api: ApiNode) -> tuple[Samples, dict[str, str]]:
    answer = await api.call("GET", "/metrics", token=api.token("monitor", "prometheus"))
    assert answer.status == 200, answer
    assert answer.headers["Content-Type"].startswith("text/plain; version=")
    samples: Samples = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(answer.text):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples, types


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def test_a_scrape_agrees_with_the_store_and_the_subsystems(
        node: tuple[ApiNode, str]) -> None:
    api, wallet = node
    created = await api.call("POST", "/api/v1/transactions/create", token=api.token(), body={
        "tx_type": "user_registration", "submit": True,
        "payload": {"user": wallet, "user_type": "prosumer", "location": "metrics test"}})
    assert created.status == 201, created
    op = created.json["operation_id"]
    deadline = time.monotonic() + 30
    while (await api.call("GET", f"/api/v1/transactions/{op}/status",
                          token=api.token())).json["status"] != "finalized":
        assert time.monotonic() < deadline, "the operation did not finalize"
        await asyncio.sleep(0.1)
    samples, types = await scrape(api)

    for status in ("pending", "finalized"):
        assert value(samples, "gridnode_transactions_total", tx_type="user_registration",
                     status=status) == 1
    assert ("gridnode_transactions_total", (("status", "created"),
                                            ("tx_type", "user_registration"))) not in samples
    assert types["gridnode_transactions"] == "counter"
    async with await api.db() as db:
        by_status = {r[0]: r[1] for r in await db.fetchall(
            "SELECT status, count(*) FROM operations GROUP BY status")}
        confirmed = (await db.fetchone(
            "SELECT count(*), sum(confirmed_at_ms - submitted_at_ms) FROM operations "
            "WHERE confirmed_at_ms IS NOT NULL AND submitted_at_ms IS NOT NULL"))
    for status in ("pending", "finalized", "failed"):
        assert value(samples, "gridnode_outbox_operations", status=status) == \
            by_status.get(status, 0)
    assert value(samples, "gridnode_transactions_finished_total", result="success",
                 status="finalized", error="none") == by_status["finalized"]

    # histograms: counts and sums from the store; buckets reach past the 60 s alert
    assert value(samples, "gridnode_transaction_confirmation_seconds_count") == confirmed[0] >= 1
    assert value(samples, "gridnode_transaction_confirmation_seconds_sum") == \
        pytest.approx(confirmed[1] / 1000)
    assert value(samples, "gridnode_transaction_confirmation_seconds_bucket", le="120.0") == \
        confirmed[0]
    async with await api.db() as db:
        submitted = (await db.fetchone(
            "SELECT count(*) FROM operations WHERE submitted_at_ms IS NOT NULL"))[0]
    assert value(samples, "gridnode_transaction_submission_seconds_count") == submitted >= 1
    rpc = {k[1]: v for k, v in samples.items()
           if k[0] == "gridnode_rpc_request_duration_seconds_count"}
    assert len(rpc) == 1 and next(iter(rpc.values())) > 0
    endpoint = dict(next(iter(rpc)))["endpoint"]
    assert endpoint.startswith("127.0.0.1:")
    assert ("gridnode_rpc_request_duration_seconds_bucket",
            (("endpoint", endpoint), ("le", "120.0"))) in samples
    assert value(samples, "gridnode_rpc_up", endpoint=endpoint) == 1
    assert value(samples, "gridnode_store_commit_duration_seconds_count") > 0

    # meters, the store's size, the node
    assert value(samples, "gridnode_meter_polls_total", meter="house") > 0
    assert value(samples, "gridnode_meter_readings_accepted_total", meter="house") > 0
    assert value(samples, "gridnode_meter_up", meter="house") == 1
    db_path = Path(api.config.node.database)
    size = (await asyncio.to_thread(db_path.stat)).st_size
    assert value(samples, "gridnode_store_size_bytes") >= size > 0
    assert value(samples, "gridnode_settlement_queue") == 0
    assert value(samples, "gridnode_build_info", version=__version__,
                 node_id=api.config.node.id) == 1

    # commits keep being measured: a write between two scrapes is counted
    assert (await api.call("POST", "/api/v1/transactions/create", token=api.token(), body={
        "tx_type": "meter_registration",
        "payload": {"owner": wallet, "meter_id": "house", "meter_type": "solar"}})).status == 201
    later, _ = await scrape(api)
    assert value(later, "gridnode_store_commit_duration_seconds_count") > \
        value(samples, "gridnode_store_commit_duration_seconds_count")
    # each status entry is counted once, however many scrapes read the audit log
    again, _ = await scrape(api)
    assert value(again, "gridnode_transactions_total", tx_type="user_registration",
                 status="finalized") == 1
    assert value(again, "gridnode_transaction_confirmation_seconds_count") == confirmed[0]


async def test_metrics_need_a_node_wide_token(node: tuple[ApiNode, str]) -> None:
    api, wallet = node
    problem(await api.call("GET", "/metrics"), 401)
    problem(await api.call("GET", "/metrics", token=api.token("user", wallet)), 403)


async def test_prometheus_client_is_loaded_by_the_first_scrape_not_by_the_api() -> None:
    """A node nobody scrapes does not carry prometheus_client (about 1 MiB of RSS)."""
    code = ("import sys, gridnode.daemon, gridnode.api.server, gridnode.api.routes, "
            "gridnode.api.metrics; print('prometheus_client' in sys.modules)")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code,
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert proc.returncode == 0 and out.decode().strip() == "False"
