"""The JSON-RPC 2.0 methods of a Solana node, served from the ledger through a view.

A view is the ledger as one port sees it: the main port at the tip, the lagging port N slots
behind. Every read resolves its commitment to a slot of that view. Shapes, codes and messages
follow the Solana RPC documentation and Agave's error texts.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from solders.account import Account
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import Message, MessageV0, from_bytes_versioned
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction
from solders.transaction_metadata import FailedTransactionMetadata

from simulators.chain.localnet import encoding
from simulators.chain.localnet.encoding import EncodingError
from simulators.chain.localnet.faults import PortFaults
from simulators.chain.localnet.fees import transaction_fee
from simulators.chain.localnet.ledger import (
    FINALIZED_DEPTH,
    MAX_PROCESSING_AGE,
    SIMULATION_MAX_AGE,
    STATUS_CACHE_SLOTS,
    Ledger,
)
from simulators.chain.svm import execute

API_VERSION = "2.1.21"
FEATURE_SET = 1069218547
HEALTH_SLOT_DISTANCE = 128

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
PREFLIGHT_FAILURE = -32002
SIGNATURE_VERIFICATION_FAILURE = -32003
NODE_UNHEALTHY = -32005
UNSUPPORTED_TRANSACTION_VERSION = -32015
MIN_CONTEXT_SLOT_NOT_REACHED = -32016

_COMMITMENT_ALIASES = {"recent": "processed", "single": "confirmed", "singleGossip": "confirmed",
                       "max": "finalized", "root": "finalized"}


class RpcError(Exception):
    """A JSON-RPC error object: code, message and optional data."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data

    def to_json(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err


def invalid_params(text: str) -> RpcError:
    return RpcError(INVALID_PARAMS, text)


def node_unhealthy(behind: int | None) -> RpcError:
    message = "Node is unhealthy" if behind is None else f"Node is behind by {behind} slots"
    return RpcError(NODE_UNHEALTHY, message, {"numSlotsBehind": behind})


def _pubkey(value: Any) -> Pubkey:
    if not isinstance(value, str):
        raise invalid_params("Invalid params: invalid type: expected a base-58 public key string")
    try:
        return Pubkey.from_string(value)
    except ValueError as exc:
        raise invalid_params(f"Invalid param: {exc}") from exc


def _signature(value: Any) -> Signature:
    if not isinstance(value, str):
        raise invalid_params("Invalid params: invalid type: expected a base-58 signature string")
    try:
        return Signature.from_string(value)
    except ValueError as exc:
        raise invalid_params(f"Invalid param: {exc}") from exc


def _param(params: list[Any], index: int, default: Any = None) -> Any:
    return params[index] if len(params) > index and params[index] is not None else default


def _config(params: list[Any], index: int) -> dict[str, Any]:
    cfg = _param(params, index, {})
    if not isinstance(cfg, dict):
        raise invalid_params("Invalid params: invalid type: expected a configuration object")
    return cfg


@dataclass
class View:
    """The ledger as one port serves it: `lag()` slots behind the tip."""

    ledger: Ledger
    lag: Callable[[], int]
    health_slot_distance: int = HEALTH_SLOT_DISTANCE

    @property
    def tip(self) -> int:
        return max(0, self.ledger.slot - self.lag())

    def slot(self, cfg: dict[str, Any], default: str = "finalized") -> int:
        commitment = cfg.get("commitment") or default
        commitment = _COMMITMENT_ALIASES.get(commitment, commitment)
        if commitment not in ("processed", "confirmed", "finalized"):
            raise invalid_params(f"Invalid params: unknown variant `{commitment}`, expected one "
                                 "of `processed`, `confirmed`, `finalized`")
        slot = self.ledger.commitment_slot(self.tip, commitment)
        min_slot = cfg.get("minContextSlot")
        if min_slot is not None and slot < int(min_slot):
            raise RpcError(MIN_CONTEXT_SLOT_NOT_REACHED, "Minimum context slot has not been reached",
                           {"contextSlot": slot})
        return slot

    def state_slot(self, slot: int) -> int | None:
        """Slot to read account state at; None means the latest state."""
        return None if slot >= self.ledger.slot else slot

    def account(self, key: Pubkey, slot: int) -> Account | None:
        acc = self.ledger.account(key, self.state_slot(slot))
        return acc if acc is not None and acc.lamports > 0 else None

    def health(self) -> int | None:
        """Slots behind, when more than the health distance (None: healthy)."""
        behind = self.lag()
        return behind if behind > self.health_slot_distance else None


def context(slot: int) -> dict[str, Any]:
    return {"slot": slot, "apiVersion": API_VERSION}


def with_context(slot: int, value: Any) -> dict[str, Any]:
    return {"context": context(slot), "value": value}


class RpcMethods:
    """Handlers by JSON-RPC method name; each takes the params list and returns the result."""

    def __init__(self, view: View, faults: PortFaults, faucet: Keypair) -> None:
        self.view = view
        self.ledger = view.ledger
        self.faults = faults
        self.faucet = faucet
        self.methods: dict[str, Callable[[list[Any]], Any]] = {
            "getHealth": self.get_health,
            "getVersion": self.get_version,
            "getSlot": self.get_slot,
            "getBlockHeight": self.get_block_height,
            "getEpochInfo": self.get_epoch_info,
            "getGenesisHash": self.get_genesis_hash,
            "getLatestBlockhash": self.get_latest_blockhash,
            "isBlockhashValid": self.is_blockhash_valid,
            "getFeeForMessage": self.get_fee_for_message,
            "getMinimumBalanceForRentExemption": self.get_minimum_balance_for_rent_exemption,
            "getBalance": self.get_balance,
            "getAccountInfo": self.get_account_info,
            "getMultipleAccounts": self.get_multiple_accounts,
            "getProgramAccounts": self.get_program_accounts,
            "getTokenAccountBalance": self.get_token_account_balance,
            "getTokenAccountsByOwner": self.get_token_accounts_by_owner,
            "requestAirdrop": self.request_airdrop,
            "sendTransaction": self.send_transaction,
            "simulateTransaction": self.simulate_transaction,
            "getSignatureStatuses": self.get_signature_statuses,
            "getTransaction": self.get_transaction,
            "getSignaturesForAddress": self.get_signatures_for_address,
            "getRecentPrioritizationFees": self.get_recent_prioritization_fees,
        }

    def call(self, method: str, params: list[Any]) -> Any:
        handler = self.methods.get(method)
        if handler is None:
            raise RpcError(METHOD_NOT_FOUND, "Method not found")
        try:
            return handler(params)
        except EncodingError as exc:
            raise invalid_params(str(exc)) from exc
        except (TypeError, ValueError, KeyError) as exc:
            raise invalid_params(f"Invalid params: {exc}") from exc

    # -- cluster ----------------------------------------------------------------------------

    def get_health(self, params: list[Any]) -> str:
        behind = self.view.health()
        if behind is not None:
            raise node_unhealthy(behind)
        return "ok"

    def get_version(self, params: list[Any]) -> dict[str, Any]:
        return {"solana-core": API_VERSION, "feature-set": FEATURE_SET}

    def get_slot(self, params: list[Any]) -> int:
        return self.view.slot(_config(params, 0))

    def get_block_height(self, params: list[Any]) -> int:
        return self.ledger.block_at(self.view.slot(_config(params, 0))).height

    def get_epoch_info(self, params: list[Any]) -> dict[str, Any]:
        slot = self.view.slot(_config(params, 0))
        schedule = self.ledger.svm.get_epoch_schedule()
        epoch, index = schedule.get_epoch_and_slot_index(slot)
        return {"absoluteSlot": slot, "blockHeight": self.ledger.block_at(slot).height,
                "epoch": epoch, "slotIndex": index,
                "slotsInEpoch": schedule.get_slots_in_epoch(epoch),
                "transactionCount": self.ledger.transaction_count}

    def get_genesis_hash(self, params: list[Any]) -> str:
        return self.ledger.genesis_hash

    # -- blockhashes and fees ---------------------------------------------------------------

    def get_latest_blockhash(self, params: list[Any]) -> dict[str, Any]:
        slot = self.view.slot(_config(params, 0))
        block = self.ledger.block_at(slot)
        return with_context(slot, {"blockhash": block.blockhash,
                                   "lastValidBlockHeight": block.height + MAX_PROCESSING_AGE})

    def is_blockhash_valid(self, params: list[Any]) -> dict[str, Any]:
        blockhash = _param(params, 0)
        if not isinstance(blockhash, str):
            raise invalid_params("Invalid params: invalid type: expected a blockhash string")
        try:
            Hash.from_string(blockhash)
        except ValueError as exc:
            raise invalid_params(f"Invalid param: {exc}") from exc
        slot = self.view.slot(_config(params, 1), "finalized")
        return with_context(slot, self.ledger.blockhash_valid(blockhash, slot))

    def get_fee_for_message(self, params: list[Any]) -> dict[str, Any]:
        raw = _param(params, 0)
        if not isinstance(raw, str):
            raise invalid_params("Invalid params: invalid type: expected a base64 message")
        slot = self.view.slot(_config(params, 1))
        try:
            message = from_bytes_versioned(base64.b64decode(raw, validate=True))
        except Exception as exc:
            raise invalid_params(f"invalid message: {exc}") from exc
        valid = self.ledger.blockhash_valid(str(message.recent_blockhash), slot)
        return with_context(slot, transaction_fee(message) if valid else None)

    def get_minimum_balance_for_rent_exemption(self, params: list[Any]) -> int:
        size = _param(params, 0)
        if not isinstance(size, int) or size < 0:
            raise invalid_params("Invalid params: invalid type: expected usize")
        return self.ledger.svm.minimum_balance_for_rent_exemption(size)

    def get_recent_prioritization_fees(self, params: list[Any]) -> list[dict[str, int]]:
        addresses = _param(params, 0, [])
        if len(addresses) > 128:
            raise invalid_params("Too many inputs provided; max 128")
        for a in addresses:
            _pubkey(a)
        tip = self.view.tip
        return [f for f in self.ledger.fees.recent(addresses) if f["slot"] <= tip]

    # -- accounts ---------------------------------------------------------------------------

    def get_balance(self, params: list[Any]) -> dict[str, Any]:
        key = _pubkey(_param(params, 0))
        slot = self.view.slot(_config(params, 1))
        acc = self.view.account(key, slot)
        return with_context(slot, acc.lamports if acc else 0)

    def _ui(self, acc: Account | None, cfg: dict[str, Any]) -> dict[str, Any] | None:
        if acc is None:
            return None
        return encoding.ui_account(acc, cfg.get("encoding") or "base58", cfg.get("dataSlice"),
                                   self.ledger.svm)

    def get_account_info(self, params: list[Any]) -> dict[str, Any]:
        key = _pubkey(_param(params, 0))
        cfg = _config(params, 1)
        slot = self.view.slot(cfg)
        return with_context(slot, self._ui(self.view.account(key, slot), cfg))

    def get_multiple_accounts(self, params: list[Any]) -> dict[str, Any]:
        keys = _param(params, 0)
        if not isinstance(keys, list):
            raise invalid_params("Invalid params: invalid type: expected a list of public keys")
        if len(keys) > 100:
            raise invalid_params("Too many inputs provided; max 100")
        pubkeys = [_pubkey(k) for k in keys]
        cfg = _config(params, 1)
        slot = self.view.slot(cfg)
        return with_context(slot, [self._ui(self.view.account(k, slot), cfg) for k in pubkeys])

    def get_program_accounts(self, params: list[Any]) -> Any:
        program = _pubkey(_param(params, 0))
        cfg = _config(params, 1)
        slot = self.view.slot(cfg)
        specs = cfg.get("filters") or []
        if not isinstance(specs, list):
            raise invalid_params("Invalid params: filters must be a list")
        if len(specs) > MAX_FILTERS:
            raise invalid_params(f"Too many filters provided; max {MAX_FILTERS}")
        filters = [_account_filter(f) for f in specs]
        out = []
        for key, acc in self.ledger.accounts_owned_by(program, self.view.state_slot(slot)):
            data = bytes(acc.data)
            if all(f(data) for f in filters):
                out.append({"pubkey": str(key), "account": self._ui(acc, cfg)})
        out.sort(key=lambda item: str(item["pubkey"]))
        return with_context(slot, out) if cfg.get("withContext") else out

    def get_token_account_balance(self, params: list[Any]) -> dict[str, Any]:
        key = _pubkey(_param(params, 0))
        slot = self.view.slot(_config(params, 1))
        acc = self.view.account(key, slot)
        if acc is None:
            raise invalid_params("Invalid param: could not find account")
        fields = encoding.token_account_fields(acc)
        if fields is None:
            raise invalid_params("Invalid param: not a Token account")
        decimals = encoding.mint_decimals(self.view.account(fields[0], slot))
        if decimals is None:
            raise invalid_params("Invalid param: could not find mint")
        return with_context(slot, encoding.token_amount(fields[2], decimals))

    def get_token_accounts_by_owner(self, params: list[Any]) -> dict[str, Any]:
        owner = _pubkey(_param(params, 0))
        selector = _config(params, 1)
        cfg = _config(params, 2)
        slot = self.view.slot(cfg)
        mint: Pubkey | None = None
        if "mint" in selector:
            mint = _pubkey(selector["mint"])
            mint_acc = self.view.account(mint, slot)
            if mint_acc is None or encoding.mint_decimals(mint_acc) is None:
                raise invalid_params("Invalid param: could not find mint")
            programs = [mint_acc.owner]
        elif "programId" in selector:
            program = _pubkey(selector["programId"])
            if program not in encoding.TOKEN_PROGRAMS:
                raise invalid_params("Invalid param: unrecognized Token program id")
            programs = [program]
        else:
            raise invalid_params("Invalid params: expected `mint` or `programId`")
        out = []
        for program in programs:
            for key, acc in self.ledger.accounts_owned_by(program, self.view.state_slot(slot)):
                fields = encoding.token_account_fields(acc)
                if fields and fields[1] == owner and (mint is None or fields[0] == mint):
                    out.append({"pubkey": str(key), "account": self._ui(acc, cfg)})
        out.sort(key=lambda item: str(item["pubkey"]))
        return with_context(slot, out)

    # -- transactions -----------------------------------------------------------------------

    def _decode_tx(self, params: list[Any]) -> tuple[VersionedTransaction, dict[str, Any]]:
        data = _param(params, 0)
        if not isinstance(data, str):
            raise invalid_params("Invalid params: invalid type: expected an encoded transaction")
        cfg = _config(params, 1)
        enc = cfg.get("encoding") or "base58"
        if enc not in ("base58", "base64"):
            raise invalid_params(f"Invalid params: unsupported encoding: {enc}. Supported "
                                 "encodings: base58, base64")
        try:
            tx = encoding.decode_transaction(data, enc)
            tx.sanitize()
        except EncodingError as exc:
            raise invalid_params(f"invalid transaction: {exc}") from exc
        except Exception as exc:
            raise invalid_params("invalid transaction: Transaction failed to sanitize accounts "
                                 f"offsets correctly ({exc})") from exc
        return tx, cfg

    def _check_age_and_status(self, tx: VersionedTransaction, slot: int) -> str | None:
        """The error a simulating bank at `slot` reports before executing `tx` (None if it
        would run)."""
        if not self.ledger.blockhash_valid(str(tx.message.recent_blockhash), slot,
                                           SIMULATION_MAX_AGE):
            return "BlockhashNotFound"
        record = self.ledger.history.get(str(tx.signatures[0]))
        if record is not None and record.slot <= slot:
            return "AlreadyProcessed"
        return None

    def _simulate(self, tx: VersionedTransaction, sig_verify: bool) -> tuple[Any, Any, Any]:
        svm = self.ledger.svm
        if not sig_verify:
            svm.with_sigverify(False)
        try:
            result = execute(svm, tx, simulate=True)
        finally:
            if not sig_verify:
                svm.with_sigverify(True)
        if isinstance(result, FailedTransactionMetadata):
            return encoding.transaction_error(result), result.meta(), None
        return None, result.meta(), result.post_accounts()

    def send_transaction(self, params: list[Any]) -> str:
        tx, cfg = self._decode_tx(params)
        self.view.slot(cfg, "finalized")  # minContextSlot
        max_retries = cfg.get("maxRetries")
        if max_retries is not None and (not isinstance(max_retries, int) or max_retries < 0):
            raise invalid_params("Invalid params: maxRetries must be a non-negative integer")
        if not cfg.get("skipPreflight"):
            behind = self.view.health()
            if behind is not None:
                raise node_unhealthy(behind)
            if not all(tx.verify_with_results()):
                raise RpcError(SIGNATURE_VERIFICATION_FAILURE,
                               "Transaction signature verification failure")
            slot = self.view.slot({"commitment": cfg.get("preflightCommitment")}, "finalized")
            err = self._check_age_and_status(tx, slot)
            meta = None
            if err is None:
                err, meta, _ = self._simulate(tx, sig_verify=True)
            if err is not None:
                raise RpcError(PREFLIGHT_FAILURE,
                               f"Transaction simulation failed: {encoding.error_text(err)}",
                               _simulation_value(err, meta, None, None))
        doomed = self.faults.hit(self.faults.faults.drop_tx_rate)
        return self.ledger.enqueue(tx, max_retries, doomed=doomed)

    def simulate_transaction(self, params: list[Any]) -> dict[str, Any]:
        tx, cfg = self._decode_tx(params)
        slot = self.view.slot(cfg, "finalized")
        sig_verify = bool(cfg.get("sigVerify"))
        replace = bool(cfg.get("replaceRecentBlockhash"))
        if sig_verify and replace:
            raise invalid_params("sigVerify may not be used with replaceRecentBlockhash")
        if sig_verify and not all(tx.verify_with_results()):
            raise RpcError(SIGNATURE_VERIFICATION_FAILURE,
                           "Transaction signature verification failure")
        replacement = None
        if replace:
            block = self.ledger.block_at(slot)
            tx = _with_blockhash(tx, Hash.from_string(block.blockhash))
            replacement = {"blockhash": block.blockhash,
                           "lastValidBlockHeight": block.height + MAX_PROCESSING_AGE}
        err = None if replace else self._check_age_and_status(tx, slot)
        meta = post = None
        if err is None:
            err, meta, post = self._simulate(tx, sig_verify)
        accounts = None
        acc_cfg = cfg.get("accounts")
        if acc_cfg:
            wanted = [_pubkey(a) for a in acc_cfg.get("addresses", [])]
            after = dict(post or [])
            enc = {"encoding": acc_cfg.get("encoding") or "base64"}
            accounts = [self._ui(after.get(k, self.view.account(k, slot)), enc) for k in wanted]
        value = _simulation_value(err, meta, accounts, replacement,
                                  bool(cfg.get("innerInstructions")))
        return with_context(slot, value)

    def request_airdrop(self, params: list[Any]) -> str:
        key = _pubkey(_param(params, 0))
        lamports = _param(params, 1)
        if not isinstance(lamports, int) or lamports <= 0:
            raise invalid_params("Invalid params: invalid type: expected u64 lamports")
        block = self.ledger.block_at(self.view.tip)
        msg = Message.new_with_blockhash(
            [transfer(TransferParams(from_pubkey=self.faucet.pubkey(), to_pubkey=key,
                                     lamports=lamports))],
            self.faucet.pubkey(), Hash.from_string(block.blockhash))
        return self.ledger.enqueue(VersionedTransaction(msg, [self.faucet]))

    def _status(self, signature: str, tip: int, search: bool) -> dict[str, Any] | None:
        record = self.ledger.history.get(signature)
        if record is None or record.slot > tip:
            return None
        if not search and record.slot <= tip - STATUS_CACHE_SLOTS:
            return None
        depth = tip - record.slot
        if depth >= FINALIZED_DEPTH:
            level, confirmations = "finalized", None
        else:
            level, confirmations = ("confirmed" if depth >= 1 else "processed"), depth
        return {"slot": record.slot, "confirmations": confirmations, "err": record.err,
                "status": record.meta["status"], "confirmationStatus": level}

    def get_signature_statuses(self, params: list[Any]) -> dict[str, Any]:
        sigs = _param(params, 0)
        if not isinstance(sigs, list):
            raise invalid_params("Invalid params: invalid type: expected a list of signatures")
        if len(sigs) > 256:
            raise invalid_params("Too many inputs provided; max 256")
        for s in sigs:
            _signature(s)
        search = bool(_config(params, 1).get("searchTransactionHistory"))
        tip = self.view.tip
        return with_context(tip, [self._status(s, tip, search) for s in sigs])

    def get_transaction(self, params: list[Any]) -> dict[str, Any] | None:
        signature = str(_signature(_param(params, 0)))
        cfg = _param(params, 1, {})
        if isinstance(cfg, str):
            cfg = {"encoding": cfg}
        slot = self.view.slot(_confirmed_only(cfg))
        record = self.ledger.history.get(signature)
        if record is None or record.slot > slot:
            return None
        version = encoding.transaction_version(record.tx)
        max_version = cfg.get("maxSupportedTransactionVersion")
        if version == 0 and (max_version is None or max_version < 0):
            raise RpcError(UNSUPPORTED_TRANSACTION_VERSION,
                           "Transaction version (0) is not supported by the requesting client. "
                           "Please try the request again with the following configuration "
                           "parameter: \"maxSupportedTransactionVersion\": 0")
        enc = cfg.get("encoding") or "json"
        loaded = record.meta["loadedAddresses"]
        meta = encoding.parsed_meta(record.meta, record.account_keys) \
            if enc == "jsonParsed" else record.meta
        out: dict[str, Any] = {
            "slot": record.slot,
            "transaction": encoding.ui_transaction(record.tx, enc, loaded),
            "meta": meta,
            "blockTime": record.block_time,
        }
        if max_version is not None:
            out["version"] = version
        return out

    def get_signatures_for_address(self, params: list[Any]) -> list[dict[str, Any]]:
        address = str(_pubkey(_param(params, 0)))
        cfg = _config(params, 1)
        slot = self.view.slot(_confirmed_only(cfg))
        limit = cfg.get("limit") or 1000
        if not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise invalid_params("Invalid limit; max 1000")
        before = str(_signature(cfg["before"])) if cfg.get("before") else None
        until = str(_signature(cfg["until"])) if cfg.get("until") else None
        tip = self.view.tip
        out = []
        started = before is None
        for sig in reversed(self.ledger.by_address.get(address, [])):
            if not started:
                started = sig == before
                continue
            if sig == until:
                break
            record = self.ledger.history[sig]
            if record.slot > slot:
                continue
            status = self._status(sig, tip, True)
            out.append({"signature": sig, "slot": record.slot, "err": record.err, "memo": None,
                        "blockTime": record.block_time,
                        "confirmationStatus": status["confirmationStatus"] if status else None})
            if len(out) >= limit:
                break
        return out


def _confirmed_only(cfg: dict[str, Any]) -> dict[str, Any]:
    commitment = _COMMITMENT_ALIASES.get(cfg.get("commitment") or "finalized",
                                         cfg.get("commitment") or "finalized")
    if commitment == "processed":
        raise invalid_params("Method does not support commitment below `confirmed`")
    return {**cfg, "commitment": commitment}


MAX_FILTERS = 4          # getProgramAccounts' limit on a real RPC node


def _account_filter(spec: Any) -> Callable[[bytes], bool]:
    if not isinstance(spec, dict) or len(spec) != 1:
        raise invalid_params("Invalid params: filter must be {\"dataSize\": n} or {\"memcmp\": ...}")
    if "dataSize" in spec:
        size = spec["dataSize"]
        if not isinstance(size, int) or size < 0:
            raise invalid_params("Invalid param: dataSize must be a non-negative integer")
        return lambda data: len(data) == size
    if "memcmp" in spec:
        memcmp = spec["memcmp"]
        if not isinstance(memcmp, dict):
            raise invalid_params("Invalid param: memcmp must be {\"offset\": n, \"bytes\": ...}")
        offset = memcmp.get("offset")
        raw = memcmp.get("bytes")
        enc = memcmp.get("encoding") or "base58"
        if not isinstance(offset, int) or offset < 0 or not isinstance(raw, str):
            raise invalid_params("Invalid param: memcmp needs offset and bytes")
        if enc not in ("base58", "base64"):
            raise invalid_params(f"Invalid param: unsupported memcmp encoding {enc}")
        try:
            wanted = base64.b64decode(raw, validate=True) if enc == "base64" else \
                encoding.b58decode(raw)
        except ValueError as exc:
            raise invalid_params(f"Invalid param: memcmp bytes: {exc}") from exc
        if len(wanted) > 128:
            raise invalid_params("Invalid param: memcmp bytes longer than 128")
        return lambda data: data[offset: offset + len(wanted)] == wanted
    raise invalid_params(f"Invalid param: unsupported filter {next(iter(spec))}")


def _simulation_value(err: Any, meta: Any, accounts: list[Any] | None,
                      replacement: dict[str, Any] | None,
                      with_inner: bool = False) -> dict[str, Any]:
    value: dict[str, Any] = {
        "err": err,
        "logs": list(meta.logs()) if meta is not None else [],
        "accounts": accounts,
        "unitsConsumed": meta.compute_units_consumed() if meta is not None else 0,
        "returnData": encoding.return_data(meta) if meta is not None else None,
        "innerInstructions": encoding.inner_instructions(meta) if with_inner and meta else None,
    }
    if replacement is not None:
        value["replacementBlockhash"] = replacement
    return value


def _with_blockhash(tx: VersionedTransaction, blockhash: Hash) -> VersionedTransaction:
    msg = tx.message
    if isinstance(msg, MessageV0):
        new: Message | MessageV0 = MessageV0(msg.header, msg.account_keys, blockhash,
                                             msg.instructions, msg.address_table_lookups)
    else:
        new = Message.new_with_compiled_instructions(
            msg.header.num_required_signatures, msg.header.num_readonly_signed_accounts,
            msg.header.num_readonly_unsigned_accounts, msg.account_keys, blockhash,
            msg.instructions)
    return VersionedTransaction.populate(new, tx.signatures)
