"""Daily reconciliation against the real localnet: readings, registry totals, GRID and trades sent
through gridnode's pipeline, then changed behind the node's back by test keys, and what each run
reports, stores, writes and raises."""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import struct
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from gridnode.chain.idl import idls_for_chain
from gridnode.chain.txtypes import new_operation
from gridnode.chain.validation import (
    GridMintingPayload,
    SettleTradePayload,
    TokenMintingPayload,
)
from gridnode.cli import main
from gridnode.config import GridnodeConfig
from gridnode.config.market import MarketConfig, MarketUser
from gridnode.config.node import NodeConfig
from gridnode.config.reconciliation import ReconciliationConfig
from gridnode.keys import load_keypair
from gridnode.outbox.pipeline import Pipeline
from gridnode.settlement.reconciliation import (
    ATA_PROGRAM,
    TOKEN_PROGRAM,
    Reconciler,
    ata,
    catch_up,
    day_window,
    reconciliation_pool,
)
from gridnode.store import Store, operations, settlements
from gridnode.store import alerts as stored_alerts
from gridnode.store import reconciliation as stored
from simulators.chain.localnet import Localnet
from tests.configs import localnet_node, write_config
from tests.e2e.harness import (
    add_readings,
    all_finalized,
    bootstrap_signers,
    chain_config,
    outbox_config,
    recent_intervals,
    register,
    running,
    wait_for,
)
from tests.net import pick_free_port

ZONE = "Europe/Berlin"
SYSTEM_PROGRAM = Pubkey.from_string("11111111111111111111111111111111")


async def rpc(url: str, method: str, params: list[Any]) -> Any:
    async with httpx.AsyncClient(timeout=5) as client:
        body = (await client.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method,
                                             "params": params})).json()
    assert "error" not in body, body
    return body["result"]


async def send(url: str, ixs: list[Instruction], payer: Keypair, *others: Keypair) -> None:
    """A transaction made and signed outside gridnode (a test key), waited for to finalized."""
    bh = (await rpc(url, "getLatestBlockhash", [{"commitment": "confirmed"}]))["value"]
    tx = VersionedTransaction(Message.new_with_blockhash(
        ixs, payer.pubkey(), Hash.from_string(bh["blockhash"])), [payer, *others])
    sig = await rpc(url, "sendTransaction", [base64.b64encode(bytes(tx)).decode(),
                                             {"encoding": "base64", "preflightCommitment": "confirmed"}])

    async def final() -> bool:
        st = (await rpc(url, "getSignatureStatuses", [[sig]]))["value"][0]
        if st is not None and st.get("err") is not None:
            raise AssertionError(f"test transaction failed: {st['err']}")
        return st is not None and st.get("confirmationStatus") == "finalized"

    await wait_for(final, 20, f"test transaction {sig}")


def create_atas(payer: Keypair, owners: list[Pubkey], mint: Pubkey) -> list[Instruction]:
    return [Instruction(ATA_PROGRAM, bytes([1]), [
        AccountMeta(payer.pubkey(), True, True), AccountMeta(ata(o, mint), False, True),
        AccountMeta(o, False, False), AccountMeta(mint, False, False),
        AccountMeta(SYSTEM_PROGRAM, False, False), AccountMeta(TOKEN_PROGRAM, False, False)])
        for o in owners]


def day_of(ends: list[int]) -> tuple[list[int], datetime.date]:
    """Interval ends that all lie in one local day (an interval belongs to the day it ends in),
    and that day."""
    zone = ZoneInfo(ZONE)
    days = {datetime.datetime.fromtimestamp(e - 1, zone).date() for e in ends}
    if len(days) > 1:           # the intervals straddle local midnight: take the ones before it
        start, _ = day_window(max(days), zone)
        ends = [start - 60 * i for i in range(len(ends) - 1, -1, -1)]
    return ends, datetime.datetime.fromtimestamp(ends[-1] - 1, zone).date()


def config_for(net: Localnet, tmp_path: Path, delegate: str | None = None,
               **recon: Any) -> GridnodeConfig:
    """A node holding user 0's key; `delegate` is a user who keeps its own key."""
    users = net.bootstrap["keypairs"]["users"]
    market = None if delegate is None else MarketConfig(users=[MarketUser(
        name="bob", pubkey=delegate, delegate=True)])
    return GridnodeConfig(
        node=NodeConfig(id="recon-test", data_dir=tmp_path / "data", timezone=ZONE),
        chain=chain_config([net.rpc_url], registry_readings=True, user_keypairs=[users[0]]),
        reconciliation=ReconciliationConfig(**recon), market=market)


async def reconcile(config: GridnodeConfig, store: Store, day: datetime.date) -> Any:
    assert config.chain is not None
    pool = reconciliation_pool(config)
    try:
        return await Reconciler(config, store, pool, idls_for_chain(config.chain)).run_day(
            day, "manual")
    finally:
        await pool.close()


async def raised(store: Store) -> dict[str, str]:
    return {a.name: a.detail for a in await stored_alerts.all_alerts(store)
            if a.raised and a.name.startswith("reconciliation.")}


async def test_reconciliation_against_the_localnet(tmp_path: Path) -> None:
    async with Localnet(port=pick_free_port(), slot_ms=25, state_dir=tmp_path / "chain") as net:
        bob = load_keypair(net.bootstrap["keypairs"]["users"][1])
        config = config_for(net, tmp_path, delegate=str(bob.pubkey()))
        assert config.chain is not None
        idls = idls_for_chain(config.chain)
        mint = idls["energy_token"].find_pda([b"mint"])[0]
        signers = bootstrap_signers(net.bootstrap)
        alice = load_keypair(net.bootstrap["keypairs"]["users"][0])
        authority = load_keypair(net.bootstrap["keypairs"]["authority"])
        store = await Store.open(config.node.database)
        pipeline = Pipeline(store, config.chain, outbox_config(), signers)
        await send(net.rpc_url, create_atas(alice, [alice.pubkey(), bob.pubkey()], mint), alice)
        ends, day = day_of(recent_intervals(3))
        async with running(pipeline):
            await register(store, alice, ["pv-1"])
            await add_readings(store, ["pv-1"], ends)
            async with store.write() as tx:
                await operations.add(tx, new_operation(TokenMintingPayload(
                    token_account=str(ata(alice.pubkey(), mint)), amount=5_000_000),
                    "mint:alice:1"))
            await wait_for(lambda: all_finalized(store), 30, "registration, readings, mint")
            async with store.write() as tx:       # the meter's net generation becomes GRID
                await operations.add(tx, new_operation(GridMintingPayload(
                    meter_id="pv-1", owner=str(alice.pubkey()),
                    token_account=str(ata(alice.pubkey(), mint)), interval_end=ends[-1])))
            await wait_for(lambda: all_finalized(store), 30, "grid minting")

        # 1. Everything went through the node: no discrepancy, stored, written, nothing raised.
        report = await reconcile(config, store, day)
        assert report.discrepancies == [], report.lines()
        assert report.counts["readings_landed"] == report.counts["readings_finalized"] == 3
        assert report.counts["meters_registered"] == 1
        assert set(report.checks) >= {"meter_totals", "meter_settled", "readings", "balance",
                                      "trades", "settlement_status"}
        run = await stored.get(store, day)
        assert run is not None and run.status == "completed" and run.discrepancies == 0
        assert not run.final                  # the day is not over: the scheduler runs it again
        assert await stored.last_completed_day(store) is None
        written = json.loads(await asyncio.to_thread(Path(run.report_path or "").read_text))
        assert written == run.report and written["day"] == day.isoformat()
        assert Path(run.report_path or "").parent == tmp_path / "data" / "reports"
        assert await raised(store) == {}
        minted = (sum(1000 + i for i in range(3)) - sum(200 + 3 * i for i in range(3))) * 10**6
        grid = await rpc(net.rpc_url, "getTokenAccountBalance", [str(ata(alice.pubkey(), mint)),
                                                                 {"commitment": "finalized"}])
        assert int(grid["value"]["amount"]) == 5_000_000 + minted     # the balance checked

        # 2. The meter's owner adds a reading to the registry behind the node's back.
        meter = idls["registry"].find_pda([b"meter", b"pv-1"])[0]
        await send(net.rpc_url, [idls["registry"].instruction(
            "update_meter_reading", {"energy_generated": 777, "energy_consumed": 55,
                                     "reading_timestamp": ends[-1]},
            {"meter_account": meter, "oracle_authority": alice.pubkey()})], alice)
        report = await reconcile(config, store, day)
        sent_gen = sum(1000 + i for i in range(3))       # tests.e2e.harness.expected_value
        sent_cons = sum(200 + 3 * i for i in range(3))
        assert [(d.kind, d.subject, d.what, d.chain, d.store, d.difference)
                for d in report.discrepancies] == [
            ("meter_totals", "pv-1", "total_generation", sent_gen + 777, sent_gen, 777),
            ("meter_totals", "pv-1", "total_consumption", sent_cons + 55, sent_cons, 55)]
        alerts = await raised(store)
        assert set(alerts) == {"reconciliation.meter_totals.pv-1.total_generation",
                               "reconciliation.meter_totals.pv-1.total_consumption"}
        assert "difference +777 Wh" in alerts["reconciliation.meter_totals.pv-1.total_generation"]
        run = await stored.get(store, day)
        assert run is not None and run.discrepancies == 2 and run.runs == 2

        # 3. GRID moved behind the node's back (alice signs an SPL transfer to bob herself).
        await send(net.rpc_url, [Instruction(TOKEN_PROGRAM, bytes([3]) + struct.pack(
            "<Q", 1_234_000), [AccountMeta(ata(alice.pubkey(), mint), False, True),
                               AccountMeta(ata(bob.pubkey(), mint), False, True),
                               AccountMeta(alice.pubkey(), True, False)])], alice)
        # 4. A trade with a local party that no settlement row knows: alice sells, bob buys, the
        # market authority matches, all signed by test keys outside gridnode.
        trading = idls["trading"]
        market = trading.find_pda([b"market"])[0]
        orders = []
        for side, user, price in (("sell", alice, 150), ("buy", bob, 200)):
            data = base64.b64decode((await rpc(net.rpc_url, "getAccountInfo", [
                str(market), {"encoding": "base64", "commitment": "finalized"}]))["value"]["data"][0])
            index = trading.decode_account("Market", data)["active_orders"]
            order = trading.find_pda([b"order", bytes(user.pubkey()), struct.pack("<Q", index)])[0]
            accounts = {"market": market, "order": order, "authority": user.pubkey(),
                        "system_program": SYSTEM_PROGRAM}
            if side == "sell":
                ix = trading.instruction("create_sell_order", {
                    "energy_amount": 400, "price_per_kwh": price},
                    {**accounts, "erc_certificate": trading.program_id})
            else:
                ix = trading.instruction("create_buy_order", {
                    "energy_amount": 400, "max_price_per_kwh": price}, accounts)
            await send(net.rpc_url, [ix], user)
            orders.append(order)
        sell, buy = orders
        trade = trading.find_pda([b"trade", bytes(buy), bytes(sell)])[0]
        await send(net.rpc_url, [trading.instruction("match_orders", {"match_amount": 400}, {
            "market": market, "buy_order": buy, "sell_order": sell, "trade_record": trade,
            "authority": authority.pubkey(), "system_program": SYSTEM_PROGRAM})], authority)
        report = await reconcile(config, store, day)
        found = {(d.kind, d.subject, d.what): d for d in report.discrepancies}
        balance = found[("balance", str(alice.pubkey()), "GRID balance")]
        assert (balance.chain, balance.store, balance.difference) == (
            5_000_000 + minted - 1_234_000, 5_000_000 + minted, -1_234_000)
        unsettled = found[("trade_without_settlement", str(trade), "settlement rows")]
        assert (unsettled.chain, unsettled.store) == (1, 0)
        assert "400 Wh" in unsettled.detail and "175 per kWh" in unsettled.detail
        received = found[("balance", str(bob.pubkey()), "GRID balance")]    # bob keeps his key
        assert (received.chain, received.store, received.difference) == (1_234_000, 0, 1_234_000)
        assert len(report.discrepancies) == 5, report.lines()      # and the two meter totals
        trade_alert = (f"reconciliation.trade_without_settlement.{day.isoformat()}.{trade}"
                       ".settlement_rows")
        assert trade_alert in await raised(store)

        # 5. The settlement row appears (as the settler would write it): the trade's alert is
        # cleared by the next run of the same day; the others stay raised.
        async with store.write() as tx:
            await settlements.add(tx, settlements.Trade(
                str(trade), str(buy), str(sell), str(bob.pubkey()), str(alice.pubkey()), 400,
                175, 400 * 175, 400 * 175 * 25 // 10_000,
                epoch=int(datetime.datetime.now(datetime.UTC).timestamp())),
                new_operation(SettleTradePayload(
                    trade_record=str(trade), seller=str(alice.pubkey()), buyer=str(bob.pubkey()),
                    seller_token_account=str(ata(alice.pubkey(), mint)),
                    buyer_token_account=str(ata(bob.pubkey(), mint)),
                    signer=str(alice.pubkey()))), source="test")
        report = await reconcile(config, store, day)
        kinds = sorted((d.kind, d.what) for d in report.discrepancies)
        assert kinds == [("balance", "GRID balance"), ("balance", "GRID balance"),
                         ("meter_totals", "total_consumption"),
                         ("meter_totals", "total_generation")], report.lines()
        alerts = await raised(store)
        assert trade_alert not in alerts
        assert "reconciliation.meter_totals.pv-1.total_generation" in alerts

        # 6. The gateway key signs oracle readings outside the node: one repeats an interval the
        # node sent, one is for an interval the node never finalized.
        gateway = load_keypair(net.bootstrap["keypairs"]["gateway"])
        oracle = idls["oracle"]
        await send(net.rpc_url, [oracle.instruction("submit_meter_reading", {
            "meter_id": "pv-1", "energy_produced": p, "energy_consumed": c,
            "reading_timestamp": ts}, {"oracle_data": oracle.find_pda([b"oracle_data"])[0],
                                       "authority": gateway.pubkey()})
            for ts, p, c in ((ends[0], 1000, 200), (ends[0] - 60, 5, 6))], gateway)
        report = await reconcile(config, store, day)
        readings = [d for d in report.discrepancies if d.kind == "readings"]
        assert [(d.subject, d.chain, d.store) for d in readings] == [("pv-1", 5, 3)]
        assert f"{ends[0]} landed 2 times" in readings[0].detail
        assert f"{ends[0] - 60} landed but not finalized by the node" in readings[0].detail
        await store.close()


async def test_missed_days_run_at_start_once_each(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    async with Localnet(port=pick_free_port(), slot_ms=25, state_dir=tmp_path / "chain") as net:
        config = config_for(net, tmp_path, at="00:00")
        store = await Store.open(config.node.database)
        zone = ZoneInfo(ZONE)
        today = datetime.datetime.now(zone).date()
        last = today - datetime.timedelta(days=4)
        async with store.write() as tx:       # the node reconciled `last`, then was down
            await stored.start(tx, last, ZONE, "schedule", True)
            await stored.complete(tx, last, {"day": last.isoformat()}, 0, None)
        reports = await catch_up(config, store, "catch_up")
        assert [r.day for r in reports] == [today - datetime.timedelta(days=n) for n in (3, 2, 1)]
        assert all(r.discrepancies == [] for r in reports)
        assert await stored.last_completed_day(store) == today - datetime.timedelta(days=1)
        for r in reports:
            run = await stored.get(store, r.day)
            assert run is not None and run.final and run.trigger == "catch_up" and run.runs == 1
            assert await asyncio.to_thread(Path(run.report_path or "").exists)
        assert await catch_up(config, store, "schedule") == []       # nothing runs twice
        # a clock stepped back a week finds nothing due either
        week_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=7)
        assert await catch_up(config, store, "schedule", now=lambda: week_ago) == []
        await store.close()

        # gridnode reconcile: the stored report of a day, a day never run, and a run now
        yesterday = (today - datetime.timedelta(days=1)).isoformat()
        cfg = write_config(tmp_path / "node.toml", localnet_node(net, tmp_path / "data"),
                           node={"timezone": ZONE, "id": "recon-test"},
                           reconciliation={"at": "00:00"})
        capsys.readouterr()
        assert await asyncio.to_thread(main, ["reconcile", "-c", str(cfg), "--date",
                                              yesterday]) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"reconciliation of {yesterday} ({ZONE}")
        assert "no discrepancy" in out and "readings: 0 oracle readings landed" in out
        assert await asyncio.to_thread(main, ["reconcile", "-c", str(cfg), "--date",
                                              "2020-01-01"]) == 1
        assert "no reconciliation stored of 2020-01-01" in capsys.readouterr().err
        assert await asyncio.to_thread(main, ["reconcile", "-c", str(cfg), "--now",
                                              "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert (report["day"], report["discrepancies"]) == (yesterday, [])
        store = await Store.open(config.node.database)
        run = await stored.get(store, today - datetime.timedelta(days=1))
        assert run is not None and (run.trigger, run.runs, run.final) == ("manual", 2, True)
        await store.close()


async def test_the_daemon_schedules_it_in_the_node_zone(tmp_path: Path) -> None:
    from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]

    from gridnode.daemon import _scheduler

    config = GridnodeConfig(
        node=NodeConfig(data_dir=tmp_path, timezone=ZONE),
        chain=chain_config(["http://127.0.0.1:9"]),
        reconciliation=ReconciliationConfig(at="03:15", misfire_grace_s=7200))
    store = await Store.open(tmp_path / "gridnode.db")
    try:
        jobs = {j.id: j for j in _scheduler(config, store).get_jobs()}
        cron = jobs["reconciliation"]
        assert isinstance(cron.trigger, CronTrigger)
        assert str(cron.trigger.timezone) == ZONE
        assert {f.name: str(f) for f in cron.trigger.fields}["hour"] == "3"
        assert {f.name: str(f) for f in cron.trigger.fields}["minute"] == "15"
        assert (cron.misfire_grace_time, cron.coalesce, cron.max_instances) == (7200, True, 1)
        assert "reconciliation-start" in jobs and "reconciliation-check" in jobs
        # the chain is away: the day is recorded as failed, stays due, and is tried again soon
        sched = _scheduler(config, store)
        await sched.get_job("reconciliation-start").func("catch_up")
        # the latest due day: yesterday in the zone, or the day before until `at` (03:15) today
        runs = await stored.recent(store)
        today = datetime.datetime.now(ZoneInfo(ZONE)).date()
        assert runs and runs[0].day in (today - datetime.timedelta(days=1),
                                        today - datetime.timedelta(days=2))
        run = runs[0]
        assert run.status == "failed" and "RpcUnavailable" in (run.error or "")
        assert await stored.last_completed_day(store) is None
        retry = sched.get_job("reconciliation-retry")
        assert retry is not None and retry.args == ("retry",)
        off = config.model_copy(update={"reconciliation": ReconciliationConfig(enabled=False)})
        assert "reconciliation" not in {j.id for j in _scheduler(off, store).get_jobs()}
    finally:
        await store.close()


async def test_the_daemon_catches_up_at_start(tmp_path: Path) -> None:
    """`gridnode run`'s daemon, down for three days, reconciles the days it missed on its own."""
    from gridnode.config import parse_config
    from gridnode.daemon import Daemon
    from gridnode.systemd import Notifier
    from tests.configs import toml

    async with Localnet(port=pick_free_port(), slot_ms=25, state_dir=tmp_path / "chain") as net:
        today = datetime.datetime.now(ZoneInfo(ZONE)).date()
        cfg = parse_config(toml({**localnet_node(net, tmp_path / "data"), "api": {
            "enabled": False}, "node": {"data_dir": str(tmp_path / "data"), "timezone": ZONE},
            "reconciliation": {"at": "00:00", "start_delay_s": 0.2}}))
        store = await Store.open(cfg.node.database)
        async with store.write() as tx:
            last = today - datetime.timedelta(days=3)
            await stored.start(tx, last, ZONE, "schedule", True)
            await stored.complete(tx, last, {"day": last.isoformat()}, 0, None)
        node = Daemon(cfg, Notifier({}))
        task = asyncio.create_task(node.run())

        async def caught_up() -> bool:
            assert not task.done(), task
            return await stored.last_completed_day(store) == today - datetime.timedelta(days=1)

        await wait_for(caught_up, 30, "the catch-up at start")
        node.request_stop("test")
        assert await task == 0
        runs = [r for r in await stored.recent(store) if r.day > last]
        assert [(r.day, r.trigger, r.runs) for r in runs] == [
            (today - datetime.timedelta(days=n), "catch_up", 1) for n in (1, 2)]
        await store.close()
