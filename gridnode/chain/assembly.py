"""Transactions from prepared operations: batching, compute budget, priority fee, signing.

A transaction is [SetComputeUnitLimit, SetComputeUnitPrice, op1's instructions, op2's, ...].
Operations are packed greedily while the signed transaction stays within 1232 bytes and the batch
size limit; the compute-unit limit is set from a simulation of the whole batch times a margin,
and a batch whose need exceeds the per-transaction maximum is split.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from solders.compute_budget import set_compute_unit_limit, set_compute_unit_price
from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.transaction import VersionedTransaction

from gridnode.chain.instructions import PreparedOp

PACKET_DATA_SIZE = 1232
MAX_COMPUTE_UNITS = 1_400_000
MIN_COMPUTE_UNITS = 1_000
BUDGET_IXS = 2            # the two compute budget instructions in front of every transaction
SIGNATURE_FEE_LAMPORTS = 5_000


@dataclass
class Batch:
    """Operations that travel in one transaction, with each one's first instruction index."""

    ops: list[PreparedOp]

    def ix_ranges(self) -> list[tuple[int, int]]:
        """(first, last+1) instruction index of each op in the transaction."""
        out, i = [], BUDGET_IXS
        for op in self.ops:
            out.append((i, i + len(op.instructions)))
            i += len(op.instructions)
        return out

    def op_at(self, ix_index: int) -> PreparedOp | None:
        for op, (a, b) in zip(self.ops, self.ix_ranges(), strict=True):
            if a <= ix_index < b:
                return op
        return None

    def signers(self, fee_payer: Keypair) -> list[Keypair]:
        out = {str(fee_payer.pubkey()): fee_payer}
        for op in self.ops:
            for kp in (op.signer, *op.cosigners):
                out.setdefault(str(kp.pubkey()), kp)
        return list(out.values())

    def instructions(self) -> list[Instruction]:
        return [ix for op in self.ops for ix in op.instructions]


def build_transaction(batch: Batch, fee_payer: Keypair, blockhash: Hash, cu_limit: int,
                      cu_price: int) -> VersionedTransaction:
    ixs = [set_compute_unit_limit(cu_limit), set_compute_unit_price(cu_price),
           *batch.instructions()]
    msg = Message.new_with_blockhash(ixs, fee_payer.pubkey(), blockhash)
    return VersionedTransaction(msg, batch.signers(fee_payer))


def tx_size(batch: Batch, fee_payer: Keypair) -> int:
    return len(bytes(build_transaction(batch, fee_payer, Hash.default(), MAX_COMPUTE_UNITS, 1)))


def pack(ops: Iterable[PreparedOp], fee_payer: Keypair, max_ops: int) -> list[Batch]:
    """Group operations into transactions that fit 1232 bytes and `max_ops` operations.

    Operations of a tx type that is not batchable travel alone; an operation too large even
    alone still gets its own batch (simulation or sending will then say what is wrong).
    """
    batches: list[Batch] = []
    open_batches: dict[str, Batch] = {}
    for op in ops:
        if not op.tx_type.batchable or max_ops <= 1:
            batches.append(Batch([op]))
            continue
        key = ":".join([op.tx_type.name, *(str(k.pubkey()) for k in (op.signer, *op.cosigners))])
        cur = open_batches.get(key)
        clash = cur is not None and op.distinct is not None and any(
            o.distinct == op.distinct for o in cur.ops)   # the row's `distinct`: once per tx
        if cur is not None and len(cur.ops) < max_ops and not clash:
            trial = Batch([*cur.ops, op])
            if tx_size(trial, fee_payer) <= PACKET_DATA_SIZE:
                cur.ops.append(op)
                continue
        cur = Batch([op])
        batches.append(cur)
        open_batches[key] = cur
    return batches


def split(batch: Batch) -> list[Batch]:
    half = max(1, len(batch.ops) // 2)
    return [Batch(batch.ops[:half]), Batch(batch.ops[half:])]


def compute_limit(units_consumed: int, margin: float, boost: float = 1.0) -> int:
    """Simulated units × margin (× boost after an on-chain compute failure), within bounds."""
    want = math.ceil(units_consumed * margin * boost)
    return max(MIN_COMPUTE_UNITS, min(MAX_COMPUTE_UNITS, want))


def priority_price(estimate: int, cu_limit: int, signatures: int, max_lamports_per_tx: int,
                   cap: int) -> int:
    """The fee estimate, capped per CU and so that the whole fee stays within the per-tx cap."""
    budget = max(0, max_lamports_per_tx - SIGNATURE_FEE_LAMPORTS * signatures)
    by_total = budget * 1_000_000 // max(1, cu_limit)
    return max(0, min(estimate, cap, by_total))


def program_ids_of(serialized: bytes) -> list[str]:
    """Program id of each instruction of a stored transaction (no RPC needed)."""
    msg = VersionedTransaction.from_bytes(serialized).message
    keys = msg.account_keys
    return [str(keys[ix.program_id_index]) for ix in msg.instructions]


def unique_writable(batches: Sequence[Batch]) -> list:
    return list(dict.fromkeys(pk for b in batches for op in b.ops for pk in op.writable))
