"""Bootstrap: the runtime with the GridTokenX programs, funded named keypairs, the programs'
initialize instructions, and bootstrap.json describing all of it.

Keypairs are generated at run time (solana-keygen JSON, mode 0600) and reused when the state
directory already holds them, so a restarted localnet keeps its identities.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from solders.account import Account
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from gridnode.chain.idl import load_idls
from simulators.chain.svm import IDL_DIR, program_ids

# The programs' initialize instructions, in order: (program, instruction, singleton it creates).
INITIALIZERS = [
    ("registry", "initialize", "registry"),
    ("oracle", "initialize", "oracle_data"),
    ("energy_token", "initialize_token", "token_info"),
    ("trading", "initialize_market", "market"),
    ("governance", "initialize_poa", "poa_config"),
]
SINGLETON_SEEDS = {  # bootstrap.json "accounts" name -> (program, seed)
    "registry": ("registry", b"registry"),
    "oracle_data": ("oracle", b"oracle_data"),
    "token_info": ("energy_token", b"token_info"),
    "mint": ("energy_token", b"mint"),
    "market": ("trading", b"market"),
    "poa_config": ("governance", b"poa_config"),
}
LAMPORTS_PER_SOL = 1_000_000_000
FAUCET_LAMPORTS = 500_000_000 * LAMPORTS_PER_SOL
ACCOUNT_LAMPORTS = 1_000 * LAMPORTS_PER_SOL
SYSTEM_PROGRAM = Pubkey.from_string("11111111111111111111111111111111")


def write_keypair(path: Path, keypair: Keypair) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(list(bytes(keypair)), f)
    os.chmod(path, 0o600)


def load_or_create_keypair(path: Path) -> Keypair:
    if path.exists():
        return Keypair.from_bytes(bytes(json.loads(path.read_text())))
    keypair = Keypair()
    write_keypair(path, keypair)
    return keypair


@dataclass
class Identities:
    faucet: Keypair
    authority: Keypair
    gateway: Keypair
    users: list[Keypair]
    paths: dict[str, Any] = field(default_factory=dict)


def identities(keys_dir: Path | None, users: int) -> Identities:
    """The named keypairs, from `keys_dir` when it holds them, else freshly generated."""
    if keys_dir is None:
        return Identities(Keypair(), Keypair(), Keypair(), [Keypair() for _ in range(users)])
    paths: dict[str, Any] = {n: keys_dir / f"{n}.json" for n in ("faucet", "authority", "gateway")}
    paths["users"] = [keys_dir / f"user{i}.json" for i in range(users)]
    ids = Identities(load_or_create_keypair(paths["faucet"]),
                     load_or_create_keypair(paths["authority"]),
                     load_or_create_keypair(paths["gateway"]),
                     [load_or_create_keypair(p) for p in paths["users"]])
    ids.paths = {"authority": str(paths["authority"]), "gateway": str(paths["gateway"]),
                 "users": [str(p) for p in paths["users"]]}
    return ids


def fund(set_account: Any, ids: Identities) -> None:
    """Give the faucet and every named keypair lamports (genesis allocations)."""
    set_account(ids.faucet.pubkey(), Account(FAUCET_LAMPORTS, b"", SYSTEM_PROGRAM))
    for kp in [ids.authority, ids.gateway, *ids.users]:
        set_account(kp.pubkey(), Account(ACCOUNT_LAMPORTS, b"", SYSTEM_PROGRAM))


def singleton(name: str, deployed: dict[str, Pubkey]) -> Pubkey | None:
    program, seed = SINGLETON_SEEDS[name]
    if program not in deployed:
        return None
    return Pubkey.find_program_address([seed], deployed[program])[0]


def initialize_instructions(deployed: dict[str, Pubkey], ids: Identities,
                            exists: Any) -> list[tuple[str, Instruction]]:
    """The initialize instructions still to run: deployed programs whose singleton is absent."""
    idls = load_idls(IDL_DIR, program_ids=deployed)
    args = {"oracle": {"api_gateway": ids.gateway.pubkey()}}
    out = []
    for program, ix_name, account in INITIALIZERS:
        key = singleton(account, deployed)
        if key is None or program not in idls or exists(key):
            continue
        ix = idls[program].instruction(ix_name, args=args.get(program, {}),
                                       accounts={"authority": ids.authority.pubkey()})
        out.append((f"{program}.{ix_name}", ix))
    return out


def describe(rpc_url: str, ws_url: str, deployed: dict[str, Pubkey], ids: Identities,
             initialized: list[str]) -> dict[str, Any]:
    """The bootstrap.json document."""
    return {
        "rpc_url": rpc_url,
        "ws_url": ws_url,
        "program_ids": {n: str(p) for n, p in {**program_ids(), **deployed}.items()},
        "deployed": sorted(deployed),
        "initialized": initialized,
        "keypairs": ids.paths,
        "pubkeys": {"authority": str(ids.authority.pubkey()),
                    "gateway": str(ids.gateway.pubkey()),
                    "users": [str(k.pubkey()) for k in ids.users]},
        "accounts": {name: (str(k) if (k := singleton(name, deployed)) else None)
                     for name in SINGLETON_SEEDS},
    }
