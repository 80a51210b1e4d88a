"""[chain]: the Solana cluster, the program IDs and the fee caps."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AnyHttpUrl, AnyWebsocketUrl, Field

from gridnode.config.base import Section
from gridnode.types import Base58Pubkey


class ProgramIds(Section):
    """The five GridTokenX programs; the defaults are the IDs gridnode is built against."""

    registry: Base58Pubkey = "2XPQmFYMdXjP7ffoBB3mXeCdboSFg5Yeb6QmTSGbW8a7"
    oracle: Base58Pubkey = "DvdtU4quEbuxUY2FckmvcXwTpC9qp4HLJKb1PMLaqAoE"
    governance: Base58Pubkey = "4DY97YYBt4bxvG7xaSmWy3MhYhmA6HoMajBHVqhySvXe"
    energy_token: Base58Pubkey = "94G1r674LmRDmLN2UPjDFD8Eh7zT8JaSaxv9v68GyEur"
    trading: Base58Pubkey = "GZnqNTJsre6qB4pWCQRE9FiJU2GUeBtBDPp6s7zosctk"


class FeeCaps(Section):
    """Upper bounds on what one transaction may pay, whatever the fee estimate says."""

    max_priority_fee_micro_lamports: int = Field(default=100_000, ge=0)
    max_lamports_per_tx: int = Field(default=50_000, ge=5_000)
    compute_unit_margin: float = Field(default=1.2, ge=1.0, le=3.0)


class PriorityFeeConfig(Section):
    """Priority fee from getRecentPrioritizationFees, in micro-lamports per compute unit."""

    percentile: float = Field(default=75.0, ge=0, le=100)
    floor_micro_lamports: int = Field(default=0, ge=0)
    cache_s: float = Field(default=10.0, ge=0)


class RpcPolicyConfig(Section):
    """How the node treats its RPC endpoints: health checks and failover."""

    health_interval_s: float = Field(default=5.0, gt=0)
    max_slot_lag: int = Field(default=50, ge=0)
    unhealthy_after_errors: int = Field(default=3, ge=1)
    blockhash_refresh_s: float = Field(default=2.0, gt=0)
    blockhash_max_age_s: float = Field(default=10.0, gt=0)
    subscribe: bool = True          # signatureSubscribe on ws_urls for faster confirmation


class ChainConfig(Section):
    rpc_urls: list[AnyHttpUrl] = Field(min_length=1)
    ws_urls: list[AnyWebsocketUrl] = Field(default_factory=list)
    commitment: Literal["processed", "confirmed", "finalized"] = "confirmed"
    program_ids: ProgramIds = Field(default_factory=ProgramIds)
    fees: FeeCaps = Field(default_factory=FeeCaps)
    # IDL files that add to or replace (by program name) the IDLs installed with gridnode.
    idl_dir: Path | None = None
    request_timeout_s: float = Field(default=10.0, gt=0, le=120)
    priority_fee: PriorityFeeConfig = Field(default_factory=PriorityFeeConfig)
    rpc: RpcPolicyConfig = Field(default_factory=RpcPolicyConfig)
    # Also record each reading in the registry's meter totals (update_meter_reading).
    registry_readings: bool = False
    # Send a meter's readings only once the meter is registered and Active on chain.
    require_registered_meters: bool = True
    # Keys the node may sign with besides the gateway: the programs' authority and user wallets.
    authority_keypair: Path | None = None
    user_keypairs: list[Path] = Field(default_factory=list)

    def user_keypair_files(self) -> list[tuple[str, Path]]:
        """(key path, file) of each user wallet, for errors that name the key."""
        return [(f"chain.user_keypairs[{i}]", p) for i, p in enumerate(self.user_keypairs)]
