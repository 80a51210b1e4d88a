"""Market benchmark: price-time matching speed, reading the open orders from a localnet, and what a
trade costs on chain.

    .venv/bin/python bench/bench_market.py [--sizes 100,1000] [--trades 3] [--users 4,20]
        [--epochs 2]

1. Matching (gridnode.market.matching.match, pure): open orders per second for books of each
   size (half bids, half asks, overlapping prices, random amounts and times).
2. Reading: the same number of Order accounts held by a localnet (written into its ledger, plus
   closed ones the status filter must skip), read with gridnode.chain.accounts.open_orders over
   HTTP (getProgramAccounts, memcmp on the discriminator and the status), then matched: one
   epoch's read + match time.
3. Cost per trade, from the localnet's own transactions (getTransaction meta
   computeUnitsConsumed and fee) of gridnode's pipeline: a sell and a buy order
   (order_creation), match_orders, settle_trade; batched transactions are divided among the
   operations they carry, and the CU of creating a buyer's GRID account on its first settlement
   (once per account) is shown on its own line. Rent locked in the accounts a trade creates is listed apart (it is
   a deposit, not a fee). grid_minting is shown too (it makes the GRID that is sold).
4. Epoch end -> all of its trades settled: gridnode's market subsystem holding the market
   authority (tests.market.harness: pipeline + market on one store, localnet over HTTP) with N
   users half selling, half buying by policy, readings given early in each 15 s epoch. Per
   epoch, from its end (Unix s): the market_clearing transaction landed (confirmed), every
   match_orders finalized, every settlement settled (its settle_trade finalized, seen by the
   settler). The node clears 2 s after the end (the chain's clock may trail).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any
from unittest import mock

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from solders.account import Account  # noqa: E402
from solders.pubkey import Pubkey  # noqa: E402

from gridnode.chain import accounts  # noqa: E402
from gridnode.chain.idl import ProgramIdl, load_idls  # noqa: E402
from gridnode.chain.instructions import ATA_PROGRAM, associated_token_address  # noqa: E402
from gridnode.chain.rpc import RpcPool  # noqa: E402
from gridnode.chain.txtypes import new_operation  # noqa: E402
from gridnode.chain.validation import (  # noqa: E402
    GridMintingPayload,
    MatchOrdersPayload,
    OrderCreationPayload,
    SettleTradePayload,
)
from gridnode.market.matching import BookOrder, match  # noqa: E402
from gridnode.outbox.pipeline import Pipeline  # noqa: E402
from gridnode.store import Store, operations  # noqa: E402
from simulators.chain.localnet import Localnet  # noqa: E402
from tests.e2e.harness import (  # noqa: E402
    add_readings,
    all_finalized,
    bootstrap_signers,
    chain_config,
    outbox_config,
    recent_intervals,
    register,
    register_users,
    running,
    wait_for,
)
from tests.market import harness as market_harness  # noqa: E402
from tests.market.harness import (  # noqa: E402
    Node,
    add_reading,
    market_node,
    wait_epoch_start,
)
from tests.market.harness import running as market_running  # noqa: E402
from tests.market.test_epoch_flow import POLICIES, READINGS  # noqa: E402
from tests.net import pick_free_port  # noqa: E402

ORDER_SPACE = 114
WH = 10**6


def book(n: int, seed: int = 1) -> tuple[list[BookOrder], list[BookOrder]]:
    rng = random.Random(seed)
    bids = [BookOrder(f"b{i:05d}", rng.randint(80, 130), rng.randint(10, 2000),
                      rng.randint(0, 900)) for i in range(n // 2)]
    asks = [BookOrder(f"a{i:05d}", rng.randint(70, 120), rng.randint(10, 2000),
                      rng.randint(0, 900)) for i in range(n - n // 2)]
    return bids, asks


def bench_matching(sizes: list[int]) -> None:
    print("1. matching (pure, price-time priority)")
    for n in sizes:
        bids, asks = book(n)
        reps = max(3, 20_000 // n)
        started = time.perf_counter()
        for _ in range(reps):
            ms = match(bids, asks)
        per = (time.perf_counter() - started) / reps
        print(f"   {n:>6} open orders: {len(ms):>4} matches, {per * 1000:8.3f} ms per epoch, "
              f"{n / per:>12,.0f} orders matched/s")


def order_account(trading: ProgramIdl, owner: Pubkey, side: str, amount: int, price: int,
                  created: int, status: str) -> bytes:
    data = trading.encode_account("Order", {
        "seller": owner if side == "Sell" else Pubkey.default(),
        "buyer": owner if side == "Buy" else Pubkey.default(),
        "amount": amount, "filled_amount": 0, "price_per_kwh": price, "order_type": side,
        "status": status, "created_at": created, "expires_at": created + 86_400})
    return data + bytes(ORDER_SPACE - len(data))


async def bench_reading(sizes: list[int], tmp: Path) -> None:
    print("2. open orders read from a localnet over HTTP (getProgramAccounts + memcmp), matched")
    idls = load_idls(REPO / "idl")
    trading = idls["trading"]
    rng = random.Random(2)
    async with Localnet(port=pick_free_port(), slot_ms=50, state_dir=tmp / "read") as net:
        pool = RpcPool([net.rpc_url], commitment="confirmed")
        held = 0
        now = int(time.time())
        try:
            for n in sorted(sizes):
                while held < n:
                    side = "Buy" if held % 2 else "Sell"
                    data = order_account(trading, Pubkey.new_unique(), side,
                                         rng.randint(10, 2000), rng.randint(70, 130),
                                         now - rng.randint(0, 900), "Active")
                    # one closed order per ten open ones: the status filter must skip them
                    closed = order_account(trading, Pubkey.new_unique(), side, 5, 100, now,
                                           "Completed")
                    for blob in (data, closed) if held % 10 == 0 else (data,):
                        net.ledger.set_account(Pubkey.new_unique(), Account(
                            10_000_000, blob, trading.program_id))
                    held += 1
                await net.advance(2)
                times, read = [], []
                for _ in range(5):
                    t0 = time.perf_counter()
                    orders = await accounts.open_orders(pool, idls)
                    t1 = time.perf_counter()
                    ms = match([o for o in orders if o.side == "buy"],
                               [o for o in orders if o.side == "sell"])
                    times.append(time.perf_counter() - t0)
                    read.append(t1 - t0)
                assert len(orders) == n, (len(orders), n)
                print(f"   {n:>6} open orders: read {statistics.median(read) * 1000:8.1f} ms, "
                      f"read + match {statistics.median(times) * 1000:8.1f} ms "
                      f"({len(ms)} matches)")
        finally:
            await pool.close()


def ata_units(logs: list[str]) -> tuple[int, int]:
    """(CU, count) of the associated token account creations in a transaction's logs."""
    prefix = f"Program {ATA_PROGRAM} consumed "
    used = [int(line[len(prefix):].split()[0]) for line in logs if line.startswith(prefix)]
    return sum(used), len(used)


async def tx_costs(store: Store, pool: RpcPool) -> dict[str, tuple[float, float, int]]:
    """tx type -> (CU per operation, fee lamports per operation, operations) over every
    finalized transaction; the creation of GRID accounts on the way is split off under
    "(GRID account creation)"."""
    rows = await store.fetchall(
        "SELECT a.signature, o.tx_type, (SELECT count(*) FROM tx_attempt_operations x "
        "WHERE x.attempt_id = a.id) AS n FROM tx_attempts a "
        "JOIN tx_attempt_operations ao ON ao.attempt_id = a.id "
        "JOIN operations o ON o.id = ao.operation_id WHERE a.observed_status = 'finalized'")
    cu: dict[str, float] = defaultdict(float)
    fee: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    seen: dict[str, Any] = {}
    for r in rows:
        sig = r["signature"]
        if sig not in seen:
            seen[sig] = await pool.raw("getTransaction", [sig, {
                "encoding": "base64", "commitment": "finalized",
                "maxSupportedTransactionVersion": 0}])
        meta = seen[sig]["meta"]
        ata_cu, created = ata_units(meta.get("logMessages") or [])
        if created and "ata" not in seen[sig]:
            seen[sig]["ata"] = True
            cu["(GRID account creation)"] += ata_cu
            count["(GRID account creation)"] += created
        cu[r["tx_type"]] += (meta["computeUnitsConsumed"] - ata_cu) / r["n"]
        fee[r["tx_type"]] += meta["fee"] / r["n"]
        count[r["tx_type"]] += 1
    return {t: (cu[t] / count[t], fee[t] / count[t], count[t]) for t in count}


async def bench_trade_cost(trades: int, tmp: Path) -> None:
    print(f"3. cost per trade on the localnet ({trades} trades through gridnode's pipeline)")
    idls = load_idls(REPO / "idl")
    mint = Pubkey.find_program_address([b"mint"], idls["energy_token"].program_id)[0]
    async with Localnet(port=pick_free_port(), slot_ms=25, state_dir=tmp / "cost",
                        users=1 + trades) as net:
        signers = bootstrap_signers(net.bootstrap)
        seller, *buyers = list(signers.users.values())
        s = str(seller.pubkey())
        seller_ta = associated_token_address(seller.pubkey(), mint)
        store = await Store.open(tmp / "cost.sqlite")
        pool = RpcPool([net.rpc_url], commitment="confirmed")
        pipeline = Pipeline(store, chain_config([net.rpc_url], registry_readings=True),
                            outbox_config(), signers)
        try:
            async with running(pipeline):
                await register(store, seller, ["pv-bench"])
                await register_users(store, [str(b.pubkey()) for b in buyers], "consumer")
                ends = recent_intervals(1)
                await add_readings(store, ["pv-bench"], ends)
                await wait_for(lambda: all_finalized(store), 60, "set-up")
                async with store.write() as tx:
                    await operations.add(tx, new_operation(GridMintingPayload(
                        meter_id="pv-bench", owner=s, token_account=str(seller_ta),
                        interval_end=ends[0])))
                await wait_for(lambda: all_finalized(store), 60, "mint")
                for i in range(trades):     # one at a time: no order PDA race in the figures
                    b = str(buyers[i].pubkey())
                    for who, side, key in ((s, "sell", f"sell:{i}"), (b, "buy", f"buy:{i}")):
                        async with store.write() as tx:
                            await operations.add(tx, new_operation(OrderCreationPayload(
                                owner=who, side=side, energy_amount=100 + i,
                                price_per_kwh=100 + (10 if side == "buy" else 0)), key))
                        await wait_for(lambda: all_finalized(store), 60, "order")
                orders = await accounts.open_orders(pool, idls)
                ms = match([o for o in orders if o.side == "buy"],
                           [o for o in orders if o.side == "sell"])
                async with store.write() as tx:
                    for m in ms:
                        await operations.add(tx, new_operation(MatchOrdersPayload(
                            buy_order=m.buy_order, sell_order=m.sell_order, amount=m.amount_wh,
                            epoch=ends[0])))
                await wait_for(lambda: all_finalized(store), 60, "matches")
                records = await accounts.trade_records(pool, idls, party=s)
                async with store.write() as tx:
                    for t in records:
                        await operations.add(tx, new_operation(SettleTradePayload(
                            trade_record=t.address, seller=s, buyer=t.buyer,
                            seller_token_account=str(seller_ta),
                            buyer_token_account=str(associated_token_address(
                                Pubkey.from_string(t.buyer), mint)), signer=s)))
                await wait_for(lambda: all_finalized(store), 60, "settlements")
            costs = await tx_costs(store, pool)
            rent = {name: await pool.raw("getMinimumBalanceForRentExemption", [size])
                    for name, size in (("Order", ORDER_SPACE), ("TradeRecord", 176),
                                       ("TradeSettlement", 160), ("token account", 165))}
        finally:
            await pool.close()
            await store.close()
    print(f"   {'tx type':<24} {'CU/op':>8} {'fee lamports/op':>16} {'ops':>4}")
    for t in ("grid_minting", "order_creation", "match_orders", "settle_trade",
              "(GRID account creation)"):
        if t in costs:
            c, f, n = costs[t]
            print(f"   {t:<24} {c:>8,.0f} {f:>16,.0f} {n:>4}")
    legs = [("order_creation", 2), ("match_orders", 1), ("settle_trade", 1)]
    if all(t in costs for t, _ in legs):
        cu = sum(costs[t][0] * k for t, k in legs)
        fee = sum(costs[t][1] * k for t, k in legs)
        print(f"   per trade (2 orders + match + settle): {cu:,.0f} CU, {fee:,.0f} lamports in "
              f"fees")
        deposit = 2 * rent["Order"] + rent["TradeRecord"] + rent["TradeSettlement"]
        print(f"   rent locked per trade (2 orders, trade record, settlement marker): "
              f"{deposit:,} lamports (+{rent['token account']:,} once per new buyer account)")


@contextlib.asynccontextmanager
async def node_with_users(tmp: Path, policies: list[dict[str, Any]], epoch_s: int) -> Any:
    """tests.market.harness.market_node with one funded wallet per policy (it asks its localnet
    for four): the Localnet it starts is given that many users."""
    def localnet(**kw: Any) -> Localnet:
        return Localnet(**{**kw, "users": len(policies)})
    with mock.patch.object(market_harness, "Localnet", localnet):
        async with market_node(tmp, policies, epoch_s=epoch_s) as node:
            yield node


async def epoch_latency(node: Node, epoch: int) -> tuple[int, float, float, float]:
    """(trades, s from the epoch's end to: clearing landed, matches finalized, all settled)."""
    clearing = await node.store.fetchone(
        "SELECT COALESCE(confirmed_at_ms, finalized_at_ms) AS t FROM operations "
        "WHERE tx_type = 'market_clearing' AND json_extract(payload, '$.epoch') = ?", (epoch,))
    matched = await node.store.fetchone(
        "SELECT max(finalized_at_ms) AS t FROM operations WHERE tx_type = 'match_orders' "
        "AND json_extract(payload, '$.epoch') = ?", (epoch,))
    settled = await node.store.fetchone(
        "SELECT count(*) AS n, max(settled_at_ms) AS t FROM settlements WHERE epoch = ?",
        (epoch,))
    assert clearing is not None and matched is not None and settled is not None
    return (int(settled["n"]), clearing["t"] / 1000 - epoch, matched["t"] / 1000 - epoch,
            settled["t"] / 1000 - epoch)


async def bench_settle_latency(user_counts: list[int], epochs: int, tmp: Path,
                               epoch_s: int = 15) -> None:
    print(f"4. epoch end -> trades settled (market subsystem with the authority, localnet over "
          f"HTTP, {epoch_s} s epochs, clearing 2 s after the end)")
    print(f"   {'users':>5} {'epochs':>6} {'trades/epoch':>12}   {'clearing landed':>17} "
          f"{'matches finalized':>19} {'all settled':>15}   (s after the end, p50 / max)")
    for n in user_counts:
        policies = [POLICIES[i % len(POLICIES)] for i in range(n)]
        readings = [READINGS[i % len(READINGS)] for i in range(n)]
        got: list[tuple[int, float, float, float]] = []
        async with node_with_users(tmp / f"settle{n}", policies, epoch_s) as node:
            async with market_running(node.market()):
                for _ in range(epochs):
                    await wait_epoch_start(node.epoch_s)
                    end = int(time.time())
                    for i, (p, c) in enumerate(readings):
                        await add_reading(node.store, f"m{i}", end, p, c)

                    async def placed(end: int = end, n: int = n) -> bool:
                        row = await node.store.fetchone(
                            "SELECT count(*) AS n FROM market_orders WHERE interval_end = ?",
                            (end,))
                        return int(row["n"]) == n
                    await wait_for(placed, 30, f"{n} policy orders")
                    row = await node.store.fetchone(
                        "SELECT min(epoch) AS lo, max(epoch) AS hi FROM market_orders "
                        "WHERE interval_end = ?", (end,))
                    assert row["lo"] == row["hi"], "orders placed across an epoch boundary"
                    epoch = int(row["hi"])

                    async def settled(epoch: int = epoch) -> bool:
                        cleared = await node.store.fetchone(
                            "SELECT matches FROM market_epochs WHERE epoch = ?", (epoch,))
                        if cleared is None:
                            return False
                        done = await node.store.fetchone(
                            "SELECT count(*) AS n FROM settlements WHERE epoch = ? "
                            "AND status = 'settled'", (epoch,))
                        return int(done["n"]) == int(cleared["matches"]) > 0
                    await wait_for(settled, 90, f"epoch {epoch} settled")
                    got.append(await epoch_latency(node, epoch))
        lo, hi = min(g[0] for g in got), max(g[0] for g in got)
        trades = str(lo) if lo == hi else f"{lo}-{hi}"
        cols = [" / ".join(f"{f(g[k] for g in got):5.1f}" for f in (statistics.median, max))
                for k in (1, 2, 3)]
        print(f"   {n:>5} {len(got):>6} {trades:>12}   {cols[0]:>17} "
              f"{cols[1]:>19} {cols[2]:>15}")


async def main(args: argparse.Namespace) -> None:
    sizes = [int(x) for x in args.sizes.split(",")]
    started = time.monotonic()
    bench_matching(sizes + [10_000])
    with tempfile.TemporaryDirectory() as tmp:
        await bench_reading(sizes, Path(tmp))
        await bench_trade_cost(args.trades, Path(tmp))
        await bench_settle_latency([int(x) for x in args.users.split(",")], args.epochs,
                                   Path(tmp))
    print(f"(ran {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000")
    parser.add_argument("--trades", type=int, default=3)
    parser.add_argument("--users", default="4,20", help="market users per run of part 4")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run of part 4")
    asyncio.run(main(parser.parse_args()))
