"""Issue 14's acceptance run with the real daemon: `gridnode run` (market authority, policy
orders, minting, settlement, reconciliation on, deliveries upstream to the platform simulator)
trades for two prosumers and two consumers whose MQTT meters (simulators.meters, Tasmota
format on the test broker) export and import, on the localnet over HTTP, through 6+ one-minute
epochs of one-minute intervals, while it is SIGKILLed at random points 20+ times and the
localnet drops transactions, loses sendTransaction answers and fails its primary RPC port.

Then, judged against the chain as the test reads it itself (tests/e2e/chain_records.py: raw
accounts and transaction logs decoded by hand):
1. every user's GRID balance = its meter's net generation on chain x 10^6 (each finalized
   reading's MeterReadingSubmitted event; the registry's totals agree and are fully minted)
   - what it sold + what it bought, where the trades are the test's own price-time matching of
   the orders on chain, epoch by epoch (orders grouped by the epoch their creation fell in);
   the TradeRecords on chain are exactly those matches;
2. each TradeRecord (every seller is local) has exactly one settlement row, `settled`, with its
   amounts, and exactly one successful transaction touching its TradeSettlement marker (the
   GRID moved once);
3. `gridnode reconcile --now --json` of each day the run touched reports no discrepancy;
4. the platform simulator holds every finalized interval and every settlement exactly once
   (by its dedupe key), each interval with the signature of the transaction that put its
   reading on chain, per meter in the order the node finalized them, and took no request with
   a bad signature;
5. the platform was down (stopped, then started again on the same port and database) for
   OUTAGE_S through two epochs with trades: what the node finalized and settled meanwhile was
   held back, and arrived once after it; then it answered 429 with Retry-After for STORM_S,
   and the node's requests in that storm stay within what the Retry-After spacing allows (no
   tight loop).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import json
import math
import os
import random
import signal
import sqlite3
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from solders.pubkey import Pubkey

from gridnode.config import load_config
from gridnode.keys import load_keypair
from gridnode.store import Store
from simulators.chain.localnet import Localnet
from simulators.meters.fleet import MeterFleet
from simulators.meters.model import DayProfile
from simulators.platform import PlatformSimulator
from tests.configs import localnet_node, mqtt, mqtt_meter, write_config
from tests.e2e.chain_records import (
    ACTIVE,
    CANCELLED,
    COMPLETED,
    PARTIAL,
    SELL,
    Chain,
    Order,
    price_time_match,
)
from tests.e2e.harness import REPO, all_finalized, register, wait_for
from tests.net import pick_free_port

WH = 10**6                  # GRID base units per Wh
EPOCH_S = 60
EPOCHS = 6                  # closed intervals the meters feed, so epochs that trade
MIN_KILLS = 20
FAULT_WINDOW_S = 30
# The platform, from the first interval's end (the `first` boundary + EPOCH_S): up for
# OUTAGE_FROM_S more, then down for OUTAGE_S (the epochs ending at +1, +2 and +3 minutes trade
# and settle meanwhile), then 429 with Retry-After RETRY_AFTER_S for STORM_S.
OUTAGE_FROM_S = 40
OUTAGE_S = 150
STORM_S = 30
RETRY_AFTER_S = 3
TOKEN_PROGRAM = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
ATA_PROGRAM = Pubkey.from_string("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL")
# name, policy, price (GRID base units per kWh), mean meter power (W; negative: exports)
USERS = [("u0", "sell_surplus", 100_000, -48_000.0), ("u1", "sell_surplus", 120_000, -36_000.0),
         ("u2", "buy_deficit", 150_000, 30_000.0), ("u3", "buy_deficit", 130_000, 63_000.0)]
UNFINISHED = ("created", "pending", "signed", "submitted", "unknown", "confirmed", "expired")
# The faults, in turn, each for FAULT_WINDOW_S, then none for as long.
FAULTS: list[tuple[str, dict[str, Any]]] = [
    ("dropped transactions", {"drop_tx_rate": 0.3}),
    ("lost sendTransaction answers", {"send_error_rate": 0.25, "send_timeout_rate": 0.2,
                                      "timeout_s": 2.0}),
    ("primary RPC port down (failover)", {"http_error_rate": 1.0}),
]
NO_FAULTS = {"drop_tx_rate": 0.0, "send_error_rate": 0.0, "send_timeout_rate": 0.0}


@dataclass(slots=True)
class Steady(DayProfile):
    """A meter's net power around `watts`, varying by 40 % over a few minutes with a phase of
    its own, so each epoch's book differs: in some the sellers offer more than the buyers take
    (a remainder is cancelled and the seller keeps its GRID), in others less."""

    watts: float = 0.0
    phase: float = 0.0

    def net_w(self, t: float) -> float:
        return self.watts * (1 + 0.4 * math.sin(t / 47 + self.phase))


def program_ids() -> dict[str, str]:
    return {p: json.loads((REPO / "idl" / f"{p}.json").read_text())["address"]
            for p in ("oracle", "registry", "energy_token", "trading")}


def pda(program: str, *seeds: bytes) -> str:
    return str(Pubkey.find_program_address(list(seeds), Pubkey.from_string(program))[0])


def ata(owner: str, mint: str) -> str:
    return str(Pubkey.find_program_address(
        [bytes(Pubkey.from_string(owner)), bytes(TOKEN_PROGRAM), bytes(Pubkey.from_string(mint))],
        ATA_PROGRAM)[0])


async def start(config: Path, log: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gridnode", "run", "-c", str(config), cwd=str(REPO), env=env,
            stdout=out, stderr=out)


async def count(store: Store, sql: str) -> int:
    row = await store.fetchone(sql)
    return int(row["n"]) if row else 0


async def cycle_faults(net: Localnet, windows: Counter[str]) -> None:
    """The localnet's faults in turn, each for a window, with a quiet window after each."""
    while True:
        for name, faults in FAULTS:
            if "http_error_rate" in faults:
                net.faults.update(faults, port=net.port)
            else:
                net.faults.update(faults)
            windows[name] += 1
            await asyncio.sleep(FAULT_WINDOW_S)
            net.faults.update(NO_FAULTS)
            net.faults.reset_port(net.port)
            await asyncio.sleep(FAULT_WINDOW_S / 2)


@dataclass(slots=True)
class Weather:
    """The platform simulator through the run: its instances (the same port and database each
    time), when it was down and in its 429 storm, and what it held and the node had around the
    outage. The simulator's counters live in memory, so they are summed over instances."""

    db: Path
    secret: str
    port: int
    sim: PlatformSimulator | None = None
    stats: Counter[str] | None = None
    down_ms: int = 0
    up_ms: int = 0
    storm_end_ms: int = 0
    held_at_down: set[tuple[str, ...]] | None = None
    node_at_up: set[tuple[str, ...]] | None = None

    async def up(self) -> PlatformSimulator:
        self.sim = PlatformSimulator(self.db, [self.secret], port=self.port)
        await self.sim.start()
        return self.sim

    async def down(self) -> None:
        if self.sim is not None:
            self.stats = self.totals()
            await self.sim.stop()
            self.sim = None

    def totals(self) -> Counter[str]:
        total: Counter[str] = Counter()
        total.update(self.stats or {})
        if self.sim is not None:
            total.update(self.sim.stats)
        return total


def platform_holds(db: Path) -> set[tuple[str, ...]]:
    """What the stopped platform's database holds, as (interval, meter, end) and (settlement,
    trade record): read after the stop, since a request in flight may still be stored then."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT type, meter_id, payload FROM items").fetchall()
    held: set[tuple[str, ...]] = set()
    for type_, meter, payload in rows:
        data = json.loads(payload)["data"]
        if type_ == "interval.finalized":
            held.add(("interval", meter, str(int(data["interval_end"]))))
        elif type_ == "settlement.completed":
            held.add(("settlement", data["trade_record"]))
    return held


async def node_has(store: Store) -> set[tuple[str, ...]]:
    """What the node has for the platform: its finalized intervals and settled trades."""
    rows = await store.fetchall(
        "SELECT json_extract(payload, '$.meter_id') AS meter, "
        "json_extract(payload, '$.interval_end') AS ends FROM operations "
        "WHERE tx_type = 'meter_reading' AND status = 'finalized'")
    settled = await store.fetchall("SELECT trade_record FROM settlements "
                                   "WHERE status = 'settled'")
    return ({("interval", r["meter"], str(int(r["ends"]))) for r in rows}
            | {("settlement", r["trade_record"]) for r in settled})


async def platform_weather(w: Weather, store: Store, first: int) -> None:
    """Down for OUTAGE_S from a while after the first interval, then back on the same port and
    database answering 429 with Retry-After for STORM_S, then well."""
    await asyncio.sleep(max(0.0, first + EPOCH_S + OUTAGE_FROM_S - time.time()))
    await w.down()
    w.held_at_down = platform_holds(w.db)
    w.down_ms = time.time_ns() // 1_000_000
    await asyncio.sleep(OUTAGE_S)
    w.node_at_up = await node_has(store)
    sim = await w.up()
    sim.add_fault(status=429, count=1_000_000, retry_after=RETRY_AFTER_S)
    w.up_ms = time.time_ns() // 1_000_000
    await asyncio.sleep(STORM_S)
    sim.faults.clear()
    w.storm_end_ms = time.time_ns() // 1_000_000


@pytest.mark.timeout(720)     # about 8.5 minutes: six one-minute epochs and the settling
async def test_market_through_kills_and_rpc_faults(tmp_path: Path) -> None:
    began = time.monotonic()
    rng = random.Random(1414)
    ids = program_ids()
    mint = pda(ids["energy_token"], b"mint")
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    secret_file = tmp_path / "upstream.secret"
    secret_file.write_text(secret + "\n")
    secret_file.chmod(0o600)
    log = tmp_path / "gridnode.log"
    windows: Counter[str] = Counter()
    weather = Weather(tmp_path / "platform.db", secret, pick_free_port())
    kill_times: list[float] = []
    async with Localnet(port=pick_free_port(), lag_port=pick_free_port(), slot_ms=25, users=4,
                        state_dir=tmp_path / "chain", faults={"seed": 14}) as net:
        platform_url = (await weather.up()).url
        keys = net.bootstrap["keypairs"]
        tag = uuid.uuid4().hex[:6]
        config = write_config(
            tmp_path / "gridnode.toml",
            localnet_node(net, tmp_path / "node", idl_dir=REPO / "idl", registry_readings=True,
                          authority_keypair=keys["authority"], request_timeout_s=1,
                          rpc_urls=[net.rpc_url, net.lag_rpc_url],
                          ws_urls=[net.ws_url, net.lag_ws_url]),
            node={"id": "acceptance", "timezone": "UTC"}, logging={"level": "warning"},
            intervals={"minutes": 1},
            meters={"mqtt": mqtt(*(mqtt_meter(f"m{i}", f"tele/{tag}-{i}/SENSOR",
                                              rated_power_w=150_000) for i in range(4)))},
            market={"epoch_minutes": 1, "poll_interval_s": 0.5, "settlement_retry_s": 2,
                    "users": [{"name": name, "keypair": keys["users"][i], "meters": [f"m{i}"],
                               "policy": policy,
                               ("min_price_per_kwh" if policy == "sell_surplus"
                                else "max_price_per_kwh"): price}
                              for i, (name, policy, price, _) in enumerate(USERS)]},
            reconciliation={"enabled": True, "at": "02:30"},
            upstream={"url": platform_url, "secret_file": str(secret_file), "batch_size": 20,
                      "retry_base_s": 0.2, "retry_max_s": 2.0, "poll_s": 0.2, "timeout_s": 2})
        fleet = MeterFleet.from_config(load_config(config), publish_every_s=5)
        for i, (*_, watts) in enumerate(USERS):
            fleet.meters[f"m{i}"].day = Steady(watts=watts, phase=1.7 * i)
        store = await Store.open(tmp_path / "node" / "gridnode.db")
        kills = 0
        faults: asyncio.Task[None] | None = None
        weathering: asyncio.Task[None] | None = None
        proc: asyncio.subprocess.Process | None = None
        try:
            users = [load_keypair(p) for p in keys["users"]]
            wallets = [str(u.pubkey()) for u in users]
            for i, u in enumerate(users):
                await register(store, u, [f"m{i}"])
            proc = await start(config, log)
            await asyncio.sleep(1.5)        # the market's first round has begun
            await fleet.start()
            # a meter's first interval opens at the first boundary it has readings around
            first = ((int(time.time()) + 8) // EPOCH_S + 1) * EPOCH_S
            await wait_for(lambda: all_finalized(store), 90, "users and meters registered")
            last = first + EPOCHS * EPOCH_S     # the end of the last interval the meters feed
            faults = asyncio.create_task(cycle_faults(net, windows))
            weathering = asyncio.create_task(platform_weather(weather, store, first))
            while time.time() < last + 8 or kills < MIN_KILLS:
                await asyncio.sleep(rng.uniform(1.5, 20.0))
                proc.send_signal(signal.SIGKILL)
                assert await proc.wait() == -signal.SIGKILL, log.read_text()[-3000:]
                kills += 1
                kill_times.append(time.time())
                proc = await start(config, log)
            await weathering        # long over (its end is two epochs before the last)
            assert weather.sim is not None
            platform = weather.sim
            faults.cancel()
            net.faults.update(NO_FAULTS)
            net.faults.reset_port(net.port)
            await fleet.stop()
            # the last interval's orders are cleared at the next epoch's end
            await asyncio.sleep(max(0.0, last + EPOCH_S + 3 - time.time()))
            chain = Chain(net.rpc_url)
            try:
                async def quiet() -> bool:
                    if await count(store, "SELECT count(*) AS n FROM operations WHERE status IN "
                                   f"({', '.join(repr(s) for s in UNFINISHED)})"):
                        return False
                    rows = await store.fetchall("SELECT status FROM settlements")
                    if any(r["status"] != "settled" for r in rows):
                        return False
                    open_orders = [o for o in await chain.orders(ids["trading"])
                                   if not o.placeholder and o.status in (ACTIVE, PARTIAL)]
                    if open_orders:
                        return False
                    if len(rows) != len(await chain.trades(ids["trading"])):
                        return False
                    finalized = await count(store, "SELECT count(*) AS n FROM operations WHERE "
                                            "tx_type = 'meter_reading' AND status = 'finalized'")
                    return (len(platform.items(type="interval.finalized")) == finalized
                            and len(platform.items(type="settlement.completed")) == len(rows))

                await wait_for(quiet, 200, "every epoch cleared, settled and delivered",
                               step_s=2.0)
                proc.send_signal(signal.SIGTERM)
                assert await proc.wait() == 0, log.read_text()[-3000:]
                proc = None
                figures = await judge(store, chain, platform, ids, mint, wallets, config,
                                      started=began)
                figures.update(await judge_weather(store, platform, weather, kill_times,
                                                   figures.pop("trade times")))
            finally:
                await chain.close()
        finally:
            if faults is not None:
                faults.cancel()
            if weathering is not None:
                weathering.cancel()
            if proc is not None:
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
            await fleet.stop()
            await store.close()
            await weather.down()
        dropped = len(net.ledger.dropped) if net.ledger is not None else 0
        failovers = sum(f"url={net.rpc_url}/ healthy=false" in line
                        for line in log.read_text().splitlines())
    lost = figures.pop("unknown outcomes")
    took = time.monotonic() - began
    print(f"\nmarket acceptance: {took:.0f} s, {figures['epochs']} epochs with trades, "
          f"{figures['trades']} trades ({figures['energy_wh']} Wh), {figures['orders']} orders, "
          f"{figures['readings']} readings, {kills} SIGKILLs, fault windows "
          f"{dict(windows)}, {dropped} transactions dropped by the localnet, {lost} outcomes "
          f"the node saw as unknown, {failovers} failovers from the primary RPC; balances (Wh) "
          f"{figures['balances']}; platform down {figures['outage_s']:.0f} s through "
          f"{figures['outage epochs']} epochs with trades, {figures['held intervals']} "
          f"intervals and {figures['held settlements']} settlements held back and delivered "
          f"once after it, {figures['storm requests']} requests in the {STORM_S} s 429 storm "
          f"(Retry-After {RETRY_AFTER_S} s, at most {figures['storm bound']} allowed), "
          f"{figures['resent']} items resent and deduped by the platform")
    assert kills >= MIN_KILLS
    assert figures["epochs"] >= EPOCHS, figures
    assert all(windows[name] >= 1 for name, _ in FAULTS), windows
    assert dropped > 0 and failovers > 0


async def judge(store: Store, chain: Chain, platform: PlatformSimulator, ids: dict[str, str],
                mint: str, wallets: list[str], config: Path, started: float) -> dict[str, Any]:
    """Every assertion on the settled run; returns the figures for the summary line."""
    trading = ids["trading"]
    meter_of = {f"m{i}": w for i, w in enumerate(wallets)}
    # -- readings on chain: one event per (meter, interval), the registry totals agree --------
    readings = [r for r in await chain.readings(ids["oracle"]) if r.meter_id in meter_of]
    per_interval = Counter((r.meter_id, r.timestamp) for r in readings)
    assert all(n == 1 for n in per_interval.values()), \
        [k for k, n in per_interval.items() if n > 1]
    nets: dict[str, list[int]] = {m: [] for m in meter_of}
    for r in readings:
        nets[r.meter_id].append(r.produced - r.consumed)
    registry = {m.meter_id: m for m in await chain.meters(ids["registry"])}
    minted: dict[str, int] = {}
    for meter, wallet in meter_of.items():
        got = registry[meter]
        produced = sum(r.produced for r in readings if r.meter_id == meter)
        consumed = sum(r.consumed for r in readings if r.meter_id == meter)
        assert (got.total_generation, got.total_consumption) == (produced, consumed), meter
        net = sum(max(0, n) for n in nets[meter])
        assert got.settled_net_generation == net, (meter, got, net)    # all of it minted
        minted[wallet] = net * WH
    # -- the orders and the test's own matching of each epoch's book -----------------------
    orders = [o for o in await chain.orders(trading)
              if not o.placeholder and o.owner in wallets]
    assert all(o.status in (COMPLETED, CANCELLED) for o in orders), \
        [o for o in orders if o.status not in (COMPLETED, CANCELLED)]
    for o in orders:    # each policy order is one interval's surplus (sell) or deficit (buy)
        meter = f"m{wallets.index(o.owner)}"
        want = o.amount if o.side == SELL else -o.amount
        assert want in nets[meter], (meter, o, sorted(nets[meter]))
    books: dict[int, list[Order]] = {}
    for o in orders:
        books.setdefault((o.created_at // EPOCH_S + 1) * EPOCH_S, []).append(o)
    expected = {(b, s, wh, price) for end, book in sorted(books.items())
                for b, s, wh, price in price_time_match(book, end)}
    trades = await chain.trades(trading)
    got = {(t.buy_order, t.sell_order, t.amount, t.price) for t in trades}
    assert got == expected, {"not matched on chain": expected - got,
                             "matched on chain, not by the test": got - expected}
    by_order = Counter[str]()
    for t in trades:
        by_order[t.buy_order] += t.amount
        by_order[t.sell_order] += t.amount
        assert (t.seller, t.buyer) == (next(o.owner for o in orders if o.address == t.sell_order),
                                       next(o.owner for o in orders if o.address == t.buy_order))
    for o in orders:
        assert o.filled == by_order[o.address], o
        assert (o.status == COMPLETED) == (o.filled == o.amount), o
    # -- settled exactly once on chain, one settlement row each ----------------------------
    markers = {m.trade_record: m for m in await chain.settlements(trading)}
    settle_sig: dict[str, str] = {}
    for t in trades:
        m = markers.get(t.address)
        assert m is not None, f"trade {t.address} not settled on chain"
        assert (m.seller, m.buyer, m.amount, m.token_amount) == \
            (t.seller, t.buyer, t.amount, t.amount * WH), (m, t)
        marker = pda(trading, b"settlement", bytes(Pubkey.from_string(t.address)))
        assert marker == m.address
        ok = [s["signature"] for s in await chain.signatures(marker) if s["err"] is None]
        assert len(ok) == 1, (t.address, ok)        # created once, so the GRID moved once
        settle_sig[t.address] = ok[0]
    assert set(markers) == {t.address for t in trades}
    rows = {r["trade_record"]: r for r in await store.fetchall(
        "SELECT trade_record, status, energy_wh, price_per_kwh, token_amount, signature, "
        "buyer, seller, (SELECT count(*) FROM settlements s2 WHERE s2.trade_record = "
        "s.trade_record) AS n FROM settlements s")}
    assert set(rows) == {t.address for t in trades}
    for t in trades:
        r = rows[t.address]
        assert (r["n"], r["status"], r["energy_wh"], r["price_per_kwh"], r["token_amount"],
                r["seller"], r["buyer"]) == \
            (1, "settled", t.amount, t.price, t.amount * WH, t.seller, t.buyer), (dict(r), t)
        assert r["signature"] in (settle_sig[t.address], None), (dict(r), settle_sig[t.address])
    # -- balances: minted - delivered + received, and nothing else anywhere ------------------
    expected_balance = dict(minted)
    for t in trades:
        expected_balance[t.seller] -= t.amount * WH
        expected_balance[t.buyer] += t.amount * WH
    balances = {w: await chain.token_amount(ata(w, mint)) for w in wallets}
    assert balances == expected_balance
    assert await chain.mint_supply(mint) == sum(minted.values())
    # -- reconciliation of each day the run touched: no discrepancy -----------------------
    days = sorted({datetime.datetime.fromtimestamp(t, datetime.UTC).date()
                   for t in (time.time() - (time.monotonic() - started), time.time())})
    for day in days:
        done = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gridnode", "reconcile", "-c", str(config), "--now",
            "--date", day.isoformat(), "--json", cwd=str(REPO),
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await done.communicate()
        assert done.returncode == 0, err.decode()
        report = json.loads(out)
        assert report["discrepancies"] == [], json.dumps(report, indent=1)
        print(f"\nreconciliation of {day}: {report['checks']}")
    # -- the platform: every interval and settlement once, each interval with its signature --
    by_reading = {(r.meter_id, r.timestamp): r.signature for r in readings}
    held = platform.items(type="interval.finalized")
    pairs = [(h["meter_id"], int(h["item"]["data"]["interval_end"])) for h in held]
    assert len(pairs) == len(set(pairs)) == len(by_reading), (len(pairs), len(by_reading))
    assert set(pairs) == set(by_reading), set(pairs) ^ set(by_reading)
    for h in held:
        data = h["item"]["data"]
        assert data["signature"] == by_reading[(h["meter_id"], int(data["interval_end"]))]
    settled_up = [h["item"]["data"]["trade_record"]
                  for h in platform.items(type="settlement.completed")]
    assert sorted(settled_up) == sorted(t.address for t in trades)
    assert not platform.items(type="settlement.defaulted")
    return {"trade times": [t.executed_at for t in trades],
            "epochs": len({(t.executed_at // EPOCH_S) for t in trades}),
            "trades": len(trades), "energy_wh": sum(t.amount for t in trades),
            "orders": len(orders), "readings": len(readings),
            "balances": [balances[w] // WH for w in wallets],
            "unknown outcomes": await count(store, "SELECT count(*) AS n FROM audit_log "
                                            "WHERE new_status = 'unknown'")}


async def judge_weather(store: Store, platform: PlatformSimulator, w: Weather,
                        kill_times: list[float], trade_times: list[int]) -> dict[str, Any]:
    """The platform's outage and 429 storm: what was held back arrived once after it, per
    meter in the node's order, and the storm was ridden out without a tight loop."""
    assert w.held_at_down is not None and w.node_at_up is not None
    down_s, up_s = w.down_ms / 1000, w.up_ms / 1000
    outage_epochs = {t // EPOCH_S for t in trade_times if down_s <= t <= up_s}
    assert len(outage_epochs) >= 2, (down_s, up_s, sorted(trade_times))
    held_back = w.node_at_up - w.held_at_down
    intervals = {k for k in held_back if k[0] == "interval"}
    settlements = {k for k in held_back if k[0] == "settlement"}
    assert len(intervals) >= 2 * 4 and len(settlements) >= 2, (intervals, settlements)
    received: dict[tuple[str, ...], list[int]] = {}
    for h in platform.items(type="interval.finalized"):
        k: tuple[str, ...] = ("interval", h["meter_id"],
                              str(int(h["item"]["data"]["interval_end"])))
        received.setdefault(k, []).append(h["received_at_ms"])
    for h in platform.items(type="settlement.completed"):
        received.setdefault(("settlement", h["item"]["data"]["trade_record"]), []).append(
            h["received_at_ms"])
    for k in held_back:     # each once, and only after the platform was back
        assert len(received.get(k, [])) == 1, (k, received.get(k))
        assert received[k][0] >= w.up_ms, (k, received[k], w.up_ms)
    # per meter, in the node's order: the order its finalized events were logged
    order = await store.fetchall(
        "SELECT e.meter_id AS meter, json_extract(o.payload, '$.interval_end') AS ends "
        "FROM events e JOIN operations o ON o.id = e.operation_id "
        "WHERE e.type = 'operation.status' AND json_extract(e.data, '$.new') = 'finalized' "
        "AND o.tx_type = 'meter_reading' ORDER BY e.id")
    pairs = [(h["meter_id"], int(h["item"]["data"]["interval_end"]))
             for h in platform.items(type="interval.finalized")]
    for meter in {m for m, _ in pairs}:
        node_order = [int(r["ends"]) for r in order if r["meter"] == meter]
        platform_order = [e for m, e in pairs if m == meter]
        assert platform_order == node_order, (meter, platform_order, node_order)
    # the 429 storm: a request per Retry-After at most, plus one per restart of the daemon
    # (a kill between a request and recording its answer sends it again at once)
    storm = [r for r in platform.requests() if w.up_ms <= r["at_ms"] <= w.storm_end_ms]
    too_many = [r for r in storm if r["status"] == 429]
    kills_in_storm = sum(w.up_ms / 1000 <= t <= w.storm_end_ms / 1000 for t in kill_times)
    bound = math.ceil(STORM_S / RETRY_AFTER_S) + 1 + kills_in_storm
    assert len(too_many) >= 2, storm        # the storm was met
    assert len(storm) <= bound, (len(storm), bound, storm)
    stats = w.totals()
    assert stats["bad_signature"] == 0, stats
    return {"outage_s": (w.up_ms - w.down_ms) / 1000, "outage epochs": len(outage_epochs),
            "held intervals": len(intervals), "held settlements": len(settlements),
            "storm requests": len(storm), "storm bound": bound,
            "resent": stats["replayed"] + stats["duplicates"]}
