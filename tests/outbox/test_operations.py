"""The operations repository on a real store: what the submitter, the monitor and an operator's
commands read and change, and the status groups they select by."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from solders.pubkey import Pubkey

from gridnode.chain.txtypes import new_operation
from gridnode.chain.validation import MeterReadingPayload, UserRegistrationPayload
from gridnode.store import Store, StoreError, WriteTx, operations, transitions
from gridnode.store.operations import ChainEvent, NewAttempt, NotRetryable, OperationNotFound
from gridnode.store.readonly import ReadOnlyStore


def reading(meter: str, end: int) -> MeterReadingPayload:
    return MeterReadingPayload(meter_id=meter, interval_start=end - 900, interval_end=end,
                               energy_produced_wh=5, energy_consumed_wh=2)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "db.sqlite")
    yield opened
    await opened.close()


async def two_readings(tx: WriteTx) -> tuple[int, int]:
    a, _ = await operations.add(tx, new_operation(reading("m1", 900)))
    b, _ = await operations.add(tx, new_operation(reading("m2", 900)))
    return a, b


async def test_add_is_idempotent_and_due_honours_the_next_attempt(store: Store) -> None:
    async with store.write() as tx:
        a, created = await operations.add(tx, new_operation(reading("m1", 900)))
        again, created_again = await operations.add(tx, new_operation(reading("m1", 900)))
        b, _ = await operations.add(tx, new_operation(reading("m2", 900)))
    assert (created, created_again, again) == (True, False, a)
    op = await operations.by_key(store, "meter_reading:m1:900")
    assert op is not None and op.id == a and op.status == "pending"
    assert MeterReadingPayload(**op.payload) == reading("m1", 900)
    assert [o.id for o in await operations.due(store, 10)] == [a, b]
    async with store.write() as tx:
        await operations.defer(tx, [a], 60.0, "meter_not_active: later")
    assert [o.id for o in await operations.due(store, 10)] == [b]
    deferred = await operations.get(store, a)
    assert deferred is not None and deferred.last_error == "meter_not_active: later"
    assert deferred.next_attempt_at_ms is not None
    assert [o.id for o in await operations.due(store, 10, at_ms=deferred.next_attempt_at_ms)] \
        == [a, b]


async def test_a_signed_transaction_is_followed_then_sent(store: Store) -> None:
    async with store.write() as tx:
        a, b = await two_readings(tx)
        await operations.record_signed(tx, NewAttempt("sig1", b"bytes", "hash", 150, 20_000, 7),
                                       [(a, 2), (b, 3)])
    assert await operations.status_counts(store) == {"signed": 2}
    flight = await operations.in_flight(store)
    assert list(flight) == ["sig1"] and flight["sig1"].ops == [(a, 2), (b, 3)]
    assert flight["sig1"].op_at(3) == b and flight["sig1"].op_at(None) is None
    assert [s.signature for s in await operations.sendable(store)] == ["sig1"]
    assert await operations.carried_by(store, "sig1", transitions.UNSENT) == [a, b]
    async with store.write() as tx:
        assert await operations.record_sent(tx, "sig1") == [a, b]
    assert await operations.carried_by(store, "sig1", transitions.UNSENT) == []
    [attempt] = await operations.attempts_of(store, a)
    assert (attempt.observed_status, attempt.send_count, attempt.compute_unit_limit) == \
        ("sent", 1, 20_000)
    op = await operations.get(store, a)
    assert op is not None and (op.status, op.attempts) == ("submitted", 1)
    assert [h.new_status for h in await operations.history(store, a)] == \
        ["pending", "signed", "submitted"]


async def test_operator_retry_and_listing(store: Store) -> None:
    async with store.write() as tx:
        a, b = await two_readings(tx)
        await operations.set_recovery_count(tx, a, "simulation_failed", 3)
        await operations.move(tx, a, "parked", reason="budget exhausted", last_error="boom")
    assert await operations.max_recovery_count(store, [a, b], "simulation_failed") == 3
    assert [o.id for o in await operations.newest(store, 10)] == [b, a]
    assert [o.id for o in await operations.newest(store, 10, "parked")] == [a]
    assert [o.id for o in await operations.newest(store, 1)] == [b]
    oldest = await operations.oldest(store, transitions.PENDING)
    assert oldest is not None and oldest.id == b
    async with store.write() as tx:
        with pytest.raises(NotRetryable, match="pending"):
            await operations.operator_retry(tx, b)
        with pytest.raises(OperationNotFound):
            await operations.operator_retry(tx, 999)
        assert await operations.operator_retry(tx, a, "fixed the key") == "parked"
    op = await operations.get(store, a)
    assert op is not None and (op.status, op.attempts, op.next_attempt_at_ms) == \
        ("pending", 0, None)
    last = (await operations.history(store, a))[-1]
    assert (last.old_status, last.new_status, last.reason) == ("parked", "pending",
                                                               "operator retry")
    assert last.details is not None and "fixed the key" in last.details


async def test_counts_per_type_transactions_and_events(store: Store) -> None:
    user = UserRegistrationPayload(user=str(Pubkey.default()), user_type="prosumer", location="x")
    async with store.write() as tx:
        a, b = await two_readings(tx)
        reg, _ = await operations.add(tx, new_operation(user))
        await operations.record_signed(tx, NewAttempt("sig1", b"bytes", "hash", 150, 20_000, 7),
                                       [(a, 0), (b, 1)])
        await operations.record_signed(tx, NewAttempt("sig2", b"bytes", "hash", 150, 20_000, 7),
                                       [(reg, 0)])
        await operations.record_finalized(tx, "sig1", 5000, 42, [
            ChainEvent("sig1", b, "oracle", "MeterReadingSubmitted", '{"timestamp":900}', 42),
            ChainEvent("sig1", a, "oracle", "MeterReadingSubmitted", '{"timestamp":901}', 42),
            ChainEvent("sig1", None, "registry", "Other", "{}", 42)])
    assert await operations.status_counts_by_type(store) == {
        "meter_reading": {"signed": 2}, "user_registration": {"signed": 1}}
    assert await operations.attempt_count(store) == 2
    readings = await operations.events(store, "MeterReadingSubmitted")
    assert [(e.operation_id, e.data, e.slot) for e in readings] == [
        (b, '{"timestamp":900}', 42), (a, '{"timestamp":901}', 42)]
    assert await operations.events(store, "Nothing") == []


async def test_a_read_only_store_reads_the_same_and_writes_nothing(store: Store,
                                                                   tmp_path: Path) -> None:
    async with store.write() as tx:
        await two_readings(tx)
    async with await ReadOnlyStore.open(store.path) as ro:
        assert await operations.status_counts(ro) == {"pending": 2}
        assert [o.id for o in await operations.newest(ro, 10)] == \
            [o.id for o in await operations.newest(store, 10)]
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            await ro.fetchall("DELETE FROM operations")
    assert await operations.status_counts(store) == {"pending": 2}
    with pytest.raises(StoreError, match="no database"):
        await ReadOnlyStore.open(tmp_path / "absent.db")
    assert not (tmp_path / "absent.db").exists()


def test_status_groups_follow_the_transition_table() -> None:
    assert transitions.UNSENT == {"signed", "unknown"}
    assert transitions.UNLANDED < transitions.IN_FLIGHT
    assert not transitions.IN_FLIGHT & transitions.FINAL
    for status in transitions.FINAL - {"finalized"}:
        assert transitions.OPERATION_TRANSITIONS[status] <= {transitions.PENDING}
