"""What a transaction error means: which instruction failed, its Anchor name, what to do next.

Errors arrive as the RPC's JSON (`{"InstructionError": [2, {"Custom": 6001}]}`, `"AlreadyProcessed"`,
...). The classification drives the outbox:
    program      a deterministic program error at one instruction: that operation failed
    compute      the instruction ran out of compute units: raise the limit and re-sign
    blockhash    the blockhash is unknown to the node: new blockhash
    transient    account in use, would exceed block limits, ...: simply try again
    other        anything else: re-validate
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

COMPUTE_ERRORS = {"ComputationalBudgetExceeded", "ProgramFailedToComplete"}
TRANSIENT_TX_ERRORS = {"AccountInUse", "WouldExceedMaxBlockCostLimit", "WouldExceedMaxAccountCostLimit",
                       "WouldExceedAccountDataBlockLimit", "TooManyAccountLocks",
                       "WouldExceedMaxVoteCostLimit", "ClusterMaintenance"}
BLOCKHASH_ERRORS = {"BlockhashNotFound"}


class FailureKind(StrEnum):
    """What a transaction error means for the outbox (see the module docstring)."""

    PROGRAM = "program"
    COMPUTE = "compute"
    BLOCKHASH = "blockhash"
    TRANSIENT = "transient"
    OTHER = "other"


@dataclass(frozen=True)
class TxFailure:
    kind: FailureKind
    ix_index: int | None             # instruction index in the transaction, when known
    code: int | None                 # custom program error code
    name: str                        # decoded Anchor name, or the runtime's error name
    raw: Any

    def describe(self) -> str:
        where = f" at instruction {self.ix_index}" if self.ix_index is not None else ""
        code = f" ({self.code})" if self.code is not None else ""
        return f"{self.name}{code}{where}"


def _name_of(err: Any) -> str:
    if isinstance(err, str):
        return err
    if isinstance(err, dict) and err:
        return str(next(iter(err)))
    return str(err)


# Anchor's error line: "AnchorError [caused by account: a. |thrown in f:l. ]occurred. Error Code:
# Name. Error Number: N. ..." (the reference programs write "AnchorError occurred. Error Code: ...")
_ANCHOR_LINE = re.compile(r"AnchorError\b.*?Error Code: (\w+)\. Error Number: (\d+)\.")


def name_in_logs(logs: Sequence[str] | None, code: int) -> str | None:
    """The error name the raising program logged for `code`: right even when the error came
    from a program it invoked (a registry error surfacing from energy_token's CPI), where the
    top-level program's IDL would name another error or none."""
    found = None
    for line in logs or ():
        m = _ANCHOR_LINE.search(line)
        if m and int(m.group(2)) == code:
            found = m.group(1)
    return found


def classify(err: Any, program_of_ix: dict[int, Any] | None = None,
             idls_by_program: dict[str, Any] | None = None,
             logs: Sequence[str] | None = None) -> TxFailure:
    """Classify a transaction error; `program_of_ix` maps ix index -> program id (str); `logs`
    (a simulation's, when at hand) name errors raised inside a CPI."""
    if isinstance(err, dict) and "InstructionError" in err:
        index, inner = err["InstructionError"]
        index = int(index)
        inner_name = _name_of(inner)
        if inner_name in COMPUTE_ERRORS:
            return TxFailure(FailureKind.COMPUTE, index, None, inner_name, err)
        code: int | None = None
        if isinstance(inner, dict) and "Custom" in inner:
            code = int(inner["Custom"])
        name = inner_name
        if code is not None:
            name = f"Custom({code})"
            program = (program_of_ix or {}).get(index)
            idl = (idls_by_program or {}).get(str(program)) if program is not None else None
            decoded = name_in_logs(logs, code) or (
                idl.error_name(code) if idl is not None else None)
            if decoded:
                name = decoded
            elif code == 0:   # the System Program's error 0, surfacing from an `init` CPI
                name = "AccountAlreadyInUse"
        return TxFailure(FailureKind.PROGRAM, index, code, name, err)
    name = _name_of(err)
    if name in BLOCKHASH_ERRORS:
        return TxFailure(FailureKind.BLOCKHASH, None, None, name, err)
    if name in TRANSIENT_TX_ERRORS:
        return TxFailure(FailureKind.TRANSIENT, None, None, name, err)
    return TxFailure(FailureKind.OTHER, None, None, name, err)


def is_already_processed(message: str) -> bool:
    m = message.lower()
    return "already been processed" in m or "alreadyprocessed" in m or "already processed" in m


def is_blockhash_not_found(message: str) -> bool:
    m = message.lower()
    return "blockhash not found" in m or "blockhashnotfound" in m
