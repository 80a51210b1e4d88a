"""chain.program_ids against a deployment at other IDs: the localnet serves all five programs at
IDs that are not the IDLs' addresses (their bytecode relocated), and gridnode, told those IDs,
registers meters and gets their readings finalized there, events attributed to the moved
programs."""

from __future__ import annotations

import base64
import struct
from pathlib import Path

import httpx
import pytest
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from gridnode.chain.idl import PROGRAMS
from gridnode.config.chain import ProgramIds
from gridnode.outbox.pipeline import Pipeline
from gridnode.store import Store
from simulators.chain.localnet import Localnet
from simulators.chain.svm import PROGRAMS_DIR, program_ids, relocate_program
from tests.e2e.harness import (
    add_readings,
    all_finalized,
    assert_events_match,
    bootstrap_signers,
    chain_config,
    outbox_config,
    reading_events,
    recent_intervals,
    register,
    running,
    wait_for,
)
from tests.net import pick_free_port


async def _account(rpc_url: str, key: Pubkey) -> bytes | None:
    async with httpx.AsyncClient(timeout=5) as client:
        resp = await client.post(rpc_url, json={
            "jsonrpc": "2.0", "id": 1, "method": "getAccountInfo",
            "params": [str(key), {"encoding": "base64", "commitment": "finalized"}]})
    value = resp.json()["result"]["value"]
    return None if value is None else base64.b64decode(value["data"][0])


async def test_configured_program_ids_reach_a_deployment_at_other_ids(tmp_path: Path) -> None:
    moved = {name: Keypair.from_seed(bytes([40 + i]) * 32).pubkey()
             for i, name in enumerate(PROGRAMS)}
    meters = ["moved-a", "moved-b"]
    async with Localnet(port=pick_free_port(), slot_ms=25, state_dir=tmp_path / "chain",
                        program_ids=moved) as net:
        assert net.bootstrap["program_ids"] == {n: str(p) for n, p in moved.items()}
        # Nothing answers at the IDLs' own addresses on this chain.
        assert await _account(net.rpc_url, Pubkey.from_string(ProgramIds().oracle)) is None
        signers = bootstrap_signers(net.bootstrap)
        owner = next(iter(signers.users.values()))
        store = await Store.open(tmp_path / "node.sqlite")
        chain = chain_config([net.rpc_url], [net.ws_url],
                             program_ids=ProgramIds(**{n: str(p) for n, p in moved.items()}))
        pipeline = Pipeline(store, chain, outbox_config(), signers)
        assert {n: p.program_id for n, p in pipeline.idls.items()} == moved
        intervals = recent_intervals(2)
        await register(store, owner, meters)
        await add_readings(store, meters, intervals)
        async with running(pipeline):
            await wait_for(lambda: all_finalized(store), 90, "every operation finalized")
        assert_events_match(await reading_events(store), meters, intervals)
        programs = await store.fetchall("SELECT DISTINCT name, program_id FROM chain_events")
        assert {(r["name"], r["program_id"]) for r in programs} == {
            ("UserRegistered", str(moved["registry"])), ("MeterRegistered", str(moved["registry"])),
            ("MeterReadingSubmitted", str(moved["oracle"]))}
        # The oracle's counter at its PDA under the moved ID (OracleData.total_readings).
        oracle_data = Pubkey.find_program_address([b"oracle_data"], moved["oracle"])[0]
        data = await _account(net.rpc_url, oracle_data)
        assert data is not None
        assert struct.unpack_from("<Q", data, 72)[0] == len(meters) * len(intervals)
        await store.close()


def test_program_relocation_is_whole_or_refused() -> None:
    """The declared ID sits in the oracle's bytecode as four lddw immediates: relocation moves
    all four (and back again), and refuses a program where it finds only some of them."""
    so = (PROGRAMS_DIR / "oracle.so").read_bytes()
    old, new = program_ids()["oracle"], Keypair.from_seed(bytes([99]) * 32).pubkey()
    moved = relocate_program(so, {old: new}, old)
    assert moved != so and len(moved) == len(so)
    assert relocate_program(moved, {new: old}, new) == so
    word = bytes(old)[8:16]
    at = next(off for off in range(0, len(so) - 15, 8)
              if so[off] == 0x18 and so[off + 4:off + 8] + so[off + 12:off + 16] == word)
    damaged = so[:at + 4] + b"\0\0\0\0" + so[at + 8:]
    with pytest.raises(ValueError, match="word by word"):
        relocate_program(damaged, {old: new}, old)
    with pytest.raises(ValueError, match="not in the bytecode"):
        relocate_program(so, {new: old}, new)
