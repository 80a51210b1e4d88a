"""Which key signs an operation, and the refusal when this node does not hold it.

The builder is given a pool whose endpoint never answers: choosing a signer must not need the
chain, and a refusal must come before any request is made.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from solders.keypair import Keypair

from gridnode.chain.idl import load_idls
from gridnode.chain.instructions import InstructionBuilder
from gridnode.chain.rpc import RpcPool
from gridnode.chain.signers import Signers
from gridnode.chain.txtypes import TX_TYPES
from gridnode.chain.validation import MeterRegistrationPayload, NotPermitted, TokenMintingPayload
from tests.conftest import pick_free_port

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
