"""solana-py's AsyncClient drives every RPC method of the localnet over HTTP."""

from __future__ import annotations

import base64

import aiohttp
from solana.rpc.commitment import Confirmed, Finalized, Processed
from solana.rpc.core import RPCException
from solana.rpc.types import DataSliceOpts, MemcmpOpts, TokenAccountOpts, TxOpts
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.system_program import CreateAccountParams, create_account
from spl.token.constants import TOKEN_PROGRAM_ID
from spl.token.instructions import (
    InitializeAccountParams,
    InitializeMintParams,
    MintToParams,
    initialize_account,
    initialize_mint,
    mint_to,
)

from simulators.chain.localnet.ledger import MAX_PROCESSING_AGE, SIMULATION_MAX_AGE
from tests.simulators.localnet.conftest import latest, rpc, signed, transfer_ix, user

OPTS = TxOpts(skip_confirmation=True, preflight_commitment=Processed, max_retries=None)


async def test_cluster_methods(net, client):
    assert await client.is_connected()  # getHealth
    assert (await client.get_version()).value.solana_core
    start = net.slot
    await net.advance(40)
    tip = start + 40
    assert (await client.get_slot(Processed)).value == tip
    assert (await client.get_slot(Confirmed)).value == tip - 1
    assert (await client.get_slot(Finalized)).value == tip - 32
    assert (await client.get_block_height(Processed)).value == tip
    info = (await client.get_epoch_info(Processed)).value
    assert info.absolute_slot == tip and info.block_height == tip
    assert str((await client.get_genesis_hash()).value) == net.ledger.genesis_hash
    health = await rpc(net.rpc_url, "getHealth")
    assert health["result"] == "ok"
    assert (await client.get_minimum_balance_for_rent_exemption(165)).value == \
        net.ledger.svm.minimum_balance_for_rent_exemption(165)


async def test_blockhash_and_fee_methods(net, client):
    bh = (await client.get_latest_blockhash(Processed))
    assert bh.value.last_valid_block_height == net.ledger.height + MAX_PROCESSING_AGE
    assert bh.context.slot == net.slot and bh.context.api_version
    valid = await rpc(net.rpc_url, "isBlockhashValid", [str(bh.value.blockhash),
                                                        {"commitment": "processed"}])
    assert valid["result"]["value"] is True and valid["result"]["context"]["slot"] == net.slot
    bogus = await rpc(net.rpc_url, "isBlockhashValid", [str(Keypair().pubkey()),
                                                        {"commitment": "processed"}])
    assert bogus["result"]["value"] is False
    payer = user(net)
    from solders.compute_budget import set_compute_unit_limit, set_compute_unit_price
    tx = signed(payer, [set_compute_unit_limit(10_000), set_compute_unit_price(2_000_000),
                        transfer_ix(payer, Keypair().pubkey(), 1)], bh.value.blockhash)
    fee = await client.get_fee_for_message(tx.message, Processed)
    assert fee.value == 5_000 + 20_000
    sig = (await client.send_transaction(tx, opts=OPTS)).value
    await net.advance(1)
    meta = (await client.get_transaction(sig, commitment=Confirmed)).value
    assert meta is None  # processed only so far
    await net.advance(1)
    got = (await client.get_transaction(sig, commitment=Confirmed)).value
    assert got.transaction.meta.fee == 25_000
    pre, post = got.transaction.meta.pre_balances[0], got.transaction.meta.post_balances[0]
    assert pre - post == 25_001
    fees = await rpc(net.rpc_url, "getRecentPrioritizationFees", [[str(payer.pubkey())]])
    by_slot = {f["slot"]: f["prioritizationFee"] for f in fees["result"]}
    assert by_slot[got.slot] == 2_000_000
    assert by_slot[got.slot + 1] == 0


async def test_airdrop_balance_and_accounts(net, client):
    kp = Keypair()
    sig = (await client.request_airdrop(kp.pubkey(), 3_000_000_000)).value
    assert (await client.get_balance(kp.pubkey(), Processed)).value == 0  # lands next block
    await net.advance(1)
    assert (await client.get_balance(kp.pubkey(), Processed)).value == 3_000_000_000
    assert (await client.get_balance(kp.pubkey(), Confirmed)).value == 0  # one slot later
    await net.advance(1)
    assert (await client.get_balance(kp.pubkey(), Confirmed)).value == 3_000_000_000
    assert (await client.get_balance(kp.pubkey(), Finalized)).value == 0
    status = (await client.get_signature_statuses([sig])).value[0]
    assert status.confirmations == 1 and str(status.confirmation_status) == \
        "TransactionConfirmationStatus.Confirmed"
    info = (await client.get_account_info(kp.pubkey(), Processed)).value
    assert info.lamports == 3_000_000_000 and info.owner == Pubkey.default()
    missing = Keypair().pubkey()
    multi = (await client.get_multiple_accounts([kp.pubkey(), missing], Processed)).value
    assert multi[0].lamports == 3_000_000_000 and multi[1] is None


async def _token_setup(net, client):
    payer = user(net)
    mint, holder = Keypair(), Keypair()
    rent_mint = (await client.get_minimum_balance_for_rent_exemption(82)).value
    rent_acc = (await client.get_minimum_balance_for_rent_exemption(165)).value
    ixs = [
        create_account(CreateAccountParams(from_pubkey=payer.pubkey(), to_pubkey=mint.pubkey(),
                                           lamports=rent_mint, space=82, owner=TOKEN_PROGRAM_ID)),
        initialize_mint(InitializeMintParams(decimals=9, program_id=TOKEN_PROGRAM_ID,
                                             mint=mint.pubkey(), mint_authority=payer.pubkey())),
        create_account(CreateAccountParams(from_pubkey=payer.pubkey(), to_pubkey=holder.pubkey(),
                                           lamports=rent_acc, space=165, owner=TOKEN_PROGRAM_ID)),
        initialize_account(InitializeAccountParams(program_id=TOKEN_PROGRAM_ID,
                                                   account=holder.pubkey(), mint=mint.pubkey(),
                                                   owner=payer.pubkey())),
        mint_to(MintToParams(program_id=TOKEN_PROGRAM_ID, mint=mint.pubkey(),
                             dest=holder.pubkey(), mint_authority=payer.pubkey(),
                             amount=1_500_000_000)),
    ]
    tx = signed(payer, ixs, (await latest(client)).blockhash, [mint, holder])
    sig = (await client.send_transaction(tx, opts=OPTS)).value
    await net.advance(2)
    return payer, mint, holder, sig


async def test_token_methods_and_program_accounts(net, client):
    payer, mint, holder, sig = await _token_setup(net, client)
    bal = (await client.get_token_account_balance(holder.pubkey(), Processed)).value
    assert bal.amount == "1500000000" and bal.decimals == 9 and bal.ui_amount_string == "1.5"
    owned = (await client.get_token_accounts_by_owner(
        payer.pubkey(), TokenAccountOpts(mint=mint.pubkey()), Processed)).value
    assert [a.pubkey for a in owned] == [holder.pubkey()]
    by_program = (await client.get_token_accounts_by_owner_json_parsed(
        payer.pubkey(), TokenAccountOpts(program_id=TOKEN_PROGRAM_ID), Processed)).value
    parsed = by_program[0].account.data.parsed
    assert parsed["info"]["tokenAmount"]["amount"] == "1500000000"
    accounts = (await client.get_program_accounts(
        TOKEN_PROGRAM_ID, Processed, encoding="base64",
        filters=[165, MemcmpOpts(offset=0, bytes=str(mint.pubkey()))])).value
    assert [a.pubkey for a in accounts] == [holder.pubkey()]
    mints = (await client.get_program_accounts(TOKEN_PROGRAM_ID, Processed, encoding="base64",
                                               filters=[82])).value
    assert mint.pubkey() in [a.pubkey for a in mints] and holder.pubkey() not in \
        [a.pubkey for a in mints]
    sliced = (await client.get_account_info(holder.pubkey(), Processed, encoding="base64",
                                            data_slice=DataSliceOpts(offset=64, length=8))).value
    assert int.from_bytes(sliced.data, "little") == 1_500_000_000
    tx = (await client.get_transaction(sig, commitment=Confirmed)).value.transaction.meta
    assert [b.ui_token_amount.amount for b in tx.post_token_balances] == ["1500000000"]
    assert await _fails(client.get_token_account_balance(payer.pubkey(), Processed)) is not None


async def _fails(coro):
    try:
        await coro
    except RPCException as exc:
        return exc
    return None


async def test_send_simulate_and_history(net, client):
    payer = user(net)
    dest = Keypair().pubkey()
    bh = await latest(client)
    tx = signed(payer, [transfer_ix(payer, dest, 5_000_000)], bh.blockhash)
    sim = (await client.simulate_transaction(tx, sig_verify=True, commitment=Processed)).value
    assert sim.err is None and sim.units_consumed == 150 and sim.logs
    sig = (await client.send_transaction(tx, opts=OPTS)).value
    assert (await client.get_signature_statuses([sig])).value == [None]
    await net.advance(1)
    st = (await client.get_signature_statuses([sig])).value[0]
    assert st.slot == net.slot and st.confirmations == 0 and st.err is None
    again = await _fails(client.send_transaction(tx, opts=OPTS))
    assert again is not None and "already been processed" in str(again)
    await net.advance(32)
    st = (await client.get_signature_statuses([sig])).value[0]
    assert st.confirmations is None and "Finalized" in str(st.confirmation_status)
    sigs = (await client.get_signatures_for_address(dest, commitment=Confirmed)).value
    assert [s.signature for s in sigs] == [sig]
    got = (await client.get_transaction(sig, encoding="base64", commitment=Finalized)).value
    assert got.slot == st.slot and got.transaction.meta.log_messages
    # status cache: without searchTransactionHistory old signatures are not found
    await net.advance(300)
    assert (await client.get_signature_statuses([sig])).value == [None]
    found = (await client.get_signature_statuses([sig], search_transaction_history=True)).value
    assert found[0].slot == st.slot


async def test_preflight_failure_has_logs(net, client):
    payer = user(net)
    tx = signed(payer, [transfer_ix(payer, Keypair().pubkey(), 10**18)],
                (await latest(client)).blockhash)
    body = {"jsonrpc": "2.0", "id": 7, "method": "sendTransaction",
            "params": [base64.b64encode(bytes(tx)).decode(),
                       {"encoding": "base64", "preflightCommitment": "processed"}]}
    async with aiohttp.ClientSession() as s, s.post(net.rpc_url, json=body) as r:
        reply = await r.json()
    err = reply["error"]
    assert err["code"] == -32002 and reply["id"] == 7
    assert err["message"] == ("Transaction simulation failed: Error processing Instruction 0: "
                              "custom program error: 0x1")
    assert err["data"]["err"] == {"InstructionError": [0, {"Custom": 1}]}
    assert any("insufficient lamports" in line for line in err["data"]["logs"])
    # skipPreflight: the transaction lands and fails, paying its fee
    sig = (await client.send_transaction(tx, opts=TxOpts(skip_preflight=True))).value
    await net.advance(1)
    st = (await client.get_signature_statuses([sig])).value[0]
    assert st.err is not None


async def test_blockhash_not_found_and_expiry(net, client):
    payer = user(net)
    bh = await latest(client)
    await net.advance(MAX_PROCESSING_AGE)
    assert net.ledger.height == bh.last_valid_block_height
    ok = signed(payer, [transfer_ix(payer, Keypair().pubkey(), 1)], bh.blockhash)
    sig = (await client.send_transaction(ok, opts=TxOpts(skip_preflight=True))).value
    await net.advance(1)  # the next block is past lastValidBlockHeight: it never lands
    assert (await client.get_signature_statuses([sig], search_transaction_history=True)
            ).value == [None]
    assert sig and net.ledger.height > bh.last_valid_block_height
    stale = signed(payer, [transfer_ix(payer, Keypair().pubkey(), 2)], bh.blockhash)
    exc = await _fails(client.send_transaction(stale, opts=OPTS))
    assert exc is not None and "Blockhash not found" in str(exc)
    valid = await rpc(net.rpc_url, "isBlockhashValid", [str(bh.blockhash),
                                                        {"commitment": "processed"}])
    assert valid["result"]["value"] is False


async def test_blockhash_valid_for_exactly_150_blocks(net, client):
    payer = user(net)
    bh = await latest(client)
    await net.advance(SIMULATION_MAX_AGE + 1)
    tx = signed(payer, [transfer_ix(payer, Keypair().pubkey(), 1)], bh.blockhash)
    # preflight keeps a forwarding margin: 145 blocks old is too old to simulate ...
    exc = await _fails(client.send_transaction(tx, opts=OPTS))
    assert exc is not None and "Blockhash not found" in str(exc)
    await net.advance(MAX_PROCESSING_AGE - SIMULATION_MAX_AGE - 2)
    # ... but a leader still accepts it up to lastValidBlockHeight
    sig = (await client.send_transaction(tx, opts=TxOpts(skip_preflight=True))).value
    await net.advance(1)  # block height == lastValidBlockHeight: still accepted
    st = (await client.get_signature_statuses([sig])).value[0]
    assert st is not None and st.slot == net.slot == bh.last_valid_block_height


async def test_json_rpc_errors_and_batch(net):
    url = net.rpc_url
    async with aiohttp.ClientSession() as s:
        async with s.post(url, data=b"{nope") as r:
            assert (await r.json())["error"]["code"] == -32700
        async with s.post(url, json={"jsonrpc": "2.0", "id": 1}) as r:
            assert (await r.json())["error"] == {"code": -32600, "message": "Invalid request"}
        async with s.post(url, json=[]) as r:
            assert (await r.json())["error"]["code"] == -32600
        async with s.post(url, json={"jsonrpc": "2.0", "id": 2, "method": "getNothing"}) as r:
            assert (await r.json())["error"] == {"code": -32601, "message": "Method not found"}
        async with s.post(url, json={"jsonrpc": "2.0", "id": 3, "method": "getBalance",
                                     "params": ["not-a-key"]}) as r:
            assert (await r.json())["error"]["code"] == -32602
        batch = [{"jsonrpc": "2.0", "id": i, "method": m, "params": []}
                 for i, m in enumerate(["getSlot", "getHealth", "getNothing"])]
        batch.append({"jsonrpc": "2.0", "method": "getSlot"})  # a notification: no reply
        async with s.post(url, json=batch) as r:
            replies = await r.json()
    assert [r["id"] for r in replies] == [0, 1, 2]
    assert replies[0]["result"] == net.ledger.commitment_slot(net.slot, "finalized")
    assert replies[1]["result"] == "ok"
    assert replies[2]["error"]["code"] == -32601
    below = await rpc(url, "getTransaction", [str(Keypair().pubkey()) * 2,
                                              {"commitment": "processed"}])
    assert below["error"]["code"] == -32602
    ctx = await rpc(url, "getBalance", [str(Keypair().pubkey()), {"minContextSlot": 99}])
    assert ctx["error"]["code"] == -32016
    assert ctx["error"]["data"] == {"contextSlot": net.ledger.commitment_slot(net.slot,
                                                                              "finalized")}
