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


async def test_grid_accounts_are_created_only_when_absent_and_only_when_associated(
        tmp_path: Path) -> None:
    """settle_trade's buyer account and grid_minting's account: an absent associated account
    gets an idempotent create in front of the program's instruction (paid by the signer); one
    that exists gets none; an absent account that is not associated fails, naming the right
    one. The trade record and settlement PDAs come from the payload's addresses."""
    from solders.pubkey import Pubkey

    from gridnode.chain.instructions import ATA_PROGRAM, associated_token_address
    from gridnode.chain.validation import GridMintingPayload, InvalidInput, SettleTradePayload
    from gridnode.store.operations import Operation

    idls = load_idls(IDL_DIR)
    mint = Pubkey.find_program_address([b"mint"], idls["energy_token"].program_id)[0]
    trading = idls["trading"].program_id
    async with Localnet(port=pick_free_port(), slot_ms=25, state_dir=tmp_path / "chain") as net:
        signers = bootstrap_signers(net.bootstrap)
        alice, bob = list(signers.users.values())[:2]
        a, b = str(alice.pubkey()), str(bob.pubkey())
        pool = RpcPool([net.rpc_url], commitment="confirmed")
        builder = InstructionBuilder(idls, pool, signers)
        trade = Pubkey.new_unique()
        settle = SettleTradePayload(
            trade_record=str(trade), seller=a, buyer=b,
            seller_token_account=str(associated_token_address(alice.pubkey(), mint)),
            buyer_token_account=str(associated_token_address(bob.pubkey(), mint)), signer=a)
        stray = settle.model_copy(update={"buyer_token_account": str(Pubkey.new_unique())})
        existing = settle.model_copy(update={"buyer_token_account": str(mint)})  # exists
        minting = GridMintingPayload(meter_id="pv-1", owner=a, interval_end=1,
                                     token_account=str(associated_token_address(alice.pubkey(),
                                                                                mint)))

        def op(i: int, payload: Any) -> Operation:
            row = new_operation(payload, f"k{i}")
            return Operation(id=i, tx_type=row.tx_type, payload=dict(row.payload),
                             idempotency_key=row.idempotency_key, status="pending", attempts=0,
                             last_error=None, next_attempt_at_ms=0, created_at_ms=0,
                             updated_at_ms=0, submitted_at_ms=None, confirmed_at_ms=None,
                             finalized_at_ms=None)

        try:
            prepared, refused = await builder.prepare_many(
                [op(1, settle), op(2, stray), op(3, existing), op(4, minting)])
        finally:
            await pool.close()
    by_id = {p.op_id: p for p in prepared}
    assert set(by_id) == {1, 3, 4}
    s1 = by_id[1].instructions
    assert [ix.program_id for ix in s1] == [ATA_PROGRAM, trading]
    assert s1[0].accounts[0].pubkey == alice.pubkey() and s1[0].accounts[2].pubkey == bob.pubkey()
    assert s1[1].accounts[0].pubkey == trade
    assert s1[1].accounts[1].pubkey == Pubkey.find_program_address(
        [b"settlement", bytes(trade)], trading)[0]
    assert [ix.program_id for ix in by_id[3].instructions] == [trading]
    assert [ix.program_id for ix in by_id[4].instructions] == [
        ATA_PROGRAM, idls["energy_token"].program_id]
    assert by_id[4].distinct == "pv-1"
    [(op_id, err)] = [(r.op_id, r.error) for r in refused]
    assert op_id == 2 and isinstance(err, InvalidInput) and err.code == "no_token_account"
    assert str(associated_token_address(bob.pubkey(), mint)) in err.message
