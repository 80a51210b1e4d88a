"""JSON shapes of the Solana RPC: accounts, transactions, meta, token amounts, error texts."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from typing import Any

from solders.account import Account
from solders.litesvm import LiteSVM
from solders.message import Message, MessageV0
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction
from solders.transaction_metadata import FailedTransactionMetadata, TransactionMetadata

TOKEN_PROGRAM = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
TOKEN_2022_PROGRAM = Pubkey.from_string("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb")
TOKEN_PROGRAMS = (TOKEN_PROGRAM, TOKEN_2022_PROGRAM)
TOKEN_ACCOUNT_LEN = 165
MINT_LEN = 82
RENT_EPOCH_EXEMPT = 18446744073709551615


_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58encode(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = _B58[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def b58decode(text: str) -> bytes:
    n = 0
    for ch in text:
        i = _B58.find(ch)
        if i < 0:
            raise ValueError(f"invalid base58 character {ch!r}")
        n = n * 58 + i
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return b"\0" * (len(text) - len(text.lstrip("1"))) + body


class EncodingError(ValueError):
    """A request asked for an encoding or slice that cannot be served."""


# -- accounts ---------------------------------------------------------------------------------

def account_data(data: bytes, encoding: str, owner: Pubkey | None = None,
                 data_slice: dict[str, int] | None = None, svm: LiteSVM | None = None) -> Any:
    if data_slice is not None:
        offset, length = int(data_slice.get("offset", 0)), int(data_slice.get("length", 0))
        data = data[offset: offset + length]
    if encoding == "jsonParsed":
        parsed = parse_token_data(data, owner, svm) if data_slice is None else None
        if parsed is not None:
            return parsed
        encoding = "base64"
    if encoding == "base64":
        return [base64.b64encode(data).decode(), "base64"]
    if encoding == "base58":
        if len(data) > 128:
            raise EncodingError("Encoded binary (base 58) data should be less than 128 bytes, "
                                "please use Base64 encoding.")
        return b58encode(data)
    if encoding == "binary":
        return b58encode(data)
    raise EncodingError(f"unsupported encoding: {encoding}")


def ui_account(acc: Account, encoding: str = "base58", data_slice: dict[str, int] | None = None,
               svm: LiteSVM | None = None) -> dict[str, Any]:
    data = bytes(acc.data)
    return {
        "data": account_data(data, encoding, acc.owner, data_slice, svm),
        "executable": acc.executable,
        "lamports": acc.lamports,
        "owner": str(acc.owner),
        "rentEpoch": acc.rent_epoch,
        "space": len(data),
    }


# -- tokens -------------------------------------------------------------------------------------

def ui_amount_string(amount: int, decimals: int) -> str:
    if decimals == 0:
        return str(amount)
    text = f"{Decimal(amount).scaleb(-decimals):.{decimals}f}"
    return text.rstrip("0").rstrip(".")


def token_amount(amount: int, decimals: int) -> dict[str, Any]:
    return {"amount": str(amount), "decimals": decimals,
            "uiAmount": amount / 10**decimals, "uiAmountString": ui_amount_string(amount,
                                                                                     decimals)}


def token_account_fields(acc: Account | None) -> tuple[Pubkey, Pubkey, int, int] | None:
    """(mint, owner, amount, state) of an SPL token account, or None if it is not one."""
    if acc is None or acc.owner not in TOKEN_PROGRAMS or len(acc.data) < TOKEN_ACCOUNT_LEN:
        return None
    data = bytes(acc.data)
    if len(data) > TOKEN_ACCOUNT_LEN and data[TOKEN_ACCOUNT_LEN] != 2:
        return None
    state = data[108]
    if state == 0:
        return None
    return (Pubkey.from_bytes(data[0:32]), Pubkey.from_bytes(data[32:64]),
            int.from_bytes(data[64:72], "little"), state)


def mint_decimals(mint: Account | None) -> int | None:
    if mint is None or mint.owner not in TOKEN_PROGRAMS or len(mint.data) < MINT_LEN:
        return None
    data = bytes(mint.data)
    return data[44] if data[45] else None


def parse_token_data(data: bytes, owner: Pubkey | None, svm: LiteSVM | None) -> Any:
    """jsonParsed form of SPL token accounts and mints; None when the data is something else."""
    if owner not in TOKEN_PROGRAMS or svm is None:
        return None
    program = "spl-token" if owner == TOKEN_PROGRAM else "spl-token-2022"
    if len(data) >= TOKEN_ACCOUNT_LEN:
        fields = token_account_fields(Account(1, data, owner))
        if fields is None:
            return None
        mint, holder, amount, state = fields
        decimals = mint_decimals(svm.get_account(mint))
        if decimals is None:
            return None
        is_native = int.from_bytes(data[109:113], "little") == 1
        info = {"isNative": is_native, "mint": str(mint), "owner": str(holder),
                "state": "frozen" if state == 2 else "initialized",
                "tokenAmount": token_amount(amount, decimals)}
        return {"parsed": {"info": info, "type": "account"}, "program": program,
                "space": len(data)}
    if len(data) == MINT_LEN and data[45]:
        has_auth = int.from_bytes(data[0:4], "little") == 1
        has_freeze = int.from_bytes(data[46:50], "little") == 1
        info = {"decimals": data[44], "freezeAuthority": str(Pubkey.from_bytes(data[50:82]))
                if has_freeze else None, "isInitialized": True,
                "mintAuthority": str(Pubkey.from_bytes(data[4:36])) if has_auth else None,
                "supply": str(int.from_bytes(data[36:44], "little"))}
        return {"parsed": {"info": info, "type": "mint"}, "program": program,
                "space": len(data)}
    return None


def token_balances(keys: list[Pubkey], accounts: list[Account | None],
                   svm: LiteSVM) -> list[dict[str, Any]]:
    out = []
    for i, acc in enumerate(accounts):
        fields = token_account_fields(acc)
        if fields is None or acc is None:
            continue
        mint, owner, amount, _ = fields
        decimals = mint_decimals(svm.get_account(mint))
        if decimals is None:
            continue
        out.append({"accountIndex": i, "mint": str(mint), "owner": str(owner),
                    "programId": str(acc.owner), "uiTokenAmount": token_amount(amount, decimals)})
    return out


# -- transactions -----------------------------------------------------------------------------

def transaction_error(result: FailedTransactionMetadata) -> Any:
    """The error of a failed transaction as the RPC shows it, e.g.
    {"InstructionError": [0, {"Custom": 6001}]} or "BlockhashNotFound"."""
    return json.loads(result.to_json())["err"]


_TX_ERROR_TEXT = {
    "AccountInUse": "Account in use",
    "AccountLoadedTwice": "Account loaded twice",
    "AccountNotFound": "Attempt to debit an account but found no record of a prior credit.",
    "ProgramAccountNotFound": "Attempt to load a program that does not exist",
    "InsufficientFundsForFee": "Insufficient funds for fee",
    "InvalidAccountForFee": "This account may not be used to pay transaction fees",
    "AlreadyProcessed": "This transaction has already been processed",
    "BlockhashNotFound": "Blockhash not found",
    "CallChainTooDeep": "Loader call chain is too deep",
    "MissingSignatureForFee": "Transaction requires a fee but has no signature present",
    "InvalidAccountIndex": "Transaction contains an invalid account reference",
    "SignatureFailure": "Transaction did not pass signature verification",
    "InvalidProgramForExecution": "This program may not be used for executing instructions",
    "SanitizeFailure": "Transaction failed to sanitize accounts offsets correctly",
    "ClusterMaintenance": "Transactions are currently disabled due to cluster maintenance",
}

_IX_ERROR_TEXT = {
    "GenericError": "generic instruction error",
    "InvalidArgument": "invalid program argument",
    "InvalidInstructionData": "invalid instruction data",
    "InvalidAccountData": "invalid account data for instruction",
    "AccountDataTooSmall": "account data too small for instruction",
    "InsufficientFunds": "insufficient funds for instruction",
    "IncorrectProgramId": "incorrect program id for instruction",
    "MissingRequiredSignature": "missing required signature for instruction",
    "AccountAlreadyInitialized": "instruction requires an uninitialized account",
    "UninitializedAccount": "instruction requires an initialized account",
    "ProgramFailedToComplete": "Program failed to complete",
    "ComputationalBudgetExceeded": "Computational budget exceeded",
    "PrivilegeEscalation": "Cross-program invocation with unauthorized signer or writable account",
    "AccountNotExecutable": "instruction expected an executable account",
    "InvalidSeeds": "Provided seeds do not result in a valid address",
    "ProgramFailedToCompile": "Program failed to compile",
}


def error_text(err: Any) -> str:
    """The human text Agave prints for a TransactionError (used in -32002 messages)."""
    if isinstance(err, str):
        return _TX_ERROR_TEXT.get(err, err)
    name, value = next(iter(err.items()))
    if name == "InstructionError":
        index, ix_err = value
        if isinstance(ix_err, dict) and "Custom" in ix_err:
            text = f"custom program error: {ix_err['Custom']:#x}"
        elif isinstance(ix_err, dict):
            text = str(next(iter(ix_err.values())))
        else:
            text = _IX_ERROR_TEXT.get(ix_err, ix_err)
        return f"Error processing Instruction {index}: {text}"
    if name == "InsufficientFundsForRent":
        return (f"Transaction results in an account ({value['account_index']}) with insufficient "
                "funds for rent")
    return f"{name}: {value}"


def inner_instructions(meta: TransactionMetadata) -> list[dict[str, Any]]:
    out = []
    for index, inner in enumerate(meta.inner_instructions()):
        if not inner:
            continue
        ixs = []
        for ii in inner:
            ix = ii.instruction()
            raw = json.loads(ii.to_json())
            height = raw.get("stack_height") if isinstance(raw, dict) else None
            ixs.append({"programIdIndex": ix.program_id_index, "accounts": list(ix.accounts),
                        "data": b58encode(bytes(ix.data)), "stackHeight": height})
        out.append({"index": index, "instructions": ixs})
    return out


def return_data(meta: TransactionMetadata) -> dict[str, Any] | None:
    rd = meta.return_data()
    data = bytes(rd.data)
    if not data:
        return None
    return {"programId": str(rd.program_id), "data": [base64.b64encode(data).decode(), "base64"]}


def transaction_meta(err: Any, fee: int, meta: TransactionMetadata, keys: list[Pubkey],
                     pre: list[Account | None], post: list[Account | None], svm: LiteSVM,
                     writable_loaded: list[Pubkey], readonly_loaded: list[Pubkey]
                     ) -> dict[str, Any]:
    return {
        "err": err,
        "status": {"Ok": None} if err is None else {"Err": err},
        "fee": fee,
        "preBalances": [a.lamports if a else 0 for a in pre],
        "postBalances": [a.lamports if a else 0 for a in post],
        "innerInstructions": inner_instructions(meta),
        "logMessages": list(meta.logs()),
        "preTokenBalances": token_balances(keys, pre, svm),
        "postTokenBalances": token_balances(keys, post, svm),
        "rewards": [],
        "loadedAddresses": {"writable": [str(k) for k in writable_loaded],
                            "readonly": [str(k) for k in readonly_loaded]},
        "returnData": return_data(meta),
        "computeUnitsConsumed": meta.compute_units_consumed(),
    }


def static_writable(msg: Message | MessageV0) -> list[bool]:
    """Which of a message's static account keys it locks for writing (from its header)."""
    h = msg.header
    n = len(msg.account_keys)
    signed = h.num_required_signatures
    return [i < signed - h.num_readonly_signed_accounts if i < signed
            else i < n - h.num_readonly_unsigned_accounts for i in range(n)]


def ui_message(msg: Message | MessageV0) -> dict[str, Any]:
    header = msg.header
    out: dict[str, Any] = {
        "accountKeys": [str(k) for k in msg.account_keys],
        "header": {"numRequiredSignatures": header.num_required_signatures,
                   "numReadonlySignedAccounts": header.num_readonly_signed_accounts,
                   "numReadonlyUnsignedAccounts": header.num_readonly_unsigned_accounts},
        "recentBlockhash": str(msg.recent_blockhash),
        "instructions": [{"programIdIndex": ix.program_id_index, "accounts": list(ix.accounts),
                          "data": b58encode(bytes(ix.data)),
                          "stackHeight": None} for ix in msg.instructions],
    }
    if isinstance(msg, MessageV0):
        out["addressTableLookups"] = [
            {"accountKey": str(lk.account_key), "writableIndexes": list(lk.writable_indexes),
             "readonlyIndexes": list(lk.readonly_indexes)} for lk in msg.address_table_lookups]
    return out


def parsed_message(msg: Message | MessageV0, loaded: dict[str, list[str]]) -> dict[str, Any]:
    """The jsonParsed message: keys with their roles, instructions partially decoded."""
    static = [str(k) for k in msg.account_keys]
    keys = static + loaded["writable"] + loaded["readonly"]
    writable = static_writable(msg) + [True] * len(loaded["writable"]) + \
        [False] * len(loaded["readonly"])
    signers = msg.header.num_required_signatures
    out: dict[str, Any] = {
        "accountKeys": [{"pubkey": k, "writable": writable[i], "signer": i < signers,
                         "source": "transaction" if i < len(static) else "lookupTable"}
                        for i, k in enumerate(keys)],
        "recentBlockhash": str(msg.recent_blockhash),
        "instructions": [partially_decoded(ix.program_id_index, bytes(ix.accounts),
                                           bytes(ix.data), keys, None)
                         for ix in msg.instructions],
    }
    if isinstance(msg, MessageV0):
        out["addressTableLookups"] = ui_message(msg)["addressTableLookups"]
    return out


def partially_decoded(program_index: int, accounts: bytes, data: bytes, keys: list[str],
                      stack_height: int | None) -> dict[str, Any]:
    return {"programId": keys[program_index], "accounts": [keys[i] for i in accounts],
            "data": b58encode(data), "stackHeight": stack_height}


def parsed_meta(meta: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """jsonParsed meta: inner instructions partially decoded like the message's."""
    inner = [{"index": group["index"], "instructions": [
        partially_decoded(ix["programIdIndex"], bytes(ix["accounts"]), b58decode(ix["data"]),
                          keys, ix["stackHeight"]) for ix in group["instructions"]]}
             for group in meta["innerInstructions"]]
    return {**meta, "innerInstructions": inner}


def ui_transaction(tx: VersionedTransaction, encoding: str,
                   loaded: dict[str, list[str]] | None = None) -> Any:
    if encoding == "jsonParsed":
        return {"signatures": [str(s) for s in tx.signatures],
                "message": parsed_message(tx.message, loaded or {"writable": [],
                                                                 "readonly": []})}
    if encoding == "base64":
        return [base64.b64encode(bytes(tx)).decode(), "base64"]
    if encoding == "base58":
        return [b58encode(bytes(tx)), "base58"]
    if encoding == "json":
        return {"signatures": [str(s) for s in tx.signatures], "message": ui_message(tx.message)}
    raise EncodingError(f"unsupported encoding: {encoding}")


def transaction_version(tx: VersionedTransaction) -> str | int:
    return 0 if isinstance(tx.message, MessageV0) else "legacy"


def decode_transaction(data: str, encoding: str) -> VersionedTransaction:
    """Decode a wire transaction as sendTransaction/simulateTransaction receive it."""
    try:
        raw = base64.b64decode(data, validate=True) if encoding == "base64" else \
            b58decode(data)
    except ValueError as exc:
        raise EncodingError(f"invalid {encoding} encoding: {exc}") from exc
    try:
        return VersionedTransaction.from_bytes(raw)
    except Exception as exc:
        raise EncodingError("failed to deserialize solana_transaction::versioned::"
                            f"VersionedTransaction: {exc}") from exc
