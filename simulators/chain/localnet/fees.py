"""The fee market: compute-budget requests, fees per transaction, block packing, fee history.

Fees follow Solana's rules: 5,000 lamports per signature plus a priority fee of
ceil(compute-unit price (micro-lamports) x compute-unit limit / 1,000,000). Each block has a
compute-unit capacity; the scheduler fills it with the best-paying pending transactions and
skips those below the configured minimum priority fee, so they wait (and expire) as they would on a
congested cluster.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

from solders.message import Message, MessageV0
from solders.pubkey import Pubkey

COMPUTE_BUDGET_PROGRAM = Pubkey.from_string("ComputeBudget111111111111111111111111111111")
LAMPORTS_PER_SIGNATURE = 5_000
DEFAULT_INSTRUCTION_CU = 200_000
MAX_TRANSACTION_CU = 1_400_000
DEFAULT_BLOCK_CU = 48_000_000
FEE_HISTORY_BLOCKS = 150


@dataclass(frozen=True)
class ComputeBudget:
    """What a message asks for: compute-unit limit and price (micro-lamports per CU)."""

    unit_limit: int
    unit_price: int

    @property
    def priority_fee(self) -> int:
        return -(-self.unit_limit * self.unit_price // 1_000_000)


def compute_budget(message: Message | MessageV0) -> ComputeBudget:
    """Read SetComputeUnitLimit / SetComputeUnitPrice from a message (defaults otherwise)."""
    keys = message.account_keys
    limit: int | None = None
    price = 0
    other = 0
    for ix in message.instructions:
        if keys[ix.program_id_index] != COMPUTE_BUDGET_PROGRAM:
            other += 1
            continue
        data = bytes(ix.data)
        if data[:1] == b"\x02" and len(data) >= 5:
            limit = struct.unpack_from("<I", data, 1)[0]
        elif data[:1] == b"\x03" and len(data) >= 9:
            price = struct.unpack_from("<Q", data, 1)[0]
    if limit is None:
        limit = DEFAULT_INSTRUCTION_CU * other
    return ComputeBudget(min(limit, MAX_TRANSACTION_CU), price)


def transaction_fee(message: Message | MessageV0) -> int:
    """Base fee for the signatures plus the priority fee, in lamports."""
    signatures = message.header.num_required_signatures
    return LAMPORTS_PER_SIGNATURE * signatures + compute_budget(message).priority_fee


@dataclass
class BlockFees:
    """What one block charged: the per-CU price of every transaction that landed in it."""

    slot: int
    prices: list[tuple[int, frozenset[str]]]  # (unit price, writable account keys)


class FeeMarket:
    """Per-block capacity, the minimum priority fee, and the recent fee history."""

    def __init__(self, block_cu_limit: int = DEFAULT_BLOCK_CU, min_priority_fee: int = 0) -> None:
        self.block_cu_limit = block_cu_limit
        self.min_priority_fee = min_priority_fee
        self.history: deque[BlockFees] = deque(maxlen=FEE_HISTORY_BLOCKS)

    def admits(self, budget: ComputeBudget) -> bool:
        return budget.unit_price >= self.min_priority_fee

    def record(self, block: BlockFees) -> None:
        self.history.append(block)

    def recent(self, addresses: list[str] | None = None) -> list[dict[str, int]]:
        """getRecentPrioritizationFees: per recent block, the lowest price that landed (touching
        the given accounts, when given); an empty block reports the minimum the node admits."""
        wanted = set(addresses or [])
        out = []
        for block in self.history:
            prices = [p for p, keys in block.prices if not wanted or wanted & keys]
            fee = min(prices) if prices else self.min_priority_fee
            out.append({"slot": block.slot, "prioritizationFee": fee})
        return out
