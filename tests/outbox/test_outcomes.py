"""How operations end when they cannot simply land: failed with the decoded Anchor error,
parked for an operator (and sent after `gridnode outbox retry`), parked when too old."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path

from gridnode.chain.signers import Signers
from gridnode.chain.txtypes import new_operation
from gridnode.chain.validation import MeterRegistrationPayload
from gridnode.outbox.pipeline import Pipeline
from gridnode.store import Store, operations
from simulators.chain.localnet import Localnet
from tests.e2e.harness import (
    REPO,
    add_readings,
    all_finalized,
    bootstrap_signers,
    chain_config,
    oracle_total_readings,
    outbox_config,
    recent_intervals,
    register_users,
    running,
    status_counts,
    wait_for,
)
from tests.net import pick_free_port


async def op_row(store: Store, key: str):  # noqa: ANN201 - sqlite row
    return await store.fetchone("SELECT * FROM operations WHERE idempotency_key = ?", (key,))


async def test_landed_program_error_fails_with_the_anchor_error_name(tmp_path: Path) -> None:
    """Two owners register the same meter id at once: both pass simulation (nothing landed yet),
    the first lands, the second lands failed and ends `failed` naming the error."""
    async with Localnet(port=pick_free_port(), manual=True, state_dir=tmp_path / "chain") as net:
        clock_on = asyncio.Event()

        async def clock() -> None:
            while True:
                await clock_on.wait()
                await net.advance(1)
                await asyncio.sleep(0.01)

        signers = bootstrap_signers(net.bootstrap)
        alice, bob = list(signers.users)[:2]
        store = await Store.open(tmp_path / "node.sqlite")
        pipeline = Pipeline(store, chain_config([net.rpc_url]), outbox_config(), signers)
        ticker = asyncio.create_task(clock())
        try:
            async with running(pipeline):
                await register_users(store, [alice, bob], "consumer")
                clock_on.set()
                await wait_for(lambda: all_finalized(store), 60, "users registered")
                clock_on.clear()
                async with store.write() as tx:
                    for user in (alice, bob):   # named apart: the key would be the meter's
                        await operations.add(tx, new_operation(MeterRegistrationPayload(
                            owner=user, meter_id="contested", meter_type="solar"),
                            f"meter:{user}"))

                async def both_sent() -> bool:
                    return (await status_counts(store)).get("submitted", 0) == 2

                await wait_for(both_sent, 30, "both registrations sent, no block yet")
                clock_on.set()

                async def settled() -> bool:
                    counts = await status_counts(store)
                    return counts.get("finalized", 0) == 3 and counts.get("failed", 0) == 1

                await wait_for(settled, 60, "one registration finalized, one failed")
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        failed = await store.fetchone("SELECT * FROM operations WHERE status = 'failed'")
        assert failed["tx_type"] == "meter_registration"
        assert "AccountAlreadyInUse" in failed["last_error"]
        assert "instruction 2" in failed["last_error"]
        audit = await store.fetchall(
            "SELECT new_status FROM audit_log WHERE entity_id = ? ORDER BY id", (failed["id"],))
        assert [a["new_status"] for a in audit][-1] == "failed"
        # the failed transaction's history is kept
        attempts = await store.fetchall(
            "SELECT a.observed_status, a.err FROM tx_attempts a JOIN tx_attempt_operations t "
            "ON t.attempt_id = a.id WHERE t.operation_id = ?", (failed["id"],))
        assert [a["observed_status"] for a in attempts] == ["failed"]
        assert '"Custom": 0' in attempts[0]["err"] or '"Custom":0' in attempts[0]["err"]
        await store.close()


async def test_exhausted_recovery_parks_then_operator_retry_lands(tmp_path: Path) -> None:
    """Signed by a funded key that is not the oracle's gateway, a reading fails simulation
    (UnauthorizedGateway); after one re-validation it is parked, not dropped. With the right key
    and `gridnode outbox retry` it lands."""
    async with Localnet(port=pick_free_port(), slot_ms=25, state_dir=tmp_path / "chain") as net:
        right = bootstrap_signers(net.bootstrap)
        db = tmp_path / "node.sqlite"
        store = await Store.open(db)
        end = recent_intervals(1)
        await add_readings(store, ["meter-p"], end)
        key = f"meter_reading:meter-p:{end[0]}"
        wrong = Pipeline(store, chain_config([net.rpc_url], require_registered_meters=False),
                         outbox_config(), Signers.of(next(iter(right.users.values()))))
        async with running(wrong):
            async def parked() -> bool:
                return (await op_row(store, key))["status"] == "parked"

            await wait_for(parked, 30, "the reading parked")
        row = await op_row(store, key)
        assert "UnauthorizedGateway" in row["last_error"]
        assert (await store.fetchone("SELECT count(*) AS n FROM tx_attempts"))["n"] == 0
        cli = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gridnode", "outbox", "retry", "--db", str(db), str(row["id"]),
            "--reason", "gateway key fixed", cwd=REPO, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        _, err = await cli.communicate()
        assert cli.returncode == 0, err.decode()
        fixed = Pipeline(store, chain_config([net.rpc_url], require_registered_meters=False),
                         outbox_config(), right)
        async with running(fixed):
            await wait_for(lambda: all_finalized(store), 30, "the retried reading finalized")
        assert await oracle_total_readings(net.rpc_url) == 1
        await store.close()


async def test_readings_older_than_the_limit_are_parked_not_sent(tmp_path: Path) -> None:
    async with Localnet(port=pick_free_port(), slot_ms=25, state_dir=tmp_path / "chain") as net:
        store = await Store.open(tmp_path / "node.sqlite")
        ends = recent_intervals(3)
        await add_readings(store, ["old-meter"], ends[:1])   # ended >= 2 minutes ago
        pipeline = Pipeline(store, chain_config([net.rpc_url], require_registered_meters=False),
                            outbox_config(max_age_hours=90 / 3600), bootstrap_signers(net.bootstrap))
        async with running(pipeline):
            await add_readings(store, ["new-meter"], [ends[-1] + 60], first_index=2)

            async def settled() -> bool:
                return await status_counts(store) == {"parked": 1, "finalized": 1}

            await wait_for(settled, 30, "old parked, new finalized")
        old = await op_row(store, f"meter_reading:old-meter:{ends[0]}")
        assert old["status"] == "parked" and "reading_too_old" in old["last_error"]
        assert await oracle_total_readings(net.rpc_url) == 1
        await store.close()
