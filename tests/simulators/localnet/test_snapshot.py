"""A restarted localnet keeps its ledger, keypairs and bootstrap; the CLI serves and stops."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Processed
from solana.rpc.types import TxOpts
from solders.keypair import Keypair

from simulators.chain.localnet import Localnet
from tests.net import pick_free_port
from tests.simulators.localnet.conftest import latest, rpc, signed, transfer_ix, user


async def test_restart_keeps_ledger_history_and_keys(tmp_path):
    state = tmp_path / "state"
    dest = Keypair().pubkey()
    async with Localnet(port=pick_free_port(), manual=True, state_dir=state) as net:
        client = AsyncClient(net.rpc_url, commitment=Processed)
        payer = user(net)
        bh = await latest(client)
        tx = signed(payer, [transfer_ix(payer, dest, 7_000_000)], bh.blockhash)
        sig = (await client.send_transaction(tx, opts=TxOpts(preflight_commitment=Processed))
               ).value
        await net.advance(3)
        slot, payer_key = net.slot, payer.pubkey()
        boot = json.loads((state / "bootstrap.json").read_text())
        await client.close()
    for path in [boot["keypairs"]["authority"], boot["keypairs"]["gateway"],
                 *boot["keypairs"]["users"]]:
        assert os.stat(path).st_mode & 0o777 == 0o600
    async with Localnet(port=pick_free_port(), manual=True, state_dir=state) as net:
        client = AsyncClient(net.rpc_url, commitment=Processed)
        assert net.slot == slot and user(net).pubkey() == payer_key
        assert (await client.get_balance(dest)).value == 7_000_000
        found = (await client.get_signature_statuses([sig], True)).value[0]
        assert found is not None and found.slot == slot - 2
        assert [s.signature for s in (await client.get_signatures_for_address(
            dest, commitment="confirmed")).value] == \
            [sig]
        again = signed(user(net), [transfer_ix(user(net), dest, 1)], bh.blockhash)
        sig2 = (await client.send_transaction(again, opts=TxOpts(
            preflight_commitment=Processed))).value  # blockhashes survive the restart too
        await net.advance(1)
        assert (await client.get_balance(dest)).value == 7_000_001 and sig2
        await client.close()


async def test_cli_serves_and_writes_bootstrap(tmp_path):
    port = pick_free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simulators.chain.localnet", "--port", str(port), "--slot-ms", "20",
        "--state", str(tmp_path), "--drop-tx-rate", "0.5", "--seed", "4",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        async with asyncio.timeout(20):
            url = f"http://127.0.0.1:{port}"
            while True:
                try:
                    reply = await rpc(url, "getSlot", [{"commitment": "processed"}])
                    if reply["result"] > 2:
                        break
                except OSError:
                    pass
                await asyncio.sleep(0.05)
        # the clock starts after bootstrap.json is written
        boot = json.loads((tmp_path / "bootstrap.json").read_text())
        assert boot["rpc_url"] == url and boot["ws_url"] == f"ws://127.0.0.1:{port}"
        assert set(boot["accounts"]) == {"registry", "oracle_data", "token_info", "mint",
                                         "market", "poa_config"}
        import aiohttp
        async with aiohttp.ClientSession() as s, s.get(f"{url}/admin/faults") as r:
            faults = await r.json()
        assert faults["drop_tx_rate"] == 0.5 and faults["seed"] == 4
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            assert await proc.wait() == 0
