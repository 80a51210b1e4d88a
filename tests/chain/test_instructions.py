"""Which key signs an operation, and the refusal when this node does not hold it; a round of
operations prepared at once, with one chain read for all its meters.

For the signer, the builder is given a pool whose endpoint never answers: choosing a signer must
not need the chain, and a refusal must come before any request is made.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from solders.keypair import Keypair

from gridnode.chain.idl import load_idls
from gridnode.chain.instructions import InstructionBuilder
from gridnode.chain.rpc import RpcPool
from gridnode.chain.signers import Signers
from gridnode.chain.txtypes import TX_TYPES, new_operation
from gridnode.chain.validation import (
    MeterReadingPayload,
    MeterRegistrationPayload,
    NotPermitted,
    Outcome,
    TokenMintingPayload,
    UserRegistrationPayload,
)
from gridnode.store import Store, operations
from simulators.chain.localnet import Localnet
from tests.e2e.harness import bootstrap_signers, recent_intervals
from tests.net import pick_free_port

IDL_DIR = Path(__file__).resolve().parents[2] / "idl"


@pytest.fixture
async def builder_for():
    pools: list[RpcPool] = []

    def make(signers: Signers) -> InstructionBuilder:
        pool = RpcPool([f"http://127.0.0.1:{pick_free_port()}"])
        pools.append(pool)
        return InstructionBuilder(load_idls(IDL_DIR), pool, signers)

    yield make
    for pool in pools:
        await pool.close()


async def test_the_payload_names_the_signer_and_the_node_must_hold_its_key(builder_for) -> None:
    user, stranger = Keypair(), Keypair()
    builder = builder_for(Signers.of(Keypair(), users=[user]))
    order = TX_TYPES["meter_registration"]

    def by(owner: Keypair) -> MeterRegistrationPayload:
        return MeterRegistrationPayload(owner=str(owner.pubkey()), meter_id="m1",
                                        meter_type="solar")

    assert builder.signer_for(order, by(user)) == user
    with pytest.raises(NotPermitted) as err:
        builder.signer_for(order, by(stranger))
    assert err.value.code == "no_signing_key"
    assert str(stranger.pubkey()) in err.value.message
    assert "meter_registration" in err.value.message


async def test_a_role_key_the_node_does_not_hold_is_refused(builder_for) -> None:
    gateway, authority = Keypair(), Keypair()
    minting = TX_TYPES["token_minting"]
    mint = TokenMintingPayload(token_account=str(Keypair().pubkey()), amount=1)
    assert builder_for(Signers.of(gateway, authority)).signer_for(minting, mint) == authority
    with pytest.raises(NotPermitted) as err:
        builder_for(Signers.of(gateway)).signer_for(minting, mint)
    assert err.value.code == "no_signing_key"
    assert "authority" in err.value.message
    assert err.value.outcome == "failed"


class CountingPool(RpcPool):
    """A real pool that counts the requests it makes, by method."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.requests: Counter[str] = Counter()

    async def raw(self, method: str, *args: Any, **kwargs: Any) -> Any:
        self.requests[method] += 1
        return await super().raw(method, *args, **kwargs)


async def test_a_round_reads_its_meters_once_and_types_every_refusal(tmp_path: Path) -> None:
    """Readings of three meters not registered on chain cost one account read together and stay
    pending (retry); a bad payload and an unknown tx type fail; a registration is prepared."""
    end = recent_intervals(1)[0]
    async with Localnet(port=pick_free_port(), slot_ms=25, state_dir=tmp_path / "chain") as net:
        signers = bootstrap_signers(net.bootstrap)
        user = next(iter(signers.users))
        store = await Store.open(tmp_path / "node.sqlite")
        async with store.write() as tx:
            readings = [(await operations.add(tx, new_operation(MeterReadingPayload(
                meter_id=f"m-{i}", interval_start=end - 60, interval_end=end,
                energy_produced_wh=10, energy_consumed_wh=1))))[0] for i in range(3)]
            bad, _ = await tx.add_operation("meter_reading", {"meter_id": "m-9"}, "bad")
            unknown, _ = await tx.add_operation("teleport", {}, "teleport")
            user_op, _ = await operations.add(tx, new_operation(UserRegistrationPayload(
                user=user, user_type="consumer", location="here")))
        pool = CountingPool([net.rpc_url], commitment="confirmed")
        try:
            builder = InstructionBuilder(load_idls(IDL_DIR), pool, signers)
            prepared, refused = await builder.prepare_many(await operations.due(store, 100))
        finally:
            await pool.close()
            await store.close()
    assert [p.op_id for p in prepared] == [user_op]
    assert prepared[0].tx_type is TX_TYPES["user_registration"]
    why = {r.op_id: (r.error.code, r.error.outcome) for r in refused}
    assert why == {**{r: ("meter_not_active", Outcome.RETRY) for r in readings},
                   bad: ("invalid_payload", Outcome.FAILED),
                   unknown: ("unknown_tx_type", Outcome.FAILED)}
    assert pool.requests == Counter({"getMultipleAccounts": 1})
