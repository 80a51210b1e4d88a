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


def test_an_error_from_a_cpi_is_named_by_the_program_that_raised_it() -> None:
    """energy_token's mint_grid_tokens fails with the registry's 6006 (NoUnsettledBalance): the
    energy_token IDL has no 6006, the trading IDL a different one; the log line names it."""
    from gridnode.chain.idl import load_idls
    from tests.e2e.harness import REPO
    idls = {str(p.program_id): p for p in load_idls(REPO / "idl").values()}
    token = str(load_idls(REPO / "idl")["energy_token"].program_id)
    err = {"InstructionError": [2, {"Custom": 6006}]}
    logs = ["Program Xyz invoke [1]", "Program log: Instruction: MintGridTokens",
            "Program log: AnchorError occurred. Error Code: NoUnsettledBalance. Error Number: "
            "6006. Error Message: No unsettled balance.", "Program Xyz failed: custom program error: 0x1776"]
    assert classify(err, {2: token}, idls).name == "Custom(6006)"
    f = classify(err, {2: token}, idls, logs)
    assert (f.name, f.code, f.kind) == ("NoUnsettledBalance", 6006, "program")
    # Anchor's other spellings of the line; a line for another number is not taken
    thrown = ["Program log: AnchorError thrown in programs/x/src/lib.rs:10. Error Code: "
              "InvalidMeter. Error Number: 6001. Error Message: m."]
    assert classify({"InstructionError": [0, {"Custom": 6001}]}, {}, {}, thrown).name \
        == "InvalidMeter"
    assert classify({"InstructionError": [0, {"Custom": 6002}]}, {}, {}, thrown).name \
        == "Custom(6002)"
