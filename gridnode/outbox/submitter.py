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
import json
import time
from typing import Any

from gridnode.chain.assembly import (
    MAX_COMPUTE_UNITS,
    Batch,
    build_transaction,
    compute_limit,
    pack,
    priority_price,
    split,
)
from gridnode.chain.blockhash import BlockhashCache
from gridnode.chain.errors import classify, is_already_processed, is_blockhash_not_found
from gridnode.chain.fees import PriorityFees
from gridnode.chain.instructions import InstructionBuilder, PreparedOp
from gridnode.chain.rpc import RpcEndpoint, RpcPool, RpcRejected, RpcUnavailable
from gridnode.chain.validation import OperationInvalid, RuleNotMet
from gridnode.config.chain import ChainConfig
from gridnode.config.outbox import OutboxConfig
from gridnode.log import get_logger
from gridnode.outbox.monitor import Monitor, program_ids_of
from gridnode.outbox.recovery import Recovery
from gridnode.outbox.rounds import run_rounds
from gridnode.store import Store, now_ms

log = get_logger(__name__)

PICK_LIMIT = 1024


class Submitter:
    def __init__(self, store: Store, pool: RpcPool, builder: InstructionBuilder,
                 blockhashes: BlockhashCache, fees: PriorityFees, monitor: Monitor,
                 recovery: Recovery, chain: ChainConfig, outbox: OutboxConfig) -> None:
        self.store = store
        self.pool = pool
        self.builder = builder
        self.blockhashes = blockhashes
        self.fees = fees
        self.monitor = monitor
        self.recovery = recovery
        self.chain = chain
        self.outbox = outbox
        self.wake = asyncio.Event()
        self.last_progress = time.monotonic()
        self.idls_by_program = {str(p.program_id): p for p in builder.idls.values()}

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
        rows = await self.store.fetchall(
            "SELECT id, tx_type, payload FROM operations WHERE status = 'pending' "
            "AND (next_attempt_at_ms IS NULL OR next_attempt_at_ms <= ?) ORDER BY id LIMIT ?",
            (now_ms(), PICK_LIMIT))
        if not rows:
            return 0
        ops = [(int(r["id"]), r["tx_type"], json.loads(r["payload"])) for r in rows]
        meters = [p.get("meter_id") for _, t, p in ops if t == "meter_reading" and p.get("meter_id")]
        meter_state: dict[str, str | None] = {}
        if meters and self.builder.settings.require_registered_meters:
            meter_state = await self.builder.check_meters([str(m) for m in meters])
        prepared: list[PreparedOp] = []
        for op_id, tx_type, payload in ops:
            try:
                if tx_type == "meter_reading" and meter_state.get(str(payload.get("meter_id"))):
                    raise RuleNotMet("meter_not_active", str(meter_state[str(payload["meter_id"])]))
                prepared.append(await self.builder.prepare(
                    op_id, tx_type, payload, rules_checked=tx_type == "meter_reading"))
            except OperationInvalid as exc:
                await self._reject(op_id, exc)
        signed = 0
        for batch in pack(prepared, self.builder.signers.fee_payer, self.outbox.batch_size):
            signed += await self._submit_batch(batch)
        if signed:
            self.last_progress = time.monotonic()
        return signed

    async def _reject(self, op_id: int, exc: OperationInvalid) -> None:
        text = f"{exc.code}: {exc.message}"
        async with self.store.write() as tx:
            if exc.outcome == "failed":
                await self.recovery.fail(tx, op_id, text, {"code": exc.code, **exc.details})
            elif exc.outcome == "parked":
                await self.recovery.park(tx, op_id, text, {"code": exc.code, **exc.details})
            else:
                await tx.execute(
                    "UPDATE operations SET next_attempt_at_ms = ?, last_error = ? WHERE id = ?",
                    (now_ms() + int(self.outbox.rule_retry_s * 1000), text, op_id))
        log.info("operation not sent", op_id=op_id, outcome=exc.outcome, error=text)

    async def _retry_ops(self, ops: list[PreparedOp], kind: str, error: str,
                         delay_s: float = 0.5) -> None:
        async with self.store.write() as tx:
            for op in ops:
                await self.recovery.retry_pending(tx, op.op_id, kind, error, delay_s)

    async def _delay_ops(self, ops: list[PreparedOp], error: str, delay_s: float = 1.0) -> None:
        async with self.store.write() as tx:
            await tx.executemany(
                "UPDATE operations SET next_attempt_at_ms = ?, last_error = ? WHERE id = ?",
                [(now_ms() + int(delay_s * 1000), error, op.op_id) for op in ops])

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
                                   self.idls_by_program)
                if failure.kind == "blockhash" and not fresh:
                    fresh = True
                    continue
                if failure.kind == "blockhash":
                    await self._retry_ops(batch.ops, "blockhash_expired", failure.describe())
                    return 0
                culprit = batch.op_at(failure.ix_index) if failure.ix_index is not None else None
                if culprit is not None and failure.kind == "program":
                    text = f"simulation: {failure.describe()}"
                    kind = "rebuild" if failure.code in culprit.tx_type.rebuild_on else "simulation_failed"
                    await self._retry_ops([culprit], kind, text, delay_s=0.2)
                    log.info("operation failed simulation", op_id=culprit.op_id, error=text)
                    batch = Batch([o for o in batch.ops if o is not culprit])
                    continue
                if failure.kind == "compute" and len(batch.ops) > 1:
                    return sum([await self._submit_batch(b) for b in split(batch)])
                text = f"simulation: {failure.describe()}"
                if failure.kind == "transient":
                    await self._delay_ops(batch.ops, text)
                    return 0
                kind = "insufficient_compute" if failure.kind == "compute" else "simulation_failed"
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
            await self._persist(batch, txn, bh.blockhash, bh.last_valid_block_height, cu, price)
            await self._send_first(str(txn.signatures[0]), bytes(txn), [o.op_id for o in batch.ops])
            return len(batch.ops)
        return 0

    async def _boost(self, batch: Batch) -> float:
        ids = [o.op_id for o in batch.ops]
        row = await self.store.fetchone(
            "SELECT max(count) AS n FROM operation_recovery WHERE kind = 'insufficient_compute' "
            f"AND operation_id IN ({','.join('?' * len(ids))})", ids)
        n = int(row["n"]) if row is not None and row["n"] is not None else 0
        return 2.0**n

    async def _persist(self, batch: Batch, txn: Any, blockhash: Any, lvbh: int, cu: int,
                       price: int) -> None:
        sig = str(txn.signatures[0])
        ts = now_ms()
        async with self.store.write() as tx:
            await tx.execute(
                "INSERT INTO tx_attempts (signature, serialized, blockhash, last_valid_block_height, "
                "compute_unit_limit, priority_fee_micro_lamports, created_at_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)", (sig, bytes(txn), str(blockhash), lvbh, cu, price, ts))
            for op, (first, _) in zip(batch.ops, batch.ix_ranges(), strict=True):
                await tx.execute(
                    "INSERT INTO tx_attempt_operations (signature, operation_id, ix_index) "
                    "VALUES (?, ?, ?)", (sig, op.op_id, first))
                await tx.set_status("operation", op.op_id, "signed", reason="signed",
                                    details={"signature": sig, "batch": len(batch.ops),
                                             "last_valid_block_height": lvbh, "cu_limit": cu,
                                             "cu_price": price})
                await tx.execute(
                    "UPDATE operations SET attempts = attempts + 1, next_attempt_at_ms = NULL "
                    "WHERE id = ?", (op.op_id,))
        self.monitor.inflight_signatures.add(sig)   # subscribe to it right away
        log.info("transaction signed", signature=sig, ops=len(batch.ops), cu_limit=cu,
                 cu_price=price, last_valid_block_height=lvbh)

    # -- sending -----------------------------------------------------------------------------
    async def _send(self, raw: bytes) -> str:
        """Send bytes with failover; returns "sent" | "rejected:<message>"; raises RpcUnavailable."""
        async def fn(ep: RpcEndpoint) -> str:
            try:
                await self.pool.send(ep, raw)
            except RpcRejected as exc:
                if is_already_processed(exc.message):
                    return "sent"
                return f"rejected:{exc.message}"
            return "sent"
        return await self.pool.call(fn, "sendTransaction")

    async def _send_first(self, sig: str, raw: bytes, op_ids: list[int]) -> None:
        try:
            outcome = await self._send(raw)
        except RpcUnavailable as exc:
            # The send may still have reached the chain; by now the monitor may even have seen
            # it land, so only operations still merely `signed` become `unknown`.
            async with self.store.write() as tx:
                rows = await tx.fetchall(
                    f"SELECT id FROM operations WHERE status = 'signed' AND id IN "
                    f"({','.join('?' * len(op_ids))})", op_ids)
                for r in rows:
                    await tx.set_status("operation", int(r["id"]), "unknown",
                                        reason="send failed; outcome unknown",
                                        details={"signature": sig, "error": str(exc)[:300]})
            return
        await self._record_send(sig, outcome)

    async def _record_send(self, sig: str, outcome: str) -> None:
        if outcome != "sent":
            msg = outcome.removeprefix("rejected:")
            level = log.debug if is_blockhash_not_found(msg) else log.warning
            level("send rejected", signature=sig, error=msg[:300])
            return
        ts = now_ms()
        async with self.store.write() as tx:
            await tx.execute(
                "UPDATE tx_attempts SET observed_status = CASE observed_status WHEN 'unsent' "
                "THEN 'sent' ELSE observed_status END, first_sent_at_ms = COALESCE(first_sent_at_ms, ?), "
                "last_sent_at_ms = ?, send_count = send_count + 1 WHERE signature = ?",
                (ts, ts, sig))
            rows = await tx.fetchall(
                "SELECT o.id FROM operations o JOIN tx_attempt_operations t ON t.operation_id = o.id "
                "WHERE t.signature = ? AND o.status IN ('signed', 'unknown')", (sig,))
            for r in rows:
                await tx.set_status("operation", int(r["id"]), "submitted", reason="sent",
                                    details={"signature": sig})

    async def rebroadcast_once(self) -> int:
        """Send again the latest live signature of every in-flight operation."""
        rows = await self.store.fetchall(
            "SELECT DISTINCT a.signature, a.serialized, a.last_valid_block_height, a.observed_status "
            "FROM tx_attempts a JOIN tx_attempt_operations t ON t.signature = a.signature "
            "JOIN operations o ON o.id = t.operation_id "
            "WHERE o.status IN ('signed', 'submitted', 'unknown') "
            "AND a.observed_status IN ('unsent', 'sent')")
        height = self.monitor.block_height
        n = 0
        for r in rows:
            if height is not None and height > int(r["last_valid_block_height"]):
                continue
            try:
                outcome = await self._send(bytes(r["serialized"]))
            except RpcUnavailable:
                break
            n += 1
            if r["observed_status"] == "unsent" or outcome == "sent":
                if r["observed_status"] == "unsent" or await self._needs_submitted(r["signature"]):
                    await self._record_send(r["signature"], outcome)
        return n

    async def _needs_submitted(self, sig: str) -> bool:
        row = await self.store.fetchone(
            "SELECT count(*) AS n FROM operations o JOIN tx_attempt_operations t "
            "ON t.operation_id = o.id WHERE t.signature = ? AND o.status IN ('signed', 'unknown')",
            (sig,))
        return bool(row and row["n"])
