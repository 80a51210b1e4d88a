"""The market's users as the node knows them: wallet, whether the node holds its key, meters,
policy, and the GRID token accounts (associated token accounts of the GRID mint)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from solders.pubkey import Pubkey

from gridnode.config.market import MarketUser

TOKEN_PROGRAM = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
ATA_PROGRAM = Pubkey.from_string("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL")


@dataclass(frozen=True, slots=True)
class User:
    name: str
    pubkey: str
    holds_key: bool                  # False: the gateway settles as the user's SPL delegate
    meters: tuple[str, ...]
    policy: str
    min_price_per_kwh: int | None
    max_price_per_kwh: int | None
    erc_certificate: str | None = None     # the user's own certificate id

    @classmethod
    def of(cls, cfg: MarketUser, pubkey: str) -> User:
        return cls(cfg.name, pubkey, cfg.holds_key, tuple(cfg.meters), cfg.policy,
                   cfg.min_price_per_kwh, cfg.max_price_per_kwh, cfg.erc_certificate)


def grid_mint(idls: dict[str, Any]) -> Pubkey:
    """The GRID mint: the energy_token program's ["mint"] PDA."""
    return Pubkey.find_program_address([b"mint"], idls["energy_token"].program_id)[0]


def token_account(owner: str | Pubkey, mint: Pubkey) -> str:
    """The owner's associated token account of `mint` (where GRID is minted and settled)."""
    owner_key = owner if isinstance(owner, Pubkey) else Pubkey.from_string(owner)
    return str(Pubkey.find_program_address(
        [bytes(owner_key), bytes(TOKEN_PROGRAM), bytes(mint)], ATA_PROGRAM)[0])


class Users:
    """Lookups by name, wallet and meter."""

    def __init__(self, users: list[User]) -> None:
        self.all = users
        self.by_name = {u.name: u for u in users}
        self.by_pubkey = {u.pubkey: u for u in users}
        self.by_meter = {m: u for u in users for m in u.meters}

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.all)
