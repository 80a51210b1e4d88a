"""Packing operations into transactions: size, batch limits, compute and fee arithmetic."""

from __future__ import annotations

import struct

from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from gridnode.chain.assembly import (
    MAX_COMPUTE_UNITS,
    MIN_COMPUTE_UNITS,
    PACKET_DATA_SIZE,
    Batch,
    build_transaction,
    compute_limit,
    pack,
    priority_price,
    split,
    tx_size,
)
from gridnode.chain.instructions import PreparedOp
from gridnode.chain.txtypes import TX_TYPES

ORACLE = Pubkey.from_string("DvdtU4quEbuxUY2FckmvcXwTpC9qp4HLJKb1PMLaqAoE")
ORACLE_DATA = Pubkey.find_program_address([b"oracle_data"], ORACLE)[0]


def reading_ix(meter_id: str, signer: Pubkey) -> Instruction:
    """An instruction laid out like submit_meter_reading (discriminator, string, 3 × 8 bytes)."""
    data = bytes([181, 247, 196, 139, 78, 88, 192, 206]) + struct.pack("<I", len(meter_id)) \
        + meter_id.encode() + struct.pack("<QQq", 1200, 300, 1_700_000_000)
    return Instruction(ORACLE, data, [AccountMeta(ORACLE_DATA, False, True),
                                      AccountMeta(signer, True, False)])


def ops(n: int, signer: Keypair, tx_type: str = "meter_reading") -> list[PreparedOp]:
    return [PreparedOp(i, TX_TYPES[tx_type], signer, [reading_ix(f"meter-{i:04d}", signer.pubkey())],
                       [ORACLE_DATA]) for i in range(n)]


def test_pack_fills_transactions_up_to_the_packet_size() -> None:
    gw = Keypair()
    batches = pack(ops(100, gw), gw, max_ops=64)
    assert sum(len(b.ops) for b in batches) == 100
    assert len(batches) > 1
    for b in batches:
        assert tx_size(b, gw) <= PACKET_DATA_SIZE
    # every batch but the last is full: adding the next op would overflow
    first = batches[0]
    nxt = batches[1].ops[0]
    assert tx_size(Batch([*first.ops, nxt]), gw) > PACKET_DATA_SIZE
    assert len(first.ops) >= 15   # one signature and shared accounts: many readings per tx


def test_pack_respects_the_batch_size_and_batching_off() -> None:
    gw = Keypair()
    assert [len(b.ops) for b in pack(ops(10, gw), gw, max_ops=4)] == [4, 4, 2]
    assert [len(b.ops) for b in pack(ops(3, gw), gw, max_ops=1)] == [1, 1, 1]


def test_unbatchable_types_travel_alone() -> None:
    gw = Keypair()
    assert [len(b.ops) for b in pack(ops(3, gw, "order_creation"), gw, max_ops=64)] == [1, 1, 1]


def test_instruction_index_maps_back_to_the_operation() -> None:
    gw = Keypair()
    b = Batch(ops(3, gw))
    assert b.ix_ranges() == [(2, 3), (3, 4), (4, 5)]
    assert b.op_at(3) is b.ops[1]
    assert b.op_at(1) is None   # a compute budget instruction
    halves = split(b)
    assert [len(h.ops) for h in halves] == [1, 2]


def test_signed_transaction_carries_budget_instructions_and_one_signature() -> None:
    gw = Keypair()
    txn = build_transaction(Batch(ops(2, gw)), gw, Hash.default(), 12_345, 7)
    assert len(txn.signatures) == 1
    assert len(txn.message.instructions) == 4


def test_compute_limit_and_priority_price_bounds() -> None:
    assert compute_limit(10_000, 1.1) == 11_000
    assert compute_limit(10, 1.1) == MIN_COMPUTE_UNITS
    assert compute_limit(2_000_000, 1.1) == MAX_COMPUTE_UNITS
    assert compute_limit(10_000, 1.1, boost=2.0) == 22_000
    # per-CU cap
    assert priority_price(50_000, 100_000, 1, 1_000_000, 10_000) == 10_000
    # the whole fee stays within max lamports per tx: 5,000 signature + 100,000 CU × price
    assert priority_price(50_000, 100_000, 1, 10_000, 1_000_000) == 50_000
    assert priority_price(50_000, 100_000, 1, 6_000, 1_000_000) == 10_000
    assert priority_price(50_000, 100_000, 2, 6_000, 1_000_000) == 0


def test_a_distinct_value_travels_once_per_transaction() -> None:
    """grid_minting's `distinct` (the meter): a meter's second mint in one transaction would find
    nothing left and fail the batch, so it goes into another transaction; other meters share."""
    owner = Keypair()
    meters = ["pv-1", "pv-2", "pv-1", "pv-3", "pv-1"]
    prepared = [PreparedOp(i, TX_TYPES["grid_minting"], owner,
                           [reading_ix(f"m{i}", owner.pubkey())], [ORACLE_DATA], distinct=m)
                for i, m in enumerate(meters)]
    batches = pack(prepared, Keypair(), max_ops=8)
    assert sum(len(b.ops) for b in batches) == len(meters)
    for b in batches:
        values = [o.distinct for o in b.ops]
        assert len(values) == len(set(values)), values
    assert len(batches) == 3
