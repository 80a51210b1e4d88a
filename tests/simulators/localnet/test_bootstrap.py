"""Bootstrap deploys the built programs and initializes them; clients read the result over RPC."""

from __future__ import annotations

import json

from solana.rpc.commitment import Processed
from solders.pubkey import Pubkey

from gridnode.chain.idl import load_idls
from simulators.chain.svm import IDL_DIR, loaded_programs


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
