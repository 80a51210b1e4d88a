"""Tokenized generation: after a finalized interval with net generation, one grid_minting
operation (energy_token mint_grid_tokens, which settles the meter's registry balance by CPI),
signed by the meter's owner. Its idempotency key is (meter, interval end)."""

from __future__ import annotations

from typing import Any

from gridnode.chain.txtypes import new_operation, tx_type
from gridnode.store.operations import NewOperation


def net_generation(reading: dict[str, Any]) -> int:
    """Wh produced beyond what was consumed in the interval (0 when none)."""
    return max(0, int(reading["energy_produced_wh"]) - int(reading["energy_consumed_wh"]))


def mint_operation(meter_id: str, owner: str, token_account: str,
                   interval_end: int) -> NewOperation:
    payload = tx_type("grid_minting").parse({
        "meter_id": meter_id, "owner": owner, "token_account": token_account,
        "interval_end": interval_end})
    return new_operation(payload)
