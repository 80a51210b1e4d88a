"""A market on the localnet: the pipeline with four user wallets (registered, one meter each) and
the market subsystem on the same store, with a short epoch. Everything real: the localnet serves
JSON-RPC with the SBF programs, the store is SQLite on disk."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from gridnode.chain import accounts
from gridnode.chain.signers import Signers
from gridnode.config.market import MarketConfig
from gridnode.market.service import MarketSubsystem
from gridnode.market.users import ATA_PROGRAM, TOKEN_PROGRAM, User, Users, grid_mint, token_account
from gridnode.outbox.pipeline import Pipeline
from gridnode.store import Store
from simulators.chain.localnet import Localnet
from tests.e2e.harness import (
    all_finalized,
    bootstrap_signers,
    chain_config,
    outbox_config,
    register,
    wait_for,
)
from tests.net import pick_free_port

SYSTEM_PROGRAM = Pubkey.from_string("11111111111111111111111111111111")
WH = 10**6        # GRID base units per Wh
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Node:
    net: Localnet
    store: Store
    pipeline: Pipeline
    signers: Signers
    keys: list[Keypair]          # the four user wallets
    users: Users
    config: MarketConfig
    epoch_s: int

    def market(self, certifies: bool = False) -> MarketSubsystem:
        return MarketSubsystem(self.store, self.config, self.pipeline, self.users, clears=True,
                               minting=True, certifies=certifies, epoch_s=self.epoch_s)

    def token_account(self, user: int) -> str:
        return token_account(self.keys[user].pubkey(), grid_mint(self.pipeline.idls))

    async def balances(self) -> list[int]:
        got = await accounts.token_balances(self.pipeline.pool,
                                            [self.token_account(i) for i in range(4)])
        return [got[self.token_account(i)] for i in range(4)]

    async def open_orders(self) -> list[accounts.OrderAccount]:
        return await accounts.open_orders(self.pipeline.pool, self.pipeline.idls)

    async def fee_bps(self) -> int:
        m = await accounts.market(self.pipeline.pool, self.pipeline.idls)
        assert m is not None
        return m.market_fee_bps


async def add_reading(store: Store, meter: str, end: int, produced: int, consumed: int) -> None:
    async with store.write() as tx:
        await tx.add_operation("meter_reading", {
            "meter_id": meter, "interval_start": end - 60, "interval_end": end,
            "energy_produced_wh": produced, "energy_consumed_wh": consumed,
            "backfilled": False}, f"meter_reading:{meter}:{end}")


def users_of(keys: list[Keypair], policies: list[dict[str, Any]]) -> Users:
    return Users([User(f"u{i}", str(k.pubkey()), True, (f"m{i}",), p["policy"],
                       p.get("min_price_per_kwh"), p.get("max_price_per_kwh"))
                  for i, (k, p) in enumerate(zip(keys, policies, strict=True))])


@contextlib.asynccontextmanager
async def market_node(tmp_path: Path, policies: list[dict[str, Any]], epoch_s: int = 15,
                      **market: Any) -> AsyncIterator[Node]:
    """A localnet, a running pipeline with the users and meters registered, and the market's
    configuration (the market subsystem itself is started by the test: it restarts it)."""
    async with Localnet(port=pick_free_port(), slot_ms=25, users=4,
                        state_dir=tmp_path / "chain") as net:
        signers = bootstrap_signers(net.bootstrap)
        keys = list(signers.users.values())
        store = await Store.open(tmp_path / "node.sqlite")
        pipeline = Pipeline(store, chain_config([net.rpc_url], [net.ws_url],
                                                registry_readings=True),
                            outbox_config(), signers)
        task = asyncio.create_task(pipeline.run())
        try:
            for i, k in enumerate(keys):
                await register(store, k, [f"m{i}"])
            await wait_for(lambda: all_finalized(store), 60, "users and meters registered")
            cfg = MarketConfig(epoch_minutes=1, poll_interval_s=0.3, **market)
            yield Node(net, store, pipeline, signers, keys, users_of(keys, policies), cfg,
                       epoch_s)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await store.close()


@contextlib.asynccontextmanager
async def running(sub: MarketSubsystem) -> AsyncIterator[MarketSubsystem]:
    task = asyncio.create_task(sub.run())
    try:
        yield sub
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def wait_epoch_start(epoch_s: int, margin_s: float = 4.0) -> None:
    """Sleep until early in an epoch, so what follows lands before its end."""
    now = time.time()
    into = now % epoch_s
    if into > 1.0:
        await asyncio.sleep(epoch_s - into + 0.5)


async def rpc(url: str, method: str, params: list[Any]) -> Any:
    async with httpx.AsyncClient(timeout=5) as client:
        body = (await client.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method,
                                             "params": params})).json()
    assert "error" not in body, body
    return body["result"]


async def send_raw(url: str, payer: Keypair, ixs: list[Instruction]) -> None:
    """A transaction signed outside gridnode (behind the node's back), waited for."""
    bh = (await rpc(url, "getLatestBlockhash", [{"commitment": "confirmed"}]))["value"]
    txn = VersionedTransaction(Message.new_with_blockhash(
        ixs, payer.pubkey(), Hash.from_string(bh["blockhash"])), [payer])
    sig = await rpc(url, "sendTransaction", [base64.b64encode(bytes(txn)).decode(),
                                             {"encoding": "base64",
                                              "preflightCommitment": "confirmed"}])

    async def landed() -> bool:
        st = (await rpc(url, "getSignatureStatuses", [[sig]]))["value"][0]
        return st is not None and st.get("confirmationStatus") in ("confirmed", "finalized")

    await wait_for(landed, 20, "raw transaction landed")


async def transfer_away(node: Node, user: int, amount: int) -> Pubkey:
    """The user moves `amount` GRID base units out of its account, to a fresh wallet."""
    mint = grid_mint(node.pipeline.idls)
    thief = Keypair().pubkey()
    dest = Pubkey.from_string(token_account(thief, mint))
    owner = node.keys[user]
    create = Instruction(ATA_PROGRAM, bytes([1]), [
        AccountMeta(owner.pubkey(), True, True), AccountMeta(dest, False, True),
        AccountMeta(thief, False, False), AccountMeta(mint, False, False),
        AccountMeta(SYSTEM_PROGRAM, False, False), AccountMeta(TOKEN_PROGRAM, False, False)])
    move = Instruction(TOKEN_PROGRAM, bytes([3]) + amount.to_bytes(8, "little"), [
        AccountMeta(Pubkey.from_string(node.token_account(user)), False, True),
        AccountMeta(dest, False, True), AccountMeta(owner.pubkey(), True, False)])
    await send_raw(node.net.rpc_url, owner, [create, move])
    return dest
