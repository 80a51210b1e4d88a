"""Snapshot and restore of the ledger, so a restarted localnet keeps its chain.

LiteSVM cannot enumerate accounts, so the ledger tracks every key a transaction touched plus the
accounts written at bootstrap; those are saved with the recent blocks (for blockhash ages) and the
whole transaction history. Programs are not saved: they are deployed from their files at every
start. The file is gzip'd JSON, written to a temporary name, fsync'd and renamed.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
from pathlib import Path
from typing import Any

from solders.account import Account
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from simulators.chain.localnet.ledger import MAX_PROCESSING_AGE, Block, Ledger, TxRecord

FORMAT = 1
FILENAME = "ledger.json.gz"


def capture(ledger: Ledger) -> dict[str, Any]:
    """Everything needed to restore, as plain JSON values (taken on the event loop thread)."""
    accounts = {}
    for key in ledger.tracked:
        acc = ledger.svm.get_account(key)
        if acc is None or acc.executable:
            continue
        accounts[str(key)] = [acc.lamports, str(acc.owner), acc.rent_epoch,
                              base64.b64encode(bytes(acc.data)).decode()]
    keep_from = ledger.slot - max(MAX_PROCESSING_AGE + 1, 300)
    blocks = [[b.slot, b.height, b.parent_slot, b.blockhash, b.block_time, b.signatures]
              for s, b in sorted(ledger.blocks.items()) if s >= keep_from]
    history = [[r.signature, r.slot, r.block_time, base64.b64encode(bytes(r.tx)).decode(),
                r.meta, r.account_keys] for r in ledger.history.values()]
    return {"format": FORMAT, "genesis_hash": ledger.genesis_hash, "slot": ledger.slot,
            "transaction_count": ledger.transaction_count, "blocks": blocks,
            "accounts": accounts, "history": history}


def write(state: dict[str, Any], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1) as gz:
            gz.write(json.dumps(state, separators=(",", ":")).encode())
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(tmp, path)


def restore(ledger: Ledger, path: Path) -> None:
    """Load a snapshot into a fresh ledger (programs already deployed)."""
    with gzip.open(path, "rb") as gz:
        state = json.loads(gz.read())
    if state.get("format") != FORMAT:
        raise ValueError(f"{path}: snapshot format {state.get('format')!r}, expected {FORMAT}")
    for key, (lamports, owner, rent_epoch, data) in state["accounts"].items():
        ledger.set_account(Pubkey.from_string(key),
                           Account(lamports, base64.b64decode(data), Pubkey.from_string(owner),
                                   False, rent_epoch))
    ledger.blocks.clear()
    ledger.blockhash_slot.clear()
    ledger.genesis_hash = state["genesis_hash"]
    for slot, height, parent, blockhash, block_time, signatures in state["blocks"]:
        ledger._add_block(Block(slot, height, parent, blockhash, block_time, signatures))
    ledger._set_clock(ledger.blocks[ledger.slot])
    for sig, slot, block_time, tx, meta, keys in state["history"]:
        ledger.add_record(TxRecord(sig, slot, block_time,
                                   VersionedTransaction.from_bytes(base64.b64decode(tx)), meta,
                                   keys))
    ledger.transaction_count = state["transaction_count"]
