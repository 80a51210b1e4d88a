"""[market] and [[market.users]]: which building users the node trades and settles for, with
which key, and by which policy; and whether the node clears the market.

Who holds which key:
    keypair / credential   the node holds the user's own wallet (a 0600 key file, or a systemd
                           credential in $CREDENTIALS_DIRECTORY): it signs the user's orders,
                           minting and settlements itself.
    pubkey + delegate      the user keeps its key and approved the node's gateway key as SPL
                           delegate of its GRID account: the gateway signs `settle_trade` for it
                           (the reference program accepts the seller or its approved delegate).
                           Orders and minting need the user's own signature, so such a user's
                           orders come from elsewhere; the node settles its matched trades.
The market authority is `chain.authority_keypair`: when the node holds it (and `clears` is
"auto" or "always") it also clears the market at each epoch's end.

Prices are GRID base units per kWh (integers), as the trading program takes them.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from gridnode.config.base import Section
from gridnode.types import Base58Pubkey, CertificateId, MeterId

DEFAULT_CREDENTIALS_DIR = "/run/credentials/gridnode.service"
U64_MAX = 2**64 - 1


class MarketUser(Section):
    """One user of the building the node trades for."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    # Exactly one of the three names the user's wallet.
    keypair: Path | None = None        # the user's own key file (mode 0600)
    credential: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    pubkey: Base58Pubkey | None = None  # the user keeps its key: settle as its SPL delegate
    # With `pubkey`: the user approved the gateway as delegate of its GRID account.
    delegate: bool = False
    meters: list[MeterId] = Field(default_factory=list)
    policy: Literal["sell_surplus", "buy_deficit", "manual"] = "manual"
    min_price_per_kwh: int | None = Field(default=None, gt=0, le=U64_MAX)
    max_price_per_kwh: int | None = Field(default=None, gt=0, le=U64_MAX)
    # The user's own validated certificate (governance ERC id), named on its sell orders when
    # the node does not certify them itself.
    erc_certificate: CertificateId | None = None

    @model_validator(mode="after")
    def _consistent(self) -> MarketUser:
        sources = [k for k in ("keypair", "credential", "pubkey") if getattr(self, k) is not None]
        if len(sources) != 1:
            raise ValueError(
                "exactly one of keypair (a 0600 key file), credential (a systemd credential) or "
                f"pubkey (the user keeps its key; with delegate = true) (got {sources or 'none'})")
        if self.pubkey is not None and not self.delegate:
            raise ValueError("delegate = true with pubkey: a user whose key the node does not "
                             "hold can only be settled for with the gateway as its approved SPL "
                             "delegate (or give keypair/credential instead)")
        if self.delegate and self.pubkey is None:
            raise ValueError("delegate = true only with pubkey (the node holds this user's key)")
        if self.policy == "sell_surplus" and self.min_price_per_kwh is None:
            raise ValueError("min_price_per_kwh with policy = 'sell_surplus'")
        if self.policy == "buy_deficit" and self.max_price_per_kwh is None:
            raise ValueError("max_price_per_kwh with policy = 'buy_deficit'")
        if self.policy != "manual" and self.pubkey is not None:
            raise ValueError("policy = 'manual' for a delegate user: orders need the user's own "
                             "signature, which the node does not hold")
        if self.policy != "manual" and not self.meters:
            raise ValueError(f"meters (the meters whose intervals policy {self.policy!r} trades)")
        return self

    @property
    def holds_key(self) -> bool:
        return self.pubkey is None

    def keypair_file(self, env: Mapping[str, str] = os.environ) -> Path | None:
        """The user's key file: the systemd credential's path, or `keypair`; None for a delegate."""
        if self.credential is not None:
            return Path(env.get("CREDENTIALS_DIRECTORY", DEFAULT_CREDENTIALS_DIR)) / self.credential
        return self.keypair


class MarketConfig(Section):
    enabled: bool = True
    # Epoch length, aligned to UTC (15 min is the platform's).
    epoch_minutes: Literal[1, 5, 15, 30, 60] = 15
    # Clear the market at each epoch's end: "auto" when chain.authority_keypair is configured.
    clears: Literal["auto", "always", "never"] = "auto"
    # Without the market authority: how long after an epoch's end its unmatched remainders wait
    # for a match made elsewhere before they are cancelled.
    cancel_after_s: float = Field(default=60.0, ge=0, le=86400)
    # How often settlements, trade records and epochs are looked at.
    poll_interval_s: float = Field(default=5.0, gt=0, le=3600)
    # The recovery budget of one settlement: settle_trade attempts before it is defaulted.
    settlement_attempts: int = Field(default=3, ge=1, le=100)
    # Seconds between two settle_trade attempts of one settlement.
    settlement_retry_s: float = Field(default=30.0, ge=0, le=86400)
    # Certificates for policy sells: "auto" issues and validates one per sold interval where the
    # node holds chain.authority_keypair (the governance authority); "off" never does.
    erc: Literal["auto", "off"] = "auto"
    # A surplus below this is offered without a certificate (the governance minimum).
    erc_min_wh: int = Field(default=100, ge=1)
    users: list[MarketUser] = Field(default_factory=list)

    @model_validator(mode="after")
    def _users(self) -> MarketConfig:
        names = Counter(u.name for u in self.users)
        dup = sorted(n for n, c in names.items() if c > 1)
        if dup:
            raise ValueError(f"user names used once (repeated: {', '.join(dup)})")
        owners = Counter(m for u in self.users for m in u.meters)
        dup = sorted(m for m, c in owners.items() if c > 1)
        if dup:
            raise ValueError(f"each meter owned by one user (shared: {', '.join(dup)})")
        return self

    def user_keypair_files(self, env: Mapping[str, str] = os.environ) -> list[tuple[str, Path]]:
        """(key path, file) of each user key the node holds, for errors that name the key."""
        out: list[tuple[str, Path]] = []
        for i, u in enumerate(self.users):
            path = u.keypair_file(env)
            if path is not None:
                key = "credential" if u.credential is not None else "keypair"
                out.append((f"market.users[{i}].{key}", path))
        return out

    def certifies(self, holds_authority: bool) -> bool:
        return self.enabled and self.erc == "auto" and holds_authority

    def clears_market(self, holds_authority: bool) -> bool:
        return self.enabled and (self.clears == "always"
                                 or (self.clears == "auto" and holds_authority))


def market_summary(market: MarketConfig | None, registry_readings: bool,
                   holds_authority: bool) -> list[str]:
    """The check-config lines: who can sell, with which key, and what minting needs."""
    if market is None or not market.enabled:
        return ["market: off (no [market], or enabled = false)"]
    clears = market.clears_market(holds_authority)
    lines = [f"market: epochs of {market.epoch_minutes} min (UTC); "
             + ("clears the market at each epoch's end (holds chain.authority_keypair)"
                if clears else "does not clear the market (no market authority key)")]
    for u in market.users:
        if u.holds_key:
            how = ("can sell with its own key" if u.policy != "buy_deficit"
                   else "buys with its own key")
            src = f"credential {u.credential}" if u.credential else f"{u.keypair}"
            how += f" ({src})"
        else:
            how = ("can sell: settled with the gateway as its approved SPL delegate "
                   f"({u.pubkey}); its orders come from elsewhere")
        price = (f" at >= {u.min_price_per_kwh}/kWh" if u.policy == "sell_surplus" else
                 f" at <= {u.max_price_per_kwh}/kWh" if u.policy == "buy_deficit" else "")
        meters = ", ".join(u.meters) or "no meters"
        lines.append(f"  user {u.name} {how}; policy {u.policy}{price}; meters {meters}")
    if any(u.holds_key and u.policy == "sell_surplus" for u in market.users):
        lines.append("  certificates: " + (
            f"issued and validated for each policy sell of at least {market.erc_min_wh} Wh "
            "(holds chain.authority_keypair)" if market.certifies(holds_authority) else
            "the users' own erc_certificate where given, else none"))
    if any(u.holds_key and u.meters for u in market.users):
        lines.append("  minting: " + (
            "grid_minting after each finalized interval with net generation "
            "(chain.registry_readings = true)" if registry_readings else
            "needs chain.registry_readings = true (the registry totals are what it settles); "
            "off until then"))
    return lines
