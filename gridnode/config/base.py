"""What every configuration section shares: unknown keys are errors, values are immutable, and
numbers are finite (TOML's ``inf`` and ``nan`` would switch a bound or a check off)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict
from solders.pubkey import Pubkey as _SolPubkey


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _pubkey(value: str) -> str:
    """A base58 string that decodes to 32 bytes (a Solana address or an ed25519 public key)."""
    try:
        _SolPubkey.from_string(value)
    except ValueError:
        raise ValueError("a base58 string of 32 bytes (a Solana address)") from None
    return value


Pubkey = Annotated[str, AfterValidator(_pubkey)]
