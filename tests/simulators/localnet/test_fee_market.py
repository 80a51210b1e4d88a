"""Block capacity, priority ordering, the minimum priority fee, maxRetries, base58 sends,
simulation options and v0 transactions."""

from __future__ import annotations

import base64

from solana.rpc.commitment import Confirmed, Processed
from solana.rpc.types import TxOpts
from solders.address_lookup_table_account import AddressLookupTableAccount
from solders.compute_budget import set_compute_unit_limit, set_compute_unit_price
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from gridnode.chain.idl import load_idls
from simulators.chain.localnet.encoding import b58encode
from simulators.chain.svm import IDL_DIR, loaded_programs
from tests.simulators.localnet.conftest import latest, rpc, signed, transfer_ix, user

OPTS = TxOpts(skip_confirmation=True, preflight_commitment=Processed)


def priced(net, i: int, price: int, bh, limit: int = 1_000):
    payer = user(net, i % 3)
    return signed(payer, [set_compute_unit_limit(limit), set_compute_unit_price(price),
                          transfer_ix(payer, Keypair().pubkey(), 1_000 + i)], bh)


async def statuses(client, txs):
    return [s is not None for s in
            (await client.get_signature_statuses([t.signatures[0] for t in txs])).value]


async def test_blocks_fill_by_priority_within_capacity(net, client):
    net.fee_market.block_cu_limit = 2_500  # two 1,000-CU transactions per block
    bh = (await latest(client)).blockhash
    txs = [priced(net, i, price, bh) for i, price in enumerate([10, 500, 20, 900])]
    for tx in txs:
        await client.send_transaction(tx, opts=OPTS)
    await net.advance(1)
    assert await statuses(client, txs) == [False, True, False, True]
    first = net.slot
    await net.advance(1)
    assert await statuses(client, txs) == [True, True, True, True]
    fees = {f["slot"]: f["prioritizationFee"]
            for f in (await rpc(net.rpc_url, "getRecentPrioritizationFees"))["result"]}
    assert fees[first] == 500 and fees[first + 1] == 10


async def test_minimum_priority_fee_and_max_retries(net, client):
    net.fee_market.min_priority_fee = 1_000
    bh = (await latest(client)).blockhash
    cheap, paying = priced(net, 0, 999, bh), priced(net, 1, 1_000, bh)
    body = [base64.b64encode(bytes(cheap)).decode(), {"encoding": "base64",
                                                      "preflightCommitment": "processed",
                                                      "maxRetries": 2}]
    assert "result" in await rpc(net.rpc_url, "sendTransaction", body)
    await client.send_transaction(paying, opts=OPTS)
    await net.advance(1)
    assert await statuses(client, [cheap, paying]) == [False, True]
    assert net.ledger.is_pending(str(cheap.signatures[0]))
    await net.advance(2)
    assert not net.ledger.is_pending(str(cheap.signatures[0]))  # retries used up: dropped
    await net.advance(1)
    assert await statuses(client, [cheap]) == [False]
    fees = (await rpc(net.rpc_url, "getRecentPrioritizationFees"))["result"]
    assert fees[-1]["prioritizationFee"] == 1_000  # an empty block reports the minimum


async def test_base58_send_and_skip_preflight(net, client):
    bh = (await latest(client)).blockhash
    tx = priced(net, 0, 0, bh)
    # base58 is the default encoding; preflight defaults to finalized, where a blockhash taken
    # at processed does not exist yet
    early = await rpc(net.rpc_url, "sendTransaction", [b58encode(bytes(tx))])
    assert early["error"]["message"] == "Transaction simulation failed: Blockhash not found"
    reply = await rpc(net.rpc_url, "sendTransaction", [b58encode(bytes(tx)),
                                                       {"preflightCommitment": "processed"}])
    assert reply["result"] == str(tx.signatures[0])
    bad = await rpc(net.rpc_url, "sendTransaction", ["not base58!"])
    assert bad["error"]["code"] == -32602
    await net.advance(1)
    assert await statuses(client, [tx]) == [True]


async def test_simulate_options(net, client):
    payer = user(net)
    stale = (await latest(client)).blockhash
    await net.advance(200)
    dest = Keypair().pubkey()
    tx = signed(payer, [transfer_ix(payer, dest, 5_000_000)], stale)
    plain = await rpc(net.rpc_url, "simulateTransaction", [
        base64.b64encode(bytes(tx)).decode(), {"encoding": "base64",
                                               "commitment": "processed"}])
    assert plain["result"]["value"]["err"] == "BlockhashNotFound"
    replaced = await rpc(net.rpc_url, "simulateTransaction", [
        base64.b64encode(bytes(tx)).decode(),
        {"encoding": "base64", "commitment": "processed", "replaceRecentBlockhash": True,
         "accounts": {"addresses": [str(dest)], "encoding": "base64"}}])
    value = replaced["result"]["value"]
    assert value["err"] is None and value["unitsConsumed"] > 0
    assert value["replacementBlockhash"]["blockhash"] == net.ledger.blocks[net.slot].blockhash
    assert value["accounts"][0]["lamports"] == 5_000_000
    both = await rpc(net.rpc_url, "simulateTransaction", [
        base64.b64encode(bytes(tx)).decode(),
        {"encoding": "base64", "sigVerify": True, "replaceRecentBlockhash": True}])
    assert both["error"]["code"] == -32602


async def test_simulate_return_data_from_a_program(net, client):
    if "governance" not in loaded_programs():
        import pytest
        pytest.skip("governance.so is not built")
    gov = load_idls(IDL_DIR)["governance"]
    ix = gov.instruction("get_governance_stats",
                         accounts={"poa_config": Pubkey.from_string(
                             net.bootstrap["accounts"]["poa_config"])})
    tx = signed(user(net), [ix], (await latest(client)).blockhash)
    sim = (await client.simulate_transaction(tx, commitment=Processed)).value
    assert sim.err is None and sim.return_data is not None
    assert sim.return_data.program_id == gov.program_id and len(sim.return_data.data) > 0


async def test_v0_transactions_need_max_supported_version(net, client):
    payer = user(net)
    bh = (await latest(client)).blockhash
    msg = MessageV0.try_compile(payer.pubkey(), [transfer_ix(payer, Keypair().pubkey(), 9)],
                                list[AddressLookupTableAccount](), bh)
    tx = VersionedTransaction(msg, [payer])
    sig = (await client.send_transaction(tx, opts=OPTS)).value
    await net.advance(2)
    refused = await rpc(net.rpc_url, "getTransaction", [str(sig), {"commitment": "confirmed"}])
    assert refused["error"]["code"] == -32015
    got = (await client.get_transaction(sig, commitment=Confirmed,
                                        max_supported_transaction_version=0)).value
    assert got.transaction.version == 0
    parsed = (await client.get_transaction(sig, encoding="jsonParsed", commitment=Confirmed,
                                           max_supported_transaction_version=0)).value
    keys = parsed.transaction.transaction.message.account_keys
    assert keys[0].pubkey == payer.pubkey() and keys[0].signer and keys[0].writable
