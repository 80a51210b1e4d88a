"""The engine and the upstream destination against the real platform simulator (HTTP on a free
loopback port): exactly once after dedupe, order per meter, backoff and Retry-After, parking and
replay, restarts."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from gridnode.store import Store
from gridnode.store import deliveries as stored
from simulators.platform import PlatformSimulator
from tests.deliveries.helpers import (
    assert_in_order_once,
    db_path,
    engine_for,
    finalize_readings,
    running,
    wait_for,
)
from tests.processes import gridnode

METERS = ["m1", "m2", "m3"]
ENDS = [1_800_000_000 + 900 * i for i in range(12)]


def held(platform: PlatformSimulator) -> int:
    return len(platform.items())


async def test_every_interval_once_in_order_per_meter_through_faults(
        store: Store, platform: PlatformSimulator, secret: str) -> None:
    await finalize_readings(store, METERS, ENDS)
    # stored then the connection dropped (the node cannot know), slow, a 500 and a timeout
    platform.add_fault(mode="close")
    platform.add_fault(mode="slow", delay_s=0.3)
    platform.add_fault(status=500)
    platform.add_fault(mode="timeout", delay_s=3)
    engine, _ = engine_for(store, platform, [secret], batch_size=7, timeout_s=1.0)
    async with running(engine):
        await wait_for(lambda: held(platform) == len(METERS) * len(ENDS), 20, "every interval")
        await wait_for(lambda: _all_delivered(store), 5, "every item marked delivered")
    assert_in_order_once(platform, METERS, ENDS)
    # the batch whose answer was lost came again: same Idempotency-Key, same bytes, so the
    # platform answered it from what it stored, and held its items once
    assert platform.stats["replayed"] >= 1
    assert platform.stats["bad_signature"] == 0
    item = platform.items(meter_id="m2")[0]["item"]
    assert item["key"] == f"test-node:interval:m2:{ENDS[0]}"
    assert item["data"]["export_wh"] == 1037 and item["data"]["import_wh"] == 200


async def _all_delivered(store: Store) -> bool:
    counts = await stored.status_counts(store)
    return set(counts.get("upstream", {})) == {"delivered"}


async def test_a_429_storm_is_ridden_out_without_a_tight_loop(
        store: Store, platform: PlatformSimulator, secret: str) -> None:
    await finalize_readings(store, METERS, ENDS[:4])
    platform.add_fault(status=429, count=3, retry_after=1)
    platform.add_fault(status=429, count=4)         # no Retry-After: the backoff decides
    engine, _ = engine_for(store, platform, [secret], batch_size=100, retry_base_s=0.2,
                           retry_max_s=0.4)
    started = time.monotonic()
    async with running(engine):
        await wait_for(lambda: held(platform) == 12, 20, "every item after the storm")
    took = time.monotonic() - started
    reqs = platform.requests()
    assert [r["status"] for r in reqs] == [429] * 7 + [200], reqs
    gaps = [(b["at_ms"] - a["at_ms"]) / 1000 for a, b in zip(reqs, reqs[1:], strict=False)]
    assert all(g >= 0.95 for g in gaps[:3]), gaps          # Retry-After: 1 honoured
    assert all(0.19 <= g <= 0.6 for g in gaps[3:]), gaps   # between retry_base_s and the cap
    assert took >= 3 + 4 * 0.2
    assert_in_order_once(platform, METERS, ENDS[:4])


async def test_a_5xx_burst_then_recovery(store: Store, platform: PlatformSimulator,
                                         secret: str) -> None:
    await finalize_readings(store, METERS, ENDS[:3])
    platform.add_fault(status=503, count=3)
    platform.add_fault(status=502, count=2)
    engine, _ = engine_for(store, platform, [secret], retry_base_s=0.1, retry_max_s=0.3)
    async with running(engine):
        await wait_for(lambda: held(platform) == 9, 20, "delivery after the burst")
        await wait_for(lambda: _all_delivered(store), 5, "items marked delivered")
    reqs = platform.requests()
    assert [r["status"] for r in reqs] == [503] * 3 + [502] * 2 + [200]
    row = await stored.destination(store, "upstream")
    assert row is not None and row.failures == 0 and row.next_attempt_at_ms is None
    items = await stored.items(store, destination="upstream")
    assert {i.attempts for i in items} == {6}
    assert_in_order_once(platform, METERS, ENDS[:3])


async def test_400_parks_the_items_with_the_answer_and_the_cli_replays_them(
        tmp_path: Path, store: Store, platform: PlatformSimulator, secret: str) -> None:
    await finalize_readings(store, METERS, ENDS[:2])
    platform.add_fault(status=400)
    engine, _ = engine_for(store, platform, [secret])
    async with running(engine):
        await wait_for(lambda: _parked(store, 6), 10, "six parked items")
        # parked items hold nothing back: later intervals go through
        await finalize_readings(store, METERS, ENDS[2:4])
        await wait_for(lambda: held(platform) == 6, 10, "the later intervals")
        listing = await gridnode("deliveries", "list", "--db", str(db_path(tmp_path)),
                                 "--status", "parked")
        assert listing.returncode == 0, listing.stderr
        assert "upstream (upstream) active" in listing.stdout
        assert listing.stdout.count(" parked ") == 6
        first = min(i.id for i in await stored.items(store, status="parked"))
        shown = await gridnode("deliveries", "show", "--db", str(db_path(tmp_path)), str(first))
        assert "answer: HTTP 400: " in shown.stdout and "fault injected" in shown.stdout
        assert "pending -> parked: refused by the destination" in shown.stdout
        replay = await gridnode("deliveries", "replay", "--db", str(db_path(tmp_path)),
                                "--destination", "upstream", "--reason", "platform fixed")
        assert replay.returncode == 0, replay.stderr
        assert replay.stdout.count("parked -> pending") == 6
        await wait_for(lambda: held(platform) == 12, 10, "the replayed items")
    keys = [h["key"] for h in platform.items()]
    assert len(set(keys)) == 12
    shown = await gridnode("deliveries", "show", "--db", str(db_path(tmp_path)), str(first))
    assert "status: delivered" in shown.stdout
    assert "parked -> pending: operator replay" in shown.stdout
    status = await gridnode("status", "--db", str(db_path(tmp_path)))
    assert "deliveries:\n  upstream (upstream) active: pending=0 delivered=12 parked=0, " \
        "last delivery " in status.stdout, status.stdout + status.stderr
    again = await gridnode("deliveries", "replay", "--db", str(db_path(tmp_path)), str(first))
    assert again.returncode == 0 and "delivered -> pending" in again.stdout
    nothing = await gridnode("deliveries", "replay", "--db", str(db_path(tmp_path)))
    assert nothing.returncode == 2


async def _parked(store: Store, n: int) -> bool:
    return len(await stored.items(store, status="parked")) == n


async def test_items_the_platform_rejects_are_parked_alone(
        store: Store, platform: PlatformSimulator, secret: str) -> None:
    await finalize_readings(store, METERS, ENDS[:3])
    platform.add_fault(mode="reject", match=":m2:")
    engine, _ = engine_for(store, platform, [secret])
    async with running(engine):
        await wait_for(lambda: _parked(store, 3), 10, "m2's items parked")
        await wait_for(lambda: held(platform) == 6, 10, "the others delivered")
    parked = await stored.items(store, status="parked")
    assert {p.order_key for p in parked} == {"m2"}
    assert all(p.answer and "rejected (fault)" in p.answer for p in parked)


async def test_410_disables_the_destination_until_an_operator_enables_it(
        tmp_path: Path, store: Store, platform: PlatformSimulator, secret: str) -> None:
    await finalize_readings(store, METERS, ENDS[:1])
    platform.add_fault(status=410)
    engine, _ = engine_for(store, platform, [secret])
    async with running(engine):
        await wait_for(lambda: _disabled(store), 10, "the destination disabled")
        await asyncio.sleep(0.5)
        assert len(platform.requests()) == 1            # no request while disabled
        out = await gridnode("deliveries", "replay", "--db", str(db_path(tmp_path)),
                             "--destination", "upstream")
        assert "destination upstream: disabled -> active" in out.stdout, out.stderr
        await wait_for(lambda: held(platform) == 3, 10, "delivery once enabled")


async def _disabled(store: Store) -> bool:
    row = await stored.destination(store, "upstream")
    return row is not None and row.status == "disabled"


async def test_a_wrong_secret_is_refused_and_nothing_is_held(
        store: Store, platform: PlatformSimulator) -> None:
    from gridnode.deliveries import signing

    await finalize_readings(store, METERS, ENDS[:1])
    engine, _ = engine_for(store, platform, [signing.generate_secret()])
    async with running(engine):
        await wait_for(lambda: _parked(store, 3), 10, "items parked on 401")
    assert platform.stats["bad_signature"] == 1 and held(platform) == 0


async def test_rotation_two_secrets_sign_and_either_verifies(
        tmp_path: Path, store: Store, secret: str) -> None:
    from gridnode.deliveries import signing

    new = signing.generate_secret()
    async with PlatformSimulator(tmp_path / "p2.db", [new]) as platform:   # already rotated
        await finalize_readings(store, METERS, ENDS[:1])
        engine, _ = engine_for(store, platform, [secret, new])
        async with running(engine):
            await wait_for(lambda: held(platform) == 3, 10, "delivery signed with both")
        assert platform.stats["bad_signature"] == 0


async def test_the_cursor_and_the_items_survive_a_restart(
        tmp_path: Path, platform: PlatformSimulator, secret: str) -> None:
    path = db_path(tmp_path)
    store = await Store.open(path)
    await finalize_readings(store, METERS, ENDS[:4])
    engine, _ = engine_for(store, platform, [secret], batch_size=5)
    async with running(engine):
        await wait_for(lambda: held(platform) == 12, 10, "the first intervals")
        await wait_for(lambda: _all_delivered(store), 5, "marked delivered")
        # the next ones are captured, then the platform fails them (a restart mid-backoff)
        platform.add_fault(status=503, count=1, retry_after=1)
        await finalize_readings(store, METERS, ENDS[4:6])
        await wait_for(lambda: len(platform.requests()) == 4, 10, "the 503")
    await store.close()
    store = await Store.open(path)
    pending = await stored.items(store, status="pending")
    assert len(pending) == 6 and sorted(p.attempts for p in pending) == [0] + [1] * 5
    await finalize_readings(store, METERS, ENDS[6:8])
    engine, _ = engine_for(store, platform, [secret], batch_size=5)
    async with running(engine):
        await wait_for(lambda: held(platform) == 24, 15, "everything after the restart")
    assert platform.stats["duplicates"] == 0         # nothing delivered was sent again
    assert_in_order_once(platform, METERS, ENDS[:8])
    await store.close()


async def test_settlements_and_operation_outcomes_go_up_too(
        store: Store, platform: PlatformSimulator, secret: str) -> None:
    from gridnode.store import events, now_ms

    row = {"id": 7, "trade_record": "TrAdE1111111111111111111111111111111111111",
           "status": "settled", "energy_wh": 1500, "token_amount": 1_500_000_000,
           "signature": "5igSig"}
    async with store.write() as tx:
        await events.append(tx, events.EventType.SETTLEMENT_COMPLETED, row, at_ms=now_ms())
        await events.append(tx, events.EventType.SETTLEMENT_DEFAULTED, {**row, "status":
                                                                         "defaulted"},
                            at_ms=now_ms())
        op_id, _ = await tx.add_operation("order_cancel", {"order": "Ord1"}, "order_cancel:Ord1")
        await tx.set_status("operation", op_id, "failed", reason="program error 6001",
                            last_error="custom program error: 0x1771")
        await events.append(tx, events.EventType.ALERT_RAISED, {"name": "rpc_down"},
                            at_ms=now_ms())      # not for upstream
    engine, _ = engine_for(store, platform, [secret])
    async with running(engine):
        await wait_for(lambda: held(platform) == 3, 10, "three items")
    got = {h["type"]: h for h in platform.items()}
    assert set(got) == {"settlement.completed", "settlement.defaulted", "operation.outcome"}
    assert got["settlement.completed"]["key"] == f"test-node:settlement:{row['trade_record']}" \
        ":completed"
    assert got["settlement.completed"]["item"]["data"]["token_amount"] == 1_500_000_000
    assert got["settlement.defaulted"]["key"].startswith(
        f"test-node:settlement:{row['trade_record']}:defaulted:")
    outcome = got["operation.outcome"]["item"]["data"]
    assert (outcome["tx_type"], outcome["status"], outcome["error"]) == (
        "order_cancel", "failed", "custom program error: 0x1771")


async def test_a_destination_removed_while_running_is_not_brought_back(
        store: Store, platform: PlatformSimulator, secret: str) -> None:
    await finalize_readings(store, METERS, ENDS[:1])
    engine, _ = engine_for(store, platform, [secret])
    async with running(engine):
        await wait_for(lambda: held(platform) == 3, 10, "the first items")
        async with store.write() as tx:         # as `gridnode webhooks remove` does for its own
            assert await stored.remove_destination(tx, "upstream")
        await finalize_readings(store, METERS, ENDS[1:2])
        await asyncio.sleep(0.5)
        assert await stored.destination(store, "upstream") is None
        assert held(platform) == 3 and await stored.items(store) == []


async def test_a_replayed_item_is_a_new_request_when_the_platform_kept_its_refusal(
        store: Store, platform: PlatformSimulator, secret: str) -> None:
    await finalize_readings(store, ["m1"], ENDS[:1])
    platform.add_fault(status=400, remember=True)     # kept under the request's key
    engine, _ = engine_for(store, platform, [secret])
    async with running(engine):
        await wait_for(lambda: _parked(store, 1), 10, "the item parked")
        (item,) = await stored.items(store, status="parked")
        async with store.write() as tx:
            await stored.replay(tx, item.id, "platform fixed")
        await wait_for(lambda: held(platform) == 1, 10, "the replayed item held")
    keys = [r["idempotency_key"] for r in platform.requests()]
    assert [r["status"] for r in platform.requests()] == [400, 200] and keys[0] != keys[1]


async def test_a_stored_server_error_is_not_answered_forever(
        store: Store, platform: PlatformSimulator, secret: str) -> None:
    await finalize_readings(store, ["m1"], ENDS[:1])
    platform.add_fault(status=500, remember=True)     # kept under the request's key
    engine, _ = engine_for(store, platform, [secret], retry_base_s=0.02, retry_max_s=0.05)
    async with running(engine):
        await wait_for(lambda: held(platform) == 1, 10, "the item held")
    reqs = platform.requests()
    assert [r["status"] for r in reqs] == [500] * 5 + [200]
    assert [r["note"] for r in reqs[1:5]] == ["replayed"] * 4     # same key: the stored answer
    assert reqs[5]["idempotency_key"] != reqs[0]["idempotency_key"]
