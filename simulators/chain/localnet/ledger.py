"""The ledger: LiteSVM plus what a cluster adds around it — blocks, blockhash ages, commitments,
account history per slot, and transaction history.

LiteSVM executes transactions but has no blocks: it keeps one "latest" blockhash and no state per
slot. Here every produced block gets its own blockhash (a hash chain), a transaction is valid while
its blockhash is at most 150 blocks old, and the account values each block changed are kept for a
window of slots so reads at `confirmed`, `finalized` or from a lagging view see the state of that
slot. LiteSVM's own blockhash check and history are switched off; both are enforced here.
"""

from __future__ import annotations

import hashlib
import logging
import time
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from solders.account import Account
from solders.clock import Clock
from solders.hash import Hash
from solders.litesvm import LiteSVM
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction
from solders.transaction_metadata import FailedTransactionMetadata

from simulators.chain.localnet import encoding
from simulators.chain.localnet.fees import (
    BlockFees,
    ComputeBudget,
    FeeMarket,
    compute_budget,
    transaction_fee,
)
from simulators.chain.svm import execute

log = logging.getLogger(__name__)

MAX_PROCESSING_AGE = 150  # blocks a blockhash stays valid
# Simulation (and so preflight) allows 6 blocks less, leaving time to forward to the leader.
MAX_TRANSACTION_FORWARDING_DELAY = 6
SIMULATION_MAX_AGE = MAX_PROCESSING_AGE - MAX_TRANSACTION_FORWARDING_DELAY
CONFIRMED_DEPTH = 1
FINALIZED_DEPTH = 32
STATUS_CACHE_SLOTS = 300  # getSignatureStatuses without searchTransactionHistory looks this far
COMMITMENT_DEPTH = {"processed": 0, "confirmed": CONFIRMED_DEPTH, "finalized": FINALIZED_DEPTH}

# Errors that stop a transaction before execution: it does not land and pays nothing.
_NOT_LANDED = {
    "AccountNotFound", "InsufficientFundsForFee", "InvalidAccountForFee", "AlreadyProcessed",
    "BlockhashNotFound", "SignatureFailure", "InvalidProgramForExecution", "SanitizeFailure",
    "ProgramAccountNotFound", "InvalidAccountIndex", "AccountLoadedTwice", "AccountInUse",
    "MissingSignatureForFee", "UnsupportedVersion", "InvalidWritableAccount",
    "WouldExceedMaxBlockCostLimit", "TooManyAccountLocks", "AddressLookupTableNotFound",
    "InvalidAddressLookupTableOwner", "InvalidAddressLookupTableData",
    "InvalidAddressLookupTableIndex", "DuplicateInstruction",
}


def landed(err: Any) -> bool:
    """Whether a transaction that failed with `err` still lands in a block (and pays its fee)."""
    name = err if isinstance(err, str) else next(iter(err))
    return name not in _NOT_LANDED


@dataclass
class Block:
    slot: int
    height: int
    parent_slot: int
    blockhash: str
    block_time: int
    signatures: list[str] = field(default_factory=list)
    changed: list[Pubkey] = field(default_factory=list)  # accounts written in this block


@dataclass
class TxRecord:
    """A landed transaction, with its meta in the RPC's JSON form."""

    signature: str
    slot: int
    block_time: int
    tx: VersionedTransaction
    meta: dict[str, Any]
    account_keys: list[str]  # static keys then loaded writable then loaded readonly

    @property
    def err(self) -> Any:
        return self.meta["err"]


@dataclass
class Pending:
    """A transaction accepted by sendTransaction and waiting for a block."""

    tx: VersionedTransaction
    signature: str
    budget: ComputeBudget
    seq: int
    retries_left: int | None  # blocks it may wait; None: until its blockhash expires
    doomed: bool = False  # a fault: accepted, never lands


class Ledger:
    """State of the local cluster. All methods run on the event loop thread."""

    def __init__(self, svm: LiteSVM, fees: FeeMarket | None = None, retention_slots: int = 600,
                 now: Callable[[], float] = time.time) -> None:
        svm.with_blockhash_check(False).with_transaction_history(0)
        self.svm = svm
        self.fees = fees or FeeMarket()
        self.retention_slots = retention_slots
        self._now = now
        self.slot = 0
        self.height = 0
        self.blocks: dict[int, Block] = {}
        self.blockhash_slot: dict[str, int] = {}
        self.history: dict[str, TxRecord] = {}
        self.by_address: dict[str, list[str]] = {}
        self.tracked: set[Pubkey] = set()
        self.versions: dict[Pubkey, list[tuple[int, Account | None]]] = {}
        self.pending: list[Pending] = []
        self._pending_sigs: set[str] = set()
        self._seq = 0
        self.dropped: set[str] = set()  # expired or doomed before landing (for inspection)
        self.transaction_count = 0
        genesis = Block(0, 0, 0, str(Hash(hashlib.sha256(b"gridnode-localnet").digest())),
                        int(self._now()))
        self.genesis_hash = genesis.blockhash
        self._add_block(genesis)
        self._set_clock(genesis)

    # -- blocks and commitments -------------------------------------------------------------

    def _add_block(self, block: Block) -> None:
        self.blocks[block.slot] = block
        self.blockhash_slot[block.blockhash] = block.slot
        self.slot, self.height = block.slot, block.height
        old = block.slot - max(self.retention_slots, STATUS_CACHE_SLOTS) - 1
        stale = self.blocks.pop(old, None)
        if stale is not None:
            self.blockhash_slot.pop(stale.blockhash, None)

    def _set_clock(self, block: Block) -> None:
        schedule = self.svm.get_epoch_schedule()
        epoch = schedule.get_epoch(block.slot)
        self.svm.set_clock(Clock(block.slot, block.block_time, epoch, epoch + 1, block.block_time))

    def commitment_slot(self, tip: int, commitment: str) -> int:
        return max(0, tip - COMMITMENT_DEPTH[commitment])

    def block_at(self, slot: int) -> Block:
        """The block at `slot`, or the newest kept block before it."""
        while slot not in self.blocks and slot > 0:
            slot -= 1
        return self.blocks.get(slot) or self.blocks[min(self.blocks)]

    def blockhash_age(self, blockhash: str, tip: int) -> int | None:
        """Blocks between `blockhash` and the block at `tip`, or None if unknown at `tip`."""
        slot = self.blockhash_slot.get(blockhash)
        if slot is None or slot > tip:
            return None
        return self.block_at(tip).height - self.blocks[slot].height

    def blockhash_valid(self, blockhash: str, tip: int, max_age: int = MAX_PROCESSING_AGE) -> bool:
        age = self.blockhash_age(blockhash, tip)
        return age is not None and age <= max_age

    # -- accounts ---------------------------------------------------------------------------

    def account(self, key: Pubkey, slot: int | None = None) -> Account | None:
        """The account as of the end of block `slot` (None: the latest state)."""
        hist = self.versions.get(key)
        if slot is None or slot >= self.slot or not hist:
            return self.svm.get_account(key)
        i = bisect_right([s for s, _ in hist], slot)
        return hist[i - 1][1] if i else hist[0][1]

    def set_account(self, key: Pubkey, account: Account) -> None:
        """Write an account outside a transaction (bootstrap, restore); tracked for snapshots."""
        self.svm.set_account(key, account)
        self.tracked.add(key)

    def accounts_owned_by(self, owner: Pubkey, slot: int | None) -> Iterable[tuple[Pubkey, Account]]:
        for key in list(self.tracked):
            acc = self.account(key, slot)
            if acc is not None and acc.owner == owner and acc.lamports > 0:
                yield key, acc

    def _prune_versions(self) -> None:
        horizon = self.slot - self.retention_slots
        for key in list(self.versions):
            hist = self.versions[key]
            i = bisect_right([s for s, _ in hist], horizon)
            if i > 1:
                del hist[: i - 1]
            if len(hist) == 1 and hist[0][0] <= horizon:
                del self.versions[key]

    # -- transactions -----------------------------------------------------------------------

    def loaded_addresses(self, tx: VersionedTransaction) -> tuple[list[Pubkey], list[Pubkey]]:
        """Addresses a v0 message loads from lookup tables (writable, readonly)."""
        msg = tx.message
        if not isinstance(msg, MessageV0):
            return [], []
        writable: list[Pubkey] = []
        readonly: list[Pubkey] = []
        for lookup in msg.address_table_lookups:
            table = self.svm.get_account(lookup.account_key)
            if table is None:
                continue
            data = bytes(table.data)
            addrs = [Pubkey.from_bytes(data[56 + 32 * i: 88 + 32 * i])
                     for i in range((len(data) - 56) // 32)]
            writable += [addrs[i] for i in bytes(lookup.writable_indexes) if i < len(addrs)]
            readonly += [addrs[i] for i in bytes(lookup.readonly_indexes) if i < len(addrs)]
        return writable, readonly

    def all_keys(self, tx: VersionedTransaction) -> list[Pubkey]:
        writable, readonly = self.loaded_addresses(tx)
        return list(tx.message.account_keys) + writable + readonly

    def is_pending(self, signature: str) -> bool:
        return signature in self._pending_sigs

    def enqueue(self, tx: VersionedTransaction, max_retries: int | None = None,
                doomed: bool = False) -> str:
        """Accept a transaction for the next block; a duplicate of a pending one is ignored."""
        signature = str(tx.signatures[0])
        if signature in self._pending_sigs:
            for item in self.pending:  # a resend gets its own chance against the drop fault
                if item.signature == signature:
                    item.doomed = item.doomed and doomed
            return signature
        if signature in self.history:
            return signature
        self._seq += 1
        self.pending.append(Pending(tx, signature, compute_budget(tx.message), self._seq,
                                    max_retries, doomed))
        self._pending_sigs.add(signature)
        return signature

    def produce_block(self) -> Block:
        """Advance one slot: execute what fits of the pending queue and seal the block."""
        parent = self.blocks[self.slot]
        slot = parent.slot + 1
        blockhash = str(Hash(hashlib.sha256(parent.blockhash.encode() + slot.to_bytes(8, "little"))
                             .digest()))
        block = Block(slot, parent.height + 1, parent.slot, blockhash, int(self._now()))
        self._set_clock(block)
        chosen, waiting = self._schedule(block)
        prices: list[tuple[int, frozenset[str]]] = []
        pre_block: dict[Pubkey, Account | None] = {}
        for item in chosen:
            try:
                record = self._execute(item, block, pre_block)
            except Exception:  # one malformed transaction must not stop the chain
                log.exception("executing %s failed; dropped", item.signature)
                self.dropped.add(item.signature)
                continue
            if record is not None:
                msg = item.tx.message
                writable = frozenset(str(k) for k, w in zip(msg.account_keys,
                                                            encoding.static_writable(msg), strict=True)
                                     if w)
                prices.append((item.budget.unit_price, writable))
        self.pending = waiting
        self._pending_sigs = {p.signature for p in waiting}
        for key, before in pre_block.items():
            hist = self.versions.setdefault(key, [])
            if not hist:
                hist.append((-1, before))
            hist.append((slot, self.svm.get_account(key)))
        block.changed = list(pre_block)
        self._add_block(block)
        self.fees.record(BlockFees(slot, prices))
        if slot % 64 == 0:
            self._prune_versions()
        return block

    def _schedule(self, block: Block) -> tuple[list[Pending], list[Pending]]:
        """Choose transactions for `block` by priority within its CU capacity."""
        chosen: list[Pending] = []
        waiting: list[Pending] = []
        used = 0
        for item in sorted(self.pending, key=lambda p: (-p.budget.unit_price, p.seq)):
            blockhash = str(item.tx.message.recent_blockhash)
            expired = not self.blockhash_valid_for_new_block(blockhash, block)
            if item.doomed or expired or item.signature in self.history:
                self.dropped.add(item.signature)
                continue
            fits = used + item.budget.unit_limit <= self.fees.block_cu_limit
            if fits and self.fees.admits(item.budget):
                chosen.append(item)
                used += item.budget.unit_limit
            elif item.retries_left is None or item.retries_left > 0:
                if item.retries_left is not None:
                    item.retries_left -= 1
                waiting.append(item)
            else:
                self.dropped.add(item.signature)
        return chosen, waiting

    def blockhash_valid_for_new_block(self, blockhash: str, block: Block) -> bool:
        slot = self.blockhash_slot.get(blockhash)
        return slot is not None and block.height - self.blocks[slot].height <= MAX_PROCESSING_AGE

    def _execute(self, item: Pending, block: Block,
                 pre_block: dict[Pubkey, Account | None]) -> TxRecord | None:
        tx = item.tx
        msg = tx.message
        writable_loaded, readonly_loaded = self.loaded_addresses(tx)
        keys = list(msg.account_keys) + writable_loaded + readonly_loaded
        pre = [self.svm.get_account(k) for k in keys]
        payer_balance = pre[0].lamports if pre[0] is not None else 0
        fee = transaction_fee(msg)
        if pre[0] is not None and payer_balance < fee:
            self.dropped.add(item.signature)
            return None
        result = execute(self.svm, tx)
        if isinstance(result, FailedTransactionMetadata):
            err = encoding.transaction_error(result)
            if not landed(err):
                self.dropped.add(item.signature)
                return None
            meta = result.meta()
        else:
            err, meta = None, result
        priority = item.budget.priority_fee
        if priority:  # LiteSVM charges only the signature fee; the priority fee is charged here
            payer = self.svm.get_account(keys[0])
            if payer is not None:
                self.svm.set_account(keys[0], Account(payer.lamports - priority, payer.data,
                                                      payer.owner, payer.executable,
                                                      payer.rent_epoch))
        post = [self.svm.get_account(k) for k in keys]
        writable = encoding.static_writable(msg) + [True] * len(writable_loaded) + \
            [False] * len(readonly_loaded)
        for i, key in enumerate(keys):
            if writable[i] and key not in pre_block:
                pre_block[key] = pre[i]
        self.tracked.update(k for k, a in zip(keys, post, strict=True) if a is not None)
        record = TxRecord(
            signature=item.signature, slot=block.slot, block_time=block.block_time, tx=tx,
            meta=encoding.transaction_meta(err, fee, meta, keys, pre, post, self.svm,
                                           writable_loaded, readonly_loaded),
            account_keys=[str(k) for k in keys])
        self.add_record(record)
        block.signatures.append(item.signature)
        return record

    def add_record(self, record: TxRecord) -> None:
        self.history[record.signature] = record
        self.transaction_count += 1
        for key in dict.fromkeys(record.account_keys):
            self.by_address.setdefault(key, []).append(record.signature)
