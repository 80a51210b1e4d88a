"""`gridnode register user|meter`: registrations queued in the outbox, checked before anything is
written, idempotent, and finalized on the localnet by the pipeline like every other operation."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from gridnode.keys import load_keypair
from gridnode.outbox.pipeline import Pipeline
from gridnode.store import Store
from simulators.chain.localnet import Localnet
from tests.configs import write_config
from tests.e2e.harness import (
    all_finalized,
    bootstrap_signers,
    chain_config,
    outbox_config,
    running,
    wait_for,
)
from tests.net import pick_free_port
from tests.test_cli import run_cli


def node_config(path: Path, net: Localnet, users: list[str]) -> Path:
    return write_config(path, node={"data_dir": str(path.parent / "state")},
                        keys={"gateway_keypair": str(net.bootstrap["keypairs"]["gateway"])},
                        chain={"rpc_urls": [net.rpc_url], "user_keypairs": users})


async def test_register_a_user_and_its_meters_through_the_outbox(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async def cli(*argv: str) -> tuple[int, str, str]:
        # The command runs its own event loop, as it does from a shell: not on this test's.
        return await asyncio.to_thread(run_cli, capsys, *argv)

    async with Localnet(port=pick_free_port(), slot_ms=25, state_dir=tmp_path / "chain") as net:
        wallets = net.bootstrap["keypairs"]["users"][:2]
        alice, bob = (str(load_keypair(p).pubkey()) for p in wallets)
        one = str(node_config(tmp_path / "one.toml", net, wallets[:1]))

        # With one wallet the user and the owner default to it.
        code, out, _ = await cli("register", "user", "--type", "prosumer",
                                 "--location", "test street 1", "-c", one)
        assert code == 0, out
        assert out.splitlines() == [
            f"operation 1: user_registration of user {alice} queued",
            f"  the running node signs and submits it; follow it: gridnode outbox show 1 -c {one}"]
        code, out, _ = await cli("register", "meter", "house-1", "--type", "solar",
                                 "-c", one)
        assert code == 0 and out.startswith(
            f"operation 2: meter_registration of meter 'house-1' of {alice} queued")
        # Idempotent: the same registration again adds nothing.
        code, out, _ = await cli("register", "user", "--type", "prosumer",
                                 "--location", "test street 1", "-c", one)
        assert code == 0 and out.startswith(
            f"operation 1: user_registration of user {alice} was queued before; nothing added")

        # What can never succeed is refused before anything is written (exit 2).
        code, _, err = await cli("register", "meter", "m" * 33, "--type", "solar", "-c", one)
        assert code == 2 and "meter_id" in err and "32 bytes" in err
        code, _, err = await cli("register", "meter", "m2", "--type", "solar",
                                 "--owner", bob, "-c", one)
        assert code == 2
        assert f"{bob} must sign its own registration, and no key in chain.user_keypairs" in err
        code, _, err = await cli("register", "user", "--type", "prosumer",
                                 "--location", "x" * 101, "-c", one)
        assert code == 2 and "location" in err
        assert (await cli("register", "meter", "m2", "--type", "nuclear", "-c", one))[0] == 2

        # With two wallets the command must be told which.
        two = str(node_config(tmp_path / "two.toml", net, wallets))
        code, _, err = await cli("register", "user", "--type", "consumer",
                                 "--location", "flat 2", "-c", two)
        assert code == 2 and "name the user: the node holds 2 user wallets" in err
        code, out, _ = await cli("register", "user", bob, "--type", "consumer",
                                 "--location", "flat 2", "-c", two)
        assert code == 0 and out.startswith(f"operation 3: user_registration of user {bob}")

        store = await Store.open(tmp_path / "state" / "gridnode.db")
        try:
            rows = await store.fetchall("SELECT tx_type, idempotency_key FROM operations "
                                        "ORDER BY id")
            assert [tuple(r) for r in rows] == [
                ("user_registration", f"user_registration:{alice}"),
                ("meter_registration", "meter_registration:house-1"),
                ("user_registration", f"user_registration:{bob}")]
            pipeline = Pipeline(store, chain_config([net.rpc_url]), outbox_config(),
                                bootstrap_signers(net.bootstrap))
            async with running(pipeline):
                await wait_for(lambda: all_finalized(store), 60, "registrations finalized")
            events = await store.fetchall("SELECT name, data FROM chain_events ORDER BY id")
        finally:
            await store.close()
        registered = sorted((e["name"], json.loads(e["data"]).get("meter_id", ""))
                            for e in events)
        assert registered == [("MeterRegistered", "house-1"), ("UserRegistered", ""),
                              ("UserRegistered", "")]


def test_register_needs_a_chain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path / "site.toml", node={"data_dir": str(tmp_path)})
    code, _, err = run_cli(capsys, "register", "user", "--type", "prosumer", "--location", "x",
                           "-c", str(cfg))
    assert code == 2 and f"{cfg}: chain = <missing>: expected a [chain] section" in err
    assert not (tmp_path / "gridnode.db").exists()
