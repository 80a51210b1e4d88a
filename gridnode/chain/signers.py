"""The keys this node may sign with, by role and by public key.

Roles: "gateway" (the oracle's api_gateway and the fee payer of everything this node sends),
"authority" (the programs' authority, held only on nodes that issue tokens or certificates), and
any user wallets the node manages for its prosumers (addressed by public key in payloads).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from solders.keypair import Keypair
from solders.pubkey import Pubkey


@dataclass
class Signers:
    gateway: Keypair
    authority: Keypair | None = None
    users: dict[str, Keypair] = field(default_factory=dict)

    @classmethod
    def of(cls, gateway: Keypair, authority: Keypair | None = None,
           users: Iterable[Keypair] = ()) -> Signers:
        return cls(gateway, authority, {str(k.pubkey()): k for k in users})

    @property
    def fee_payer(self) -> Keypair:
        return self.gateway

    def by_role(self, role: str) -> Keypair | None:
        if role == "gateway":
            return self.gateway
        if role == "authority":
            return self.authority
        return self.by_pubkey(role)

    def by_pubkey(self, pubkey: str | Pubkey) -> Keypair | None:
        key = str(pubkey)
        for kp in (self.gateway, self.authority):
            if kp is not None and str(kp.pubkey()) == key:
                return kp
        return self.users.get(key)
