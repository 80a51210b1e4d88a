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
import time
from collections import defaultdict
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from gridnode.chain.assembly import program_ids_of
from gridnode.chain.errors import FailureKind, TxFailure, classify
from gridnode.chain.events import events_by_instruction, jsonable
from gridnode.chain.rpc import RpcPool, RpcRejected, RpcUnavailable
from gridnode.chain.txtypes import TX_TYPES
from gridnode.log import get_logger
from gridnode.outbox.inflight import InFlight
from gridnode.outbox.recovery import Recovery
from gridnode.outbox.rounds import run_rounds
from gridnode.store import Store, WriteTx, dumps, operations, transitions
from gridnode.store.operations import Attempt, ChainEvent

log = get_logger(__name__)

_RANK = {"processed": 1, "confirmed": 2, "finalized": 3}


class Seen(StrEnum):
    """What one status poll says of one signature."""

    ALIVE = "alive"                  # not found yet (still valid), or landed failed unconfirmed
    LANDED = "landed"                # landed without error, at `commitment`
    FAILED_LANDED = "failed_landed"  # landed with an error, at confirmed or later
    EXPIRED = "expired"              # not found and the height is past lastValidBlockHeight


@dataclass
class Observation:
    status: Seen
    commitment: str | None
    slot: int | None
    err: Any


class Monitor:
    """Follows every in-flight operation's transactions to finality (see the module docstring).

    It shares `inflight` with the submitter and the signature subscriber: it replaces the
    signatures from the store each round, drops them once finalized, and records the height.
    """

    def __init__(self, store: Store, pool: RpcPool, idls: dict[str, Any], recovery: Recovery,
                 inflight: InFlight, *, poll_interval_s: float = 5.0) -> None:
        self.store = store
        self.pool = pool
        self.idls_by_program = {str(p.program_id): p for p in idls.values()}
        self.recovery = recovery
        self.inflight = inflight
        self.poll_interval_s = poll_interval_s
        self.wake = asyncio.Event()
        self.last_progress = time.monotonic()

    async def run(self) -> None:
        await run_rounds("status poll", self.poll_once, self.poll_interval_s, wake=self.wake)

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
        raise RpcUnavailable(f"status poll failed on every endpoint: {last}")

    async def poll_once(self) -> None:
        attempts = await operations.in_flight(self.store)
        self.inflight.replace({
            s for s, a in attempts.items() if a.observed not in transitions.ATTEMPT_DEAD})
        height, statuses = await self._observe(list(attempts))
        self.inflight.block_height = height
        obs: dict[str, Observation] = {}
        for sig, a in attempts.items():
            st = statuses.get(sig)
            if st is None:
                obs[sig] = Observation(Seen.ALIVE if height <= a.last_valid_block_height
                                       else Seen.EXPIRED, None, None, None)
                continue
            commitment = st.get("confirmationStatus") or "processed"
            if st.get("err") is None:
                obs[sig] = Observation(Seen.LANDED, commitment, st.get("slot"), None)
            elif _RANK.get(commitment, 0) >= _RANK["confirmed"]:
                obs[sig] = Observation(Seen.FAILED_LANDED, commitment, st.get("slot"), st["err"])
            else:
                obs[sig] = Observation(Seen.ALIVE, commitment, st.get("slot"), st["err"])
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
            if o.status is Seen.FAILED_LANDED:
                failures[sig] = classify(o.err, dict(enumerate(program_ids_of(attempts[sig].serialized))),
                                         self.idls_by_program)
            if o.status is Seen.LANDED and o.commitment == "finalized":
                finalize.append(sig)

        async with self.store.write() as tx:
            # statuses read inside the write: the submitter may have moved some meanwhile
            current = await operations.get_many(tx, list(by_op))
            for sig, o in obs.items():
                new = {Seen.ALIVE: None, Seen.LANDED: o.commitment, Seen.FAILED_LANDED: "failed",
                       Seen.EXPIRED: "expired"}[o.status]
                if new and new != attempts[sig].observed:
                    await operations.record_observed(tx, sig, new, o.slot, o.err)
            for op_id, sigs in by_op.items():
                op = current[op_id]
                if op.status not in transitions.IN_FLIGHT:
                    continue
                await self._decide(tx, op_id, op.status, op.tx_type, sigs, attempts, obs,
                                   failures)
        done = [sig for sig in finalize if await self._finalize(attempts[sig])]
        if done:
            # At debug: the periodic summary counts them, and the one info line of a batch is
            # the meters' "intervals closed".
            log.debug("transactions finalized", transactions=len(done),
                      ops=sum(len(attempts[s].ops) for s in done))
        self.last_progress = time.monotonic()

    async def _decide(self, tx: WriteTx, op_id: int, status: str, tx_type: str, sigs: list[str],
                      attempts: dict[str, Attempt], obs: dict[str, Observation],
                      failures: dict[str, TxFailure]) -> None:
        landed = [s for s in sigs if obs[s].status is Seen.LANDED]
        if landed:
            best = max(landed, key=lambda s: _RANK.get(obs[s].commitment or "", 0))
            if _RANK.get(obs[best].commitment or "", 0) >= _RANK["confirmed"] and status != "confirmed":
                await operations.move(tx, op_id, "confirmed", reason="landed",
                                      details={"signature": best, "slot": obs[best].slot})
            return
        if status == "confirmed":
            await operations.move(tx, op_id, "unknown",
                                  reason="confirmed signature no longer found",
                                  details={"signatures": sigs})
            return
        if any(obs[s].status is Seen.ALIVE for s in sigs):
            return
        # Every signature of this operation is dead: none landed, none can land any more.
        details: dict[str, Any] = {"signatures": sigs}
        for s in sigs:
            f = failures.get(s)
            if f is None:
                continue
            mine = attempts[s].op_at(f.ix_index) == op_id
            details.update(error=f.describe(), signature=s)
            row = TX_TYPES.get(tx_type)
            rebuild = row.rebuild_on if row is not None else frozenset()
            meaning = row.done_on.get(f.code, "") if row is not None and f.code is not None else ""
            if mine and f.kind is FailureKind.PROGRAM and meaning:
                await self.recovery.done(tx, op_id, meaning, f.describe(), details)
                return
            if mine and f.kind is FailureKind.PROGRAM:
                if f.code is not None and f.code in rebuild:
                    await self.recovery.resign(tx, op_id, "rebuild", f"{f.describe()}: rebuild",
                                               details)
                    return
                await self.recovery.fail(tx, op_id, f.describe(), details)
                log.info("operation failed on chain", op_id=op_id, error=f.describe(), signature=s)
                return
            if mine and f.kind is FailureKind.COMPUTE:
                # For a type whose accounts depend on chain state read before signing (the order
                # PDA index), running out of compute means that state moved: the PDA check for
                # the new index costs more bump search than the simulation measured. Rebuild.
                kind = "rebuild" if rebuild else "insufficient_compute"
                await self.recovery.resign(tx, op_id, kind, f.describe(), details)
                return
        if any(s in failures for s in sigs):
            reason = "its batch failed at another instruction"
            await self.recovery.resign(tx, op_id, "transaction_expired", reason, details)
            return
        await self.recovery.resign(tx, op_id, "transaction_expired",
                                   "blockhash expired and no signature landed", details)

    async def _finalize(self, a: Attempt) -> bool:
        """Decode the events of a finalized transaction and finalize its operations; False when
        the transaction could not be read (the next round tries again)."""
        try:
            txn = await self.pool.transaction(a.signature, "finalized")
        except (RpcUnavailable, RpcRejected) as exc:
            log.warning("getTransaction failed", signature=a.signature, error=str(exc)[:200])
            return False
        if txn is None:
            return False
        meta = txn.get("meta") or {}
        logs = meta.get("logMessages") or []
        programs = program_ids_of(a.serialized)
        per_ix = events_by_instruction(logs, programs, self.idls_by_program)
        rows = [ChainEvent(a.signature, a.op_at(ix_index), program, name,
                           dumps(jsonable(fields)), txn.get("slot"))
                for ix_index, events in per_ix.items() for program, name, fields in events]
        async with self.store.write() as tx:
            await operations.finalize(tx, a.signature, meta.get("fee"), txn.get("slot"), rows,
                                      [op_id for op_id, _ in a.ops])
        self.inflight.discard(a.signature)
        log.debug("transaction finalized", signature=a.signature, ops=len(a.ops), events=len(rows))
        return True
