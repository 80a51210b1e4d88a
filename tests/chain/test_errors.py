"""Transaction errors classified for the outbox."""

from __future__ import annotations

from gridnode.chain.errors import classify, is_already_processed, is_blockhash_not_found


def test_program_error_is_attributed_to_its_instruction() -> None:
    f = classify({"InstructionError": [3, {"Custom": 6001}]})
    assert (f.kind, f.ix_index, f.code) == ("program", 3, 6001)
    assert "at instruction 3" in f.describe()


def test_compute_and_transient_and_blockhash() -> None:
    assert classify({"InstructionError": [2, "ComputationalBudgetExceeded"]}).kind == "compute"
    assert classify("AccountInUse").kind == "transient"
    assert classify("BlockhashNotFound").kind == "blockhash"
    assert classify("InsufficientFundsForFee").kind == "other"


def test_system_program_already_in_use() -> None:
    f = classify({"InstructionError": [2, {"Custom": 0}]},
                 {2: "11111111111111111111111111111111"}, {})
    assert f.name == "AccountAlreadyInUse"


def test_send_messages() -> None:
    assert is_already_processed("Transaction simulation failed: This transaction has already been processed")
    assert is_already_processed("AlreadyProcessed")
    assert not is_already_processed("Blockhash not found")
    assert is_blockhash_not_found("Transaction simulation failed: Blockhash not found")
