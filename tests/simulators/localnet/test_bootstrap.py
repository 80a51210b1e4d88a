"""Bootstrap deploys the built programs and initializes them; clients read the result over RPC."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp
from solana.rpc.commitment import Finalized, Processed
from solders.pubkey import Pubkey

from gridnode.chain.idl import load_idls
from simulators.chain.svm import IDL_DIR, loaded_programs
from tests.net import pick_free_port

REPO = Path(__file__).resolve().parents[3]


async def test_bootstrap_initializes_deployed_programs(net, client):
    boot = json.loads((net.state_dir / "bootstrap.json").read_text())
    assert boot == net.bootstrap
    deployed = loaded_programs()
    assert sorted(deployed) == boot["deployed"]
    idls = load_idls(IDL_DIR)
    gateway = Pubkey.from_string(boot["pubkeys"]["gateway"])
    authority = Pubkey.from_string(boot["pubkeys"]["authority"])
    if "oracle" in deployed:
        assert "oracle.initialize" in boot["initialized"]
        info = (await client.get_account_info(Pubkey.from_string(boot["accounts"]["oracle_data"]),
                                              Processed, encoding="base64")).value
        oracle = idls["oracle"].decode_account("OracleData", bytes(info.data))
        assert oracle["api_gateway"] == gateway and oracle["authority"] == authority
    if "energy_token" in deployed:
        mint = (await client.get_account_info_json_parsed(
            Pubkey.from_string(boot["accounts"]["mint"]), Processed)).value
        parsed = mint.data.parsed["info"]
        assert parsed["decimals"] == 9 and parsed["mintAuthority"] == boot["accounts"]["token_info"]
    for program, account, type_name in [("registry", "registry", "Registry"),
                                        ("trading", "market", "Market"),
                                        ("governance", "poa_config", "PoAConfig")]:
        if program in deployed:
            info = (await client.get_account_info(Pubkey.from_string(boot["accounts"][account]),
                                                  Processed, encoding="base64")).value
            decoded = idls[program].decode_account(type_name, bytes(info.data))
            assert decoded["authority"] == authority
    for name in ("registry", "oracle", "energy_token", "trading", "governance"):
        if name not in deployed:
            assert not any(i.startswith(name + ".") for i in boot["initialized"])
    balances = [(await client.get_balance(Pubkey.from_string(k), Processed)).value
                for k in [boot["pubkeys"]["authority"], *boot["pubkeys"]["users"]]]
    assert all(b > 100 * 10**9 for b in balances)


async def _health_and_finalized_slot(url: str) -> tuple[Any, int]:
    body = [{"jsonrpc": "2.0", "id": 1, "method": "getHealth"},
            {"jsonrpc": "2.0", "id": 2, "method": "getSlot", "params": [{"commitment": "finalized"}]}]
    async with aiohttp.ClientSession() as s, s.post(url, json=body) as r:
        health, slot = await r.json()
    return health.get("result", health.get("error")), int(slot["result"])


async def test_ready_from_the_first_answer(tmp_path: Path) -> None:
    """Whoever gets an answer finds the localnet ready: health ok, the bootstrap finalized and the
    slot advancing at every commitment, the default `finalized` included (it used to stay 0 for
    the first 32 slots, 13 s at 400 ms, while getHealth said ok)."""
    port = pick_free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simulators.chain.localnet", "--port", str(port), "--slot-ms", "100",
        "--state", str(tmp_path), stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL, cwd=REPO)
    try:
        async with asyncio.timeout(30):
            while True:
                try:
                    health, finalized = await _health_and_finalized_slot(f"http://127.0.0.1:{port}")
                    break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.02)    # not listening yet: that is the "not ready"
        assert health == "ok" and finalized >= 1
        await asyncio.sleep(0.5)
        assert (await _health_and_finalized_slot(f"http://127.0.0.1:{port}"))[1] > finalized
    finally:
        proc.terminate()
        await proc.wait()


async def test_bootstrap_is_finalized_when_the_manual_localnet_starts(net, client):
    oracle = net.bootstrap["accounts"]["oracle_data"]
    assert (await client.get_slot(Finalized)).value >= 1
    assert (await client.get_account_info(Pubkey.from_string(oracle), Finalized)).value is not None
