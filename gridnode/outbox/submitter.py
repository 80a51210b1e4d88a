"""From pending operations to signed, persisted, broadcast transactions; and re-broadcasting.

A round takes the due pending operations, validates and encodes them, packs them into
transactions, simulates each (compute units, early program errors), signs it, and then - in ONE
store transaction - records the signed bytes, signature, blockhash and lastValidBlockHeight, the
operations it carries, and moves them to `signed`. Only then is it sent (maxRetries 0, no
preflight: we just simulated). Re-broadcasting sends the same stored bytes every couple of seconds
until the monitor sees them land or expire; "already processed" counts as sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from solders.transaction import VersionedTransaction

from gridnode.chain.assembly import (
    MAX_COMPUTE_UNITS,
    Batch,
    build_transaction,
    compute_limit,
    pack,
    priority_price,
    program_ids_of,
    split,
)
from gridnode.chain.blockhash import BlockhashCache
from gridnode.chain.errors import (
    FailureKind,
    classify,
    is_already_processed,
    is_blockhash_not_found,
)
from gridnode.chain.fees import PriorityFees
from gridnode.chain.instructions import InstructionBuilder, PreparedOp, Refused
from gridnode.chain.rpc import RpcEndpoint, RpcPool, RpcRejected, RpcUnavailable
from gridnode.chain.validation import OperationInvalid, Outcome
from gridnode.config.chain import ChainConfig
from gridnode.config.outbox import OutboxConfig
from gridnode.log import get_logger
from gridnode.outbox.inflight import InFlight
from gridnode.outbox.recovery import Recovery
from gridnode.outbox.rounds import run_rounds
from gridnode.store import Store, operations, transitions
from gridnode.store.operations import NewAttempt

log = get_logger(__name__)

PICK_LIMIT = 1024


@dataclass(frozen=True)
class SendResult:
    """An endpoint's answer to a send: accepted ("already processed" included), or rejected."""

    rejected: str | None = None     # the endpoint's message when it refused the transaction

    @property
    def sent(self) -> bool:
        return self.rejected is None


SENT = SendResult()


class Submitter:
    """Builds, signs, persists and sends the due pending operations; re-broadcasts the unlanded.

    It adds every signature it persists to `inflight` (shared with the monitor and the signature
    subscriber) and reads the block height there to stop re-sending what can no longer land.
    """

    def __init__(self, store: Store, pool: RpcPool, builder: InstructionBuilder,
                 blockhashes: BlockhashCache, fees: PriorityFees, inflight: InFlight,
                 recovery: Recovery, chain: ChainConfig, outbox: OutboxConfig) -> None:
        self.store = store
        self.pool = pool
        self.builder = builder
        self.blockhashes = blockhashes
        self.fees = fees
        self.inflight = inflight
        self.recovery = recovery
        self.chain = chain
        self.outbox = outbox
        self.wake = asyncio.Event()
        self.last_progress = time.monotonic()
        self.idls_by_program = {str(p.program_id): p for p in builder.idls.values()}
        self._due_seen = False
        # the blockhash is kept fresh only while there is something to sign or to follow
        blockhashes.wanted = self.busy

    def busy(self) -> bool:
        """Whether the last round found operations to sign, or signatures are in flight."""
        return self._due_seen or bool(self.inflight.signatures())

    # -- loops -------------------------------------------------------------------------------
    async def run(self) -> None:
        await run_rounds("submission", self.submit_once, self.outbox.submit_interval_s,
                         wake=self.wake)

    async def run_rebroadcast(self) -> None:
        await run_rounds("rebroadcast", self.rebroadcast_once, self.outbox.rebroadcast_interval_s,
                         outage_level="debug")

    # -- submission --------------------------------------------------------------------------
    async def submit_once(self) -> int:
        """One round; returns the number of operations signed."""
        due = await operations.due(self.store, PICK_LIMIT)
        self._due_seen = bool(due)
        if not due:
            return 0
        prepared, refused = await self.builder.prepare_many(due)
        for r in refused:
            await self._reject(r.op_id, r.error)
        _log_refused(refused)
        signed = 0
        for batch in pack(prepared, self.builder.signers.fee_payer, self.outbox.batch_size):
            signed += await self._submit_batch(batch)
        if signed:    # at debug, as "transactions finalized": the summary counts them
            self.last_progress = time.monotonic()
            log.debug("operations signed", ops=signed)
        return signed

    async def _reject(self, op_id: int, exc: OperationInvalid) -> None:
        text = f"{exc.code}: {exc.message}"
        async with self.store.write() as tx:
            if exc.outcome is Outcome.FAILED:
                await self.recovery.fail(tx, op_id, text, {"code": exc.code, **exc.details})
            elif exc.outcome is Outcome.PARKED:
                await self.recovery.park(tx, op_id, text, {"code": exc.code, **exc.details})
            else:
                await operations.defer(tx, [op_id], self.outbox.rule_retry_s, text)
        log.debug("operation not sent", op_id=op_id, outcome=exc.outcome, error=text)

    async def _retry_ops(self, ops: list[PreparedOp], kind: str, error: str,
                         delay_s: float = 0.5) -> None:
        async with self.store.write() as tx:
            for op in ops:
                await self.recovery.retry_pending(tx, op.op_id, kind, error, delay_s)

    async def _delay_ops(self, ops: list[PreparedOp], error: str, delay_s: float = 1.0) -> None:
        async with self.store.write() as tx:
            await operations.defer(tx, [op.op_id for op in ops], delay_s, error)

    async def _submit_batch(self, batch: Batch) -> int:
        """Simulate, sign, persist and send one batch (splitting or trimming it as needed)."""
        payer = self.builder.signers.fee_payer
        fresh = False
        while batch.ops:
            bh = await self.blockhashes.get(fresh=fresh)
            probe = build_transaction(batch, payer, bh.blockhash, MAX_COMPUTE_UNITS, 0)
            sim = await self.pool.simulate(probe)
            err = sim.get("err")
            if err is not None:
                failure = classify(err, dict(enumerate(program_ids_of(bytes(probe)))),
                                   self.idls_by_program, sim.get("logs"))
                if failure.kind is FailureKind.BLOCKHASH and not fresh:
                    fresh = True
                    continue
                if failure.kind is FailureKind.BLOCKHASH:
                    await self._retry_ops(batch.ops, "blockhash_expired", failure.describe())
                    return 0
                culprit = batch.op_at(failure.ix_index) if failure.ix_index is not None else None
                if culprit is not None and failure.kind is FailureKind.PROGRAM:
                    text = f"simulation: {failure.describe()}"
                    meaning = culprit.tx_type.done_on.get(failure.code, "") \
                        if failure.code is not None else ""
                    if meaning:
                        async with self.store.write() as tx:
                            await self.recovery.done(tx, culprit.op_id, meaning, text, {})
                        log.info("operation already done", op_id=culprit.op_id, why=meaning)
                    else:
                        kind = ("rebuild" if failure.code in culprit.tx_type.rebuild_on
                                else "simulation_failed")
                        await self._retry_ops([culprit], kind, text, delay_s=0.2)
                        log.info("operation failed simulation", op_id=culprit.op_id, error=text)
                    batch = Batch([o for o in batch.ops if o is not culprit])
                    continue
                if failure.kind is FailureKind.COMPUTE and len(batch.ops) > 1:
                    return sum([await self._submit_batch(b) for b in split(batch)])
                text = f"simulation: {failure.describe()}"
                if failure.kind is FailureKind.TRANSIENT:
                    await self._delay_ops(batch.ops, text)
                    return 0
                kind = ("insufficient_compute" if failure.kind is FailureKind.COMPUTE
                        else "simulation_failed")
                await self._retry_ops(batch.ops, kind, text)
                return 0
            units = int(sim.get("unitsConsumed") or 0)
            margin = self.chain.fees.compute_unit_margin
            if units * margin > MAX_COMPUTE_UNITS and len(batch.ops) > 1:
                return sum([await self._submit_batch(b) for b in split(batch)])
            boost = await self._boost(batch)
            cu = compute_limit(units, margin, boost)
            estimate = await self.fees.estimate([pk for op in batch.ops for pk in op.writable])
            price = priority_price(estimate, cu, len(batch.signers(payer)),
                                   self.chain.fees.max_lamports_per_tx,
                                   self.chain.fees.max_priority_fee_micro_lamports)
            txn = build_transaction(batch, payer, bh.blockhash, cu, price)
            if str(txn.signatures[0]) in self.inflight.signatures():
                # The very same bytes are already in flight: operations with identical
                # instructions (a meter's next mint while its last one is on its way). Wait
                # for that one to land (the simulation then tells) or for a new blockhash.
                await self._delay_ops(batch.ops, "an identical transaction is in flight")
                return 0
            await self._persist(batch, txn, bh.blockhash, bh.last_valid_block_height, cu, price)
            await self._send_first(str(txn.signatures[0]), bytes(txn), [o.op_id for o in batch.ops])
            return len(batch.ops)
        return 0

    async def _boost(self, batch: Batch) -> float:
        n = await operations.max_recovery_count(self.store, [o.op_id for o in batch.ops],
                                                "insufficient_compute")
        return 2.0**n

    async def _persist(self, batch: Batch, txn: VersionedTransaction, blockhash: Any, lvbh: int,
                       cu: int, price: int) -> None:
        sig = str(txn.signatures[0])
        attempt = NewAttempt(sig, bytes(txn), str(blockhash), lvbh, cu, price)
        async with self.store.write() as tx:
            await operations.record_signed(tx, attempt, [
                (op.op_id, first) for op, (first, _) in zip(batch.ops, batch.ix_ranges(),
                                                            strict=True)])
        self.inflight.add(sig)   # subscribe to it right away
        log.debug("transaction signed", signature=sig, ops=len(batch.ops), cu_limit=cu,
                 cu_price=price, last_valid_block_height=lvbh)

    # -- sending -----------------------------------------------------------------------------
    async def _send(self, raw: bytes) -> SendResult:
        """Send bytes with failover; raises RpcUnavailable when no endpoint answered."""
        async def fn(ep: RpcEndpoint) -> SendResult:
            try:
                await self.pool.send(ep, raw)
            except RpcRejected as exc:
                if is_already_processed(exc.message):
                    return SENT
                return SendResult(rejected=exc.message)
            return SENT
        return await self.pool.call(fn, "sendTransaction")

    async def _send_first(self, sig: str, raw: bytes, op_ids: list[int]) -> None:
        try:
            outcome = await self._send(raw)
        except RpcUnavailable as exc:
            # The send may still have reached the chain; by now the monitor may even have seen
            # it land, so only operations still merely `signed` become `unknown`.
            async with self.store.write() as tx:
                for op_id in await operations.in_status(tx, op_ids, {"signed"}):
                    await operations.move(tx, op_id, "unknown",
                                          reason="send failed; outcome unknown",
                                          details={"signature": sig, "error": str(exc)[:300]})
            return
        await self._record_send(sig, outcome)

    async def _record_send(self, sig: str, outcome: SendResult) -> None:
        if outcome.rejected is not None:
            msg = outcome.rejected
            level = log.debug if is_blockhash_not_found(msg) else log.warning
            level("send rejected", signature=sig, error=msg[:300])
            return
        async with self.store.write() as tx:
            await operations.record_sent(tx, sig)

    async def rebroadcast_once(self) -> int:
        """Send again the latest live signature of every in-flight operation."""
        n = 0
        for a in await operations.sendable(self.store):
            if not self.inflight.may_land(a.last_valid_block_height):
                continue
            try:
                outcome = await self._send(a.serialized)
            except RpcUnavailable:
                break
            n += 1
            unsent = a.observed_status == "unsent"
            if unsent or outcome.sent:
                if unsent or await operations.carried_by(self.store, a.signature,
                                                         transitions.UNSENT):
                    await self._record_send(a.signature, outcome)
        return n


def _log_refused(refused: Sequence[Refused]) -> None:
    """One info line per outcome and reason of a round (registrations of 50 meters waiting for
    their owner's are one line, not 50; each operation's own line is at debug)."""
    groups: dict[tuple[Outcome, str], list[Refused]] = {}
    for r in refused:
        groups.setdefault((r.error.outcome, r.error.code), []).append(r)
    for (outcome, code), rs in groups.items():
        log.info("operations not sent", ops=len(rs), outcome=outcome, code=code,
                 error=f"{code}: {rs[0].error.message}", op_ids=_ids([r.op_id for r in rs]))


def _ids(ids: list[int], shown: int = 5) -> str:
    head = ",".join(map(str, ids[:shown]))
    return head if len(ids) <= shown else f"{head},... ({len(ids)})"
