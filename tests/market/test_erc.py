"""A policy sell whose certificate cannot be made is placed without one, once."""

from __future__ import annotations

from pathlib import Path

from solders.keypair import Keypair

from gridnode.chain.signers import Signers
from gridnode.config.market import MarketConfig
from gridnode.market import erc
from gridnode.market.orders import plan_of, policy_orders
from gridnode.market.service import MarketSubsystem
from gridnode.market.users import User, Users
from gridnode.outbox.pipeline import Pipeline
from gridnode.store import Store, market, operations
from tests.e2e.harness import chain_config, outbox_config


def test_certificate_ids_fit_a_seed() -> None:
    assert erc.certificate_id("pv-1", 1_800_000_000) == "1800000000-pv-1"
    long = erc.certificate_id("x" * 32, 1_800_000_000)
    assert len(long) == 32 and long.startswith("1800000000-")
    assert long != erc.certificate_id("x" * 31 + "y", 1_800_000_000)


async def test_a_failed_certificate_places_the_order_without_one(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "n.db")
    try:
        owner = Keypair()
        pipeline = Pipeline(store, chain_config(["http://127.0.0.1:9"]), outbox_config(),
                            Signers.of(Keypair(), Keypair(), [owner]))
        user = User("u0", str(owner.pubkey()), True, ("m0",), "sell_surplus", 100, None)
        sub = MarketSubsystem(store, MarketConfig(), pipeline, Users([user]), clears=False,
                              minting=False, certifies=True, epoch_s=60)
        reading = {"meter_id": "m0", "interval_start": 1_800_000_000 - 60,
                   "interval_end": 1_800_000_000, "energy_produced_wh": 900,
                   "energy_consumed_wh": 100}
        planned = policy_orders(user, reading, 1_800_000_060)[0]
        async with store.write() as tx:
            op_id, _ = await operations.add(tx, erc.issuance("m0", 1_800_000_000 - 60,
                                                             1_800_000_000, 800,
                                                             plan_of(planned)))
            await operations.move(tx, op_id, "failed", reason="InsufficientUnclaimedGeneration")
        assert await sub.uncertified() == 1
        assert await sub.uncertified() == 0            # once
        views = await market.orders(store)
        assert [(v.order.side, v.order.energy_wh, v.order.price_per_kwh) for v in views] == \
            [("sell", 800, 100)]
        op = await operations.get(store, views[0].order.operation_id)
        assert op is not None and op.payload["erc_certificate"] is None
        assert op.idempotency_key == planned.operation.idempotency_key
    finally:
        await store.close()
