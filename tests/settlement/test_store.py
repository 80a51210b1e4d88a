"""The settlements table: written with its settle_trade operation, statuses only through the
transition table with audit rows, events with the row's fields, operator retry and write-off,
and the settlement queue alert."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from solders.keypair import Keypair

from gridnode.alerts import AlertsSubsystem
from gridnode.chain.txtypes import new_operation
from gridnode.chain.validation import SettleTradePayload
from gridnode.config.alerts import AlertsConfig
from gridnode.store import Store, operations, settlements
from gridnode.store import alerts as stored_alerts
from gridnode.store.db import TransitionError
from gridnode.store.settlements import Trade


def key() -> str:
    return str(Keypair().pubkey())


def trade(value: int = 62_500_000) -> tuple[Trade, operations.NewOperation]:
    t = Trade(key(), key(), key(), key(), key(), 500, 125_000, value, value // 400, 1_800_000_000)
    op = new_operation(SettleTradePayload(trade_record=t.trade_record, seller=t.seller,
                                          buyer=t.buyer, seller_token_account=key(),
                                          buyer_token_account=key(), signer=t.seller))
    return t, op


async def test_a_settlement_is_its_operation_and_moves_only_as_allowed(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "n.db")
    try:
        t, op = trade()
        async with store.write() as tx:
            sid, created = await settlements.add(tx, t, op, source="test")
            again, created_again = await settlements.add(tx, t, op, source="test")
        assert created and not created_again and again == sid
        s = await settlements.get(store, sid)
        assert s is not None and s.status == "queued" and s.operation_id is not None
        assert (s.net_to_seller, s.token_amount) == (t.total_value - t.fee, 500 * 10**6)
        assert (await operations.get(store, s.operation_id)).idempotency_key == \
            f"settle_trade:{t.trade_record}"  # type: ignore[union-attr]
        with pytest.raises(TransitionError):
            async with store.write() as tx:
                await settlements.move(tx, sid, "written_off", reason="no")
        async with store.write() as tx:
            done = await settlements.mark_settled(tx, sid, "SIG")
        assert done.status == "settled" and done.signature == "SIG" and done.settled_at_ms
        assert [(h.old_status, h.new_status) for h in await settlements.history(store, sid)] == \
            [(None, "queued"), ("queued", "submitted"), ("submitted", "settled")]
        ev = await store.fetchall("SELECT data FROM events WHERE type = 'settlement.completed'")
        assert [json.loads(e["data"])["energy_wh"] for e in ev] == [500]
        with pytest.raises(settlements.NotDefaulted):
            async with store.write() as tx:
                await settlements.write_off(tx, sid)

        t2, op2 = trade()
        async with store.write() as tx:
            sid2, _ = await settlements.add(tx, t2, op2, source="test")
            s2 = await settlements.get(tx, sid2)
            assert s2 is not None and s2.operation_id is not None
            await operations.move(tx, s2.operation_id, "failed", reason="test")
            await settlements.default(tx, sid2, "GRID short", {"not_delivered_wh": 500})
        d = await settlements.get(store, sid2)
        assert d is not None and d.status == "defaulted" and d.reversal == {"not_delivered_wh": 500}
        async with store.write() as tx:
            await settlements.operator_retry(tx, sid2, "topped up")
        assert (await operations.get(store, d.operation_id or 0)).status == "pending"  # type: ignore[union-attr]
        async with store.write() as tx:
            await settlements.default(tx, sid2, "still short", {"not_delivered_wh": 500})
            await settlements.write_off(tx, sid2, "lost")
        assert (await settlements.get(store, sid2)).status == "written_off"  # type: ignore[union-attr]
        assert await settlements.status_counts(store) == {"settled": 1, "written_off": 1}
    finally:
        await store.close()


async def test_more_than_the_limit_queued_raises_the_settlement_queue_alert(
        tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "n.db")
    try:
        alerts = AlertsSubsystem(AlertsConfig(settlement_queue_max=2), store, [])
        async with store.write() as tx:
            for _ in range(3):
                await settlements.add(tx, *trade(), source="test")
        await alerts.evaluate()
        raised = {a.name: a for a in await stored_alerts.all_alerts(store) if a.raised}
        assert "settlement_queue" in raised and raised["settlement_queue"].value == 3
        async with store.write() as tx:
            for s in await settlements.all_rows(tx):
                await settlements.mark_settled(tx, s.id, None)
        await alerts.evaluate()
        raised = {a.name for a in await stored_alerts.all_alerts(store) if a.raised}
        assert "settlement_queue" not in raised
    finally:
        await store.close()
