"""Following every signed transaction to finality, and deciding when re-signing is safe.

One round reads, from ONE endpoint, the block height at the blockhash commitment and then the
status of every signature of every in-flight operation (searchTransactionHistory). Reading the
height first means the statuses are at least as recent as the height, so "not found and height
past lastValidBlockHeight" really means the transaction can no longer land. Per operation:

    a signature landed without error   -> confirmed; at finalized: events decoded, finalized
    landed with a program error         -> failed with the decoded Anchor error, for the operation
                                           whose instruction failed; its batch-mates did not run
    every signature dead                -> expired, then pending for a new transaction
                                           (or parked when the recovery budget is exhausted)
    anything else (not found yet, RPC down) -> unchanged: unknown stays unknown
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from solders.transaction import VersionedTransaction

from gridnode.chain.errors import TxFailure, classify
from gridnode.chain.events import events_by_instruction, jsonable
from gridnode.chain.rpc import RpcPool, RpcRejected, RpcUnavailable
from gridnode.chain.txtypes import TX_TYPES
from gridnode.log import get_logger
from gridnode.outbox.recovery import Recovery
from gridnode.outbox.rounds import run_rounds
from gridnode.store import Store, dumps, now_ms

log = get_logger(__name__)

INFLIGHT = ("signed", "submitted", "unknown", "confirmed")
_RANK = {"processed": 1, "confirmed": 2, "finalized": 3}


@dataclass
class Attempt:
    signature: str
    serialized: bytes
    last_valid_block_height: int
    observed: str
    ops: list[tuple[int, int]]  # (operation id, first ix index), ordered by ix index


@dataclass
class Observation:
    status: str                 # alive | landed | failed_landed | expired
    commitment: str | None
    slot: int | None
    err: Any


def program_ids_of(serialized: bytes) -> list[str]:
    """Program id of each instruction of a stored transaction (no RPC needed)."""
    msg = VersionedTransaction.from_bytes(serialized).message
    keys = msg.account_keys
    return [str(keys[ix.program_id_index]) for ix in msg.instructions]


class Monitor:
    def __init__(self, store: Store, pool: RpcPool, idls: dict[str, Any], recovery: Recovery,
                 *, poll_interval_s: float = 5.0) -> None:
        self.store = store
        self.pool = pool
        self.idls_by_program = {str(p.program_id): p for p in idls.values()}
        self.recovery = recovery
        self.poll_interval_s = poll_interval_s
        self.wake = asyncio.Event()
        self.block_height: int | None = None   # last height seen (rebroadcast uses it)
        self.last_progress = time.monotonic()
        self.inflight_signatures: set[str] = set()

    async def run(self) -> None:
        await run_rounds("status poll", self.poll_once, self.poll_interval_s, wake=self.wake)

    async def _attempts(self) -> dict[str, Attempt]:
        rows = await self.store.fetchall(
            "SELECT a.signature, a.serialized, a.last_valid_block_height, a.observed_status, "
            "t.operation_id, t.ix_index FROM tx_attempts a "
            "JOIN tx_attempt_operations t ON t.signature = a.signature "
            "WHERE t.signature IN (SELECT t2.signature FROM tx_attempt_operations t2 "
            "  JOIN operations o ON o.id = t2.operation_id "
            f"  WHERE o.status IN ({','.join('?' * len(INFLIGHT))})) "
            "ORDER BY a.signature, t.ix_index", INFLIGHT)
        out: dict[str, Attempt] = {}
        for r in rows:
            a = out.get(r["signature"])
            if a is None:
                a = out[r["signature"]] = Attempt(r["signature"], bytes(r["serialized"]),
                                                  int(r["last_valid_block_height"]),
                                                  r["observed_status"], [])
            a.ops.append((int(r["operation_id"]), int(r["ix_index"])))
        return out

    async def _observe(self, sigs: list[str]) -> tuple[int, dict[str, Any]]:
        last: Exception | None = None
        for ep in self.pool.ordered():
            try:
                height = int(await self.pool.raw_on(
                    ep, "getBlockHeight", [{"commitment": str(self.pool.commitment)}]))
                statuses = await self.pool.signature_statuses_on(ep, sigs) if sigs else {}
                return height, statuses
            except (RpcUnavailable, RpcRejected) as exc:
                last = exc
        raise RpcUnavailable(f"status poll failed on every endpoint: {last!r}")

    async def poll_once(self) -> None:
        attempts = await self._attempts()
        self.inflight_signatures = {
            s for s, a in attempts.items() if a.observed not in ("expired", "failed")}
        height, statuses = await self._observe(list(attempts))
        self.block_height = height
        obs: dict[str, Observation] = {}
        for sig, a in attempts.items():
            st = statuses.get(sig)
            if st is None:
                obs[sig] = Observation("alive" if height <= a.last_valid_block_height else "expired",
                                       None, None, None)
                continue
            commitment = st.get("confirmationStatus") or "processed"
            if st.get("err") is None:
                obs[sig] = Observation("landed", commitment, st.get("slot"), None)
            elif _RANK.get(commitment, 0) >= _RANK["confirmed"]:
                obs[sig] = Observation("failed_landed", commitment, st.get("slot"), st["err"])
            else:
                obs[sig] = Observation("alive", commitment, st.get("slot"), st["err"])
        if not attempts:
            return
        await self._apply(attempts, obs)

    async def _apply(self, attempts: dict[str, Attempt], obs: dict[str, Observation]) -> None:
        by_op: dict[int, list[str]] = defaultdict(list)
        for sig, a in attempts.items():
            for op_id, _ in a.ops:
                by_op[op_id].append(sig)

        finalize: list[str] = []
        failures: dict[str, TxFailure] = {}
        for sig, o in obs.items():
            if o.status == "failed_landed":
                failures[sig] = classify(o.err, dict(enumerate(program_ids_of(attempts[sig].serialized))),
                                         self.idls_by_program)
            if o.status == "landed" and o.commitment == "finalized":
                finalize.append(sig)

        async with self.store.write() as tx:
            # statuses read inside the write: the submitter may have moved some meanwhile
            op_rows = await tx.fetchall(
                f"SELECT id, status, tx_type FROM operations WHERE id IN "
                f"({','.join('?' * len(by_op))})", list(by_op))
            op_status = {int(r["id"]): (r["status"], r["tx_type"]) for r in op_rows}
            for sig, o in obs.items():
                new = {"alive": None, "landed": o.commitment, "failed_landed": "failed",
                       "expired": "expired"}[o.status]
                if new and new != attempts[sig].observed:
                    await tx.execute(
                        "UPDATE tx_attempts SET observed_status = ?, slot = COALESCE(?, slot), "
                        "err = ?, observed_at_ms = ? WHERE signature = ?",
                        (new, o.slot, None if o.err is None else json.dumps(o.err), now_ms(), sig))
            for op_id, sigs in by_op.items():
                status, tx_type = op_status[op_id]
                if status not in INFLIGHT:
                    continue
                await self._decide(tx, op_id, status, tx_type, sigs, attempts, obs, failures)
        for sig in finalize:
            await self._finalize(attempts[sig])
        self.last_progress = time.monotonic()

    async def _decide(self, tx: Any, op_id: int, status: str, tx_type: str, sigs: list[str],
                      attempts: dict[str, Attempt], obs: dict[str, Observation],
                      failures: dict[str, TxFailure]) -> None:
        landed = [s for s in sigs if obs[s].status == "landed"]
        if landed:
            best = max(landed, key=lambda s: _RANK.get(obs[s].commitment or "", 0))
            if _RANK.get(obs[best].commitment or "", 0) >= _RANK["confirmed"] and status != "confirmed":
                await tx.set_status("operation", op_id, "confirmed", reason="landed",
                                    details={"signature": best, "slot": obs[best].slot})
            return
        if status == "confirmed":
            await tx.set_status("operation", op_id, "unknown",
                                reason="confirmed signature no longer found", details={"signatures": sigs})
            return
        if any(obs[s].status == "alive" for s in sigs):
            return
        # Every signature of this operation is dead: none landed, none can land any more.
        details: dict[str, Any] = {"signatures": sigs}
        for s in sigs:
            f = failures.get(s)
            if f is None:
                continue
            mine = self._blamed_op(attempts[s], f.ix_index) == op_id
            details.update(error=f.describe(), signature=s)
            if mine and f.kind == "program":
                rebuild = TX_TYPES[tx_type].rebuild_on if tx_type in TX_TYPES else frozenset()
                if f.code is not None and f.code in rebuild:
                    await self.recovery.resign(tx, op_id, "rebuild", f"{f.describe()}: rebuild",
                                               details)
                    return
                await self.recovery.fail(tx, op_id, f.describe(), details)
                log.info("operation failed on chain", op_id=op_id, error=f.describe(), signature=s)
                return
            if mine and f.kind == "compute":
                # For a type whose accounts depend on chain state read before signing (the order
                # PDA index), running out of compute means that state moved: the PDA check for
                # the new index costs more bump search than the simulation measured. Rebuild.
                kind = "rebuild" if TX_TYPES.get(tx_type) and TX_TYPES[tx_type].rebuild_on \
                    else "insufficient_compute"
                await self.recovery.resign(tx, op_id, kind, f.describe(), details)
                return
        if any(s in failures for s in sigs):
            reason = "its batch failed at another instruction"
            await self.recovery.resign(tx, op_id, "transaction_expired", reason, details)
            return
        await self.recovery.resign(tx, op_id, "transaction_expired",
                                   "blockhash expired and no signature landed", details)

    @staticmethod
    def _blamed_op(a: Attempt, ix_index: int | None) -> int | None:
        if ix_index is None:
            return None
        owner = None
        for op_id, first in a.ops:
            if first <= ix_index:
                owner = op_id
        return owner

    async def _finalize(self, a: Attempt) -> None:
        """Decode the events of a finalized transaction and finalize its operations."""
        try:
            txn = await self.pool.transaction(a.signature, "finalized")
        except (RpcUnavailable, RpcRejected) as exc:
            log.warning("getTransaction failed", signature=a.signature, error=str(exc)[:200])
            return
        if txn is None:
            return
        meta = txn.get("meta") or {}
        logs = meta.get("logMessages") or []
        programs = program_ids_of(a.serialized)
        per_ix = events_by_instruction(logs, programs, self.idls_by_program)
        rows = []
        for ix_index, events in per_ix.items():
            op_id = self._blamed_op(a, ix_index)
            for program, name, fields in events:
                rows.append((a.signature, op_id, program, name, dumps(jsonable(fields)),
                             txn.get("slot")))
        async with self.store.write() as tx:
            await tx.executemany(
                "INSERT OR IGNORE INTO chain_events (signature, operation_id, program_id, name, "
                "data, slot) VALUES (?, ?, ?, ?, ?, ?)", rows)
            await tx.execute(
                "UPDATE tx_attempts SET observed_status = 'finalized', fee_lamports = ?, slot = ?, "
                "observed_at_ms = ? WHERE signature = ?",
                (meta.get("fee"), txn.get("slot"), now_ms(), a.signature))
            for op_id, _ in a.ops:
                row = await tx.fetchone("SELECT status FROM operations WHERE id = ?", (op_id,))
                if row is not None and row["status"] in INFLIGHT:
                    await tx.set_status("operation", op_id, "finalized", reason="finalized",
                                        details={"signature": a.signature, "slot": txn.get("slot"),
                                                 "events": len(rows)})
        self.inflight_signatures.discard(a.signature)
        log.info("transaction finalized", signature=a.signature, ops=len(a.ops), events=len(rows))
