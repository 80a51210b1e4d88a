"""Fixtures: a real localnet on a free port (manual slots unless a test asks for a clock) and
solana-py clients talking to it over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Processed
from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from simulators.chain.localnet import Localnet
from tests.net import pick_free_port


@pytest.fixture
async def net(tmp_path: Any) -> AsyncIterator[Localnet]:
    async with Localnet(port=pick_free_port(), manual=True, state_dir=tmp_path / "state",
                        lag_port=pick_free_port()) as localnet:
        yield localnet


@pytest.fixture
async def client(net: Localnet) -> AsyncIterator[AsyncClient]:
    c = AsyncClient(net.rpc_url, commitment=Processed)
    yield c
    await c.close()


async def rpc(url: str, method: str, params: list[Any] | None = None) -> dict[str, Any]:
    """One raw JSON-RPC call (for what solana-py 0.36 has no method for, and for error shapes)."""
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}
    async with aiohttp.ClientSession() as s, s.post(url, json=body) as r:
        return await r.json()


def user(net: Localnet, i: int = 0) -> Keypair:
    return net.identities.users[i]


def signed(payer: Keypair, ixs: list[Instruction], blockhash: Hash | str,
           signers: list[Keypair] | None = None) -> VersionedTransaction:
    if isinstance(blockhash, str):
        blockhash = Hash.from_string(blockhash)
    msg = Message.new_with_blockhash(ixs, payer.pubkey(), blockhash)
    return VersionedTransaction(msg, [payer, *(signers or [])])


def transfer_ix(src: Keypair, dest: Pubkey, lamports: int) -> Instruction:
    return transfer(TransferParams(from_pubkey=src.pubkey(), to_pubkey=dest, lamports=lamports))


async def latest(client: AsyncClient) -> Any:
    return (await client.get_latest_blockhash(Processed)).value
