"""Values that the configuration, the tx payloads and the meters all check: one rule each.

A public key or address is base58 of 32 bytes; a meter id (like a certificate id) is a PDA seed
on chain, so 1 to 32 bytes of UTF-8. The pydantic types below carry the check, so a model field
states its rule by its type, and the messages read as "expected <rule>" in configuration errors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from pydantic import AfterValidator
from solders.pubkey import Pubkey

__all__ = ["Base58Pubkey", "CertificateId", "MeterId", "check_pubkey", "parse_pubkey"]

PUBKEY_RULE = "a base58 string of 32 bytes (a Solana address or an Ed25519 public key)"
MAX_SEED_BYTES = 32     # a PDA seed's limit on chain


def parse_pubkey(text: str) -> Pubkey:
    """The public key `text` spells; ValueError naming the rule when it is not one."""
    try:
        return Pubkey.from_string(text)
    except ValueError:
        raise ValueError(PUBKEY_RULE) from None


def check_pubkey(text: str) -> str:
    """`text` unchanged when it is a public key; ValueError otherwise."""
    parse_pubkey(text)
    return text


def _seed(what: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        size = len(value.encode())
        if not value or size > MAX_SEED_BYTES:
            raise ValueError(f"1 to {MAX_SEED_BYTES} bytes of UTF-8 (the on-chain {what}, a PDA "
                             f"seed); this one is {size}")
        return value
    return check


Base58Pubkey = Annotated[str, AfterValidator(check_pubkey)]
MeterId = Annotated[str, AfterValidator(_seed("meter_id"))]
CertificateId = Annotated[str, AfterValidator(_seed("certificate_id"))]
