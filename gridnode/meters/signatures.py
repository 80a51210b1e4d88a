"""Ed25519 reading signatures as the GridTokenX meter simulator produces them.

Signatures and public keys are base58. The signed text is the simulator's canonical message
`"{meter_id}:{kwh:.6f}:{timestamp_ms}:{sequence}"` (protocol v4 form), where kwh is the energy of
the reading in kWh. solders (already a dependency for the chain side) verifies Ed25519.
"""

from __future__ import annotations

from solders.pubkey import Pubkey
from solders.signature import Signature

from gridnode.types import parse_pubkey as parse_public_key

__all__ = ["canonical_message", "parse_public_key", "verify"]


def canonical_message(meter_id: str, kwh: float, timestamp_ms: int, sequence: int) -> bytes:
    return f"{meter_id}:{kwh:.6f}:{timestamp_ms}:{sequence}".encode()


def verify(public_key: Pubkey, message: bytes, signature_b58: str) -> bool:
    try:
        sig = Signature.from_string(signature_b58)
    except Exception:
        return False
    return bool(sig.verify(public_key, message))
