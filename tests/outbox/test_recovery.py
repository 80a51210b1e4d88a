"""The recovery table applied per operation, with the real store."""

from __future__ import annotations

from pathlib import Path

from gridnode.chain.txtypes import new_operation
from gridnode.chain.validation import MeterReadingPayload
from gridnode.config.outbox import RecoveryRule, RecoveryTable
from gridnode.outbox.recovery import Recovery
from gridnode.store import Store, operations


async def _op(store: Store, key: str) -> int:
    reading = MeterReadingPayload(meter_id="m1", interval_start=0, interval_end=900,
                                  energy_produced_wh=1, energy_consumed_wh=0)
    async with store.write() as tx:
        op_id, _ = await operations.add(tx, new_operation(reading, key))
    return op_id


async def test_budget_then_park_then_operator_gets_a_fresh_budget(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "db.sqlite")
    rec = Recovery(RecoveryTable(simulation_failed=RecoveryRule(max=1)))
    op = await _op(store, "k1")
    async with store.write() as tx:
        assert await rec.retry_pending(tx, op, "simulation_failed", "boom", 0.0)
    row = await store.fetchone("SELECT status, last_error FROM operations WHERE id = ?", (op,))
    assert (row["status"], row["last_error"]) == ("pending", "boom")
    async with store.write() as tx:
        assert not await rec.retry_pending(tx, op, "simulation_failed", "boom again", 0.0)
    row = await store.fetchone("SELECT status FROM operations WHERE id = ?", (op,))
    assert row["status"] == "parked"
    left = await store.fetchone("SELECT count(*) AS n FROM operation_recovery WHERE operation_id = ?",
                                (op,))
    assert left["n"] == 0
    audit = await store.fetchall("SELECT new_status FROM audit_log WHERE entity_id = ? ORDER BY id",
                                 (op,))
    assert [a["new_status"] for a in audit] == ["pending", "parked"]
    await store.close()


async def test_resign_goes_through_expired(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "db.sqlite")
    rec = Recovery(RecoveryTable(transaction_expired=RecoveryRule(max=1)))
    op = await _op(store, "k2")
    for expected in ("pending", "parked"):
        async with store.write() as tx:
            await tx.set_status("operation", op, "signed", reason="t")
            await rec.resign(tx, op, "transaction_expired", "expired", {})
        row = await store.fetchone("SELECT status FROM operations WHERE id = ?", (op,))
        assert row["status"] == expected
    audit = await store.fetchall("SELECT new_status FROM audit_log WHERE entity_id = ? ORDER BY id",
                                 (op,))
    assert [a["new_status"] for a in audit] == [
        "pending", "signed", "expired", "pending", "signed", "expired", "parked"]
    await store.close()
