"""Every other tx type through the same pipeline, signed with the key the table names:
market_clearing (gateway), token_minting and erc_issuance/erc_validation (the programs'
authority, held by this node), token_transfer (a prosumer wallet), and meter readings also
recorded in the registry's meter totals (registry_readings)."""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path

import httpx
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from gridnode.chain.idl import load_idls
from gridnode.chain.instructions import SYSTEM_PROGRAM, TOKEN_PROGRAM
from gridnode.chain.txtypes import new_operation
from gridnode.chain.validation import (
    ErcIssuancePayload,
    ErcValidationPayload,
    MarketClearingPayload,
    TokenMintingPayload,
    TokenTransferPayload,
)
from gridnode.outbox.pipeline import Pipeline
from gridnode.store import Store, operations
from simulators.chain.localnet import Localnet
from tests.e2e.harness import (
    REPO,
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

ATA_PROGRAM = Pubkey.from_string("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL")


def ata(owner: Pubkey, mint: Pubkey) -> Pubkey:
    return Pubkey.find_program_address([bytes(owner), bytes(TOKEN_PROGRAM), bytes(mint)],
                                       ATA_PROGRAM)[0]


async def rpc(url: str, method: str, params: list) -> dict:
    async with httpx.AsyncClient(timeout=5) as client:
        body = (await client.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method,
                                             "params": params})).json()
    assert "error" not in body, body
    return body["result"]


async def create_token_accounts(url: str, payer: Keypair, owners: list[Pubkey],
                                mint: Pubkey) -> None:
    """Associated token accounts for the energy mint (test setup, not a gridnode tx type)."""
    ixs = [Instruction(ATA_PROGRAM, bytes([1]), [
        AccountMeta(payer.pubkey(), True, True), AccountMeta(ata(o, mint), False, True),
        AccountMeta(o, False, False), AccountMeta(mint, False, False),
        AccountMeta(SYSTEM_PROGRAM, False, False), AccountMeta(TOKEN_PROGRAM, False, False)])
        for o in owners]
    bh = (await rpc(url, "getLatestBlockhash", [{"commitment": "confirmed"}]))["value"]["blockhash"]
    from solders.hash import Hash
    txn = VersionedTransaction(Message.new_with_blockhash(ixs, payer.pubkey(), Hash.from_string(bh)),
                               [payer])
    await rpc(url, "sendTransaction", [base64.b64encode(bytes(txn)).decode(),
                                       {"encoding": "base64", "preflightCommitment": "confirmed"}])

    async def exists() -> bool:
        res = await rpc(url, "getMultipleAccounts", [[str(ata(o, mint)) for o in owners],
                                                     {"encoding": "base64",
                                                      "commitment": "confirmed"}])
        return all(v is not None for v in res["value"])

    await wait_for(exists, 20, "token accounts created")


async def token_balance(url: str, account: Pubkey) -> int:
    res = await rpc(url, "getAccountInfo", [str(account), {"encoding": "base64",
                                                           "commitment": "finalized"}])
    return int(struct.unpack_from("<Q", base64.b64decode(res["value"]["data"][0]), 64)[0])


async def test_every_tx_type_lands(tmp_path: Path) -> None:
    idls = load_idls(REPO / "idl")
    mint = Pubkey.find_program_address([b"mint"], idls["energy_token"].program_id)[0]
    async with Localnet(port=pick_free_port(), slot_ms=25, state_dir=tmp_path / "chain") as net:
        signers = bootstrap_signers(net.bootstrap)
        alice, bob = list(signers.users.values())[:2]
        store = await Store.open(tmp_path / "node.sqlite")
        pipeline = Pipeline(store, chain_config([net.rpc_url], registry_readings=True),
                            outbox_config(), signers)
        await create_token_accounts(net.rpc_url, alice, [alice.pubkey(), bob.pubkey()], mint)
        intervals = recent_intervals(2)
        async with running(pipeline):
            await register(store, alice, ["pv-1"])
            await add_readings(store, ["pv-1"], intervals)      # 1000 + 1001 Wh produced
            async with store.write() as tx:
                await operations.add(tx, new_operation(MarketClearingPayload(epoch=intervals[-1])))
                await operations.add(tx, new_operation(TokenMintingPayload(
                    token_account=str(ata(alice.pubkey(), mint)), amount=5_000), "mint:alice:1"))
            await wait_for(lambda: all_finalized(store), 20, "registration, readings, mint")
            async with store.write() as tx:
                await operations.add(tx, new_operation(TokenTransferPayload(
                    owner=str(alice.pubkey()), from_token_account=str(ata(alice.pubkey(), mint)),
                    to_token_account=str(ata(bob.pubkey(), mint)), amount=1_200),
                    "transfer:alice:bob:1"))
                await operations.add(tx, new_operation(ErcIssuancePayload(
                    certificate_id="erc-pv-1-0001", energy_amount=1_500,
                    renewable_source="solar", validation_data="meter pv-1", meter_id="pv-1"),
                    "erc:erc-pv-1-0001"))
            await wait_for(lambda: all_finalized(store), 60, "transfer and certificate")
            async with store.write() as tx:
                await operations.add(tx, new_operation(
                    ErcValidationPayload(certificate_id="erc-pv-1-0001")))
                # more than the meter generated: refused by the program, never lost silently
                await operations.add(tx, new_operation(ErcIssuancePayload(
                    certificate_id="erc-pv-1-0002", energy_amount=900_000,
                    renewable_source="solar", validation_data="too much", meter_id="pv-1"),
                    "erc:erc-pv-1-0002"))

            async def settled() -> bool:
                rows = await store.fetchall("SELECT status FROM operations")
                return all(r["status"] in ("finalized", "parked", "failed") for r in rows)

            await wait_for(settled, 60, "validation done, oversized certificate refused")
        names = [r["name"] for r in await store.fetchall("SELECT name FROM chain_events ORDER BY id")]
        for expected in ("UserRegistered", "MeterRegistered", "MeterReadingSubmitted",
                         "MeterReadingUpdated", "MarketClearingTriggered", "TokensMintedDirect",
                         "ErcIssued", "ErcValidatedForTrading"):
            assert expected in names, (expected, names)
        assert names.count("MeterReadingUpdated") == 2
        assert await token_balance(net.rpc_url, ata(alice.pubkey(), mint)) == 3_800
        assert await token_balance(net.rpc_url, ata(bob.pubkey(), mint)) == 1_200
        refused = await store.fetchone(
            "SELECT status, last_error FROM operations WHERE idempotency_key = 'erc:erc-pv-1-0002'")
        assert refused["status"] in ("parked", "failed")
        assert "InsufficientUnclaimedGeneration" in refused["last_error"]
        issued = json.loads((await store.fetchone(
            "SELECT data FROM chain_events WHERE name = 'ErcIssued'"))["data"])
        assert issued["energy_amount"] == 1_500
        await store.close()
