"""Placeholder orders (gridnode.chain.txtypes): the least number that moves the order PDA index
past an owner's taken indices; they never complete on the trading program, gridnode's matching
and order book leave them out; the most a transaction may carry fits 1232 bytes and lands.

The trading program runs in LiteSVM (simulators.chain.harness). For the builder the RPC pool is
replaced by a reader of the LiteSVM accounts (its only chain access is account reads): the
builder's own reads, its index choice and encoding run unchanged against the real program; the
localnet tests in tests/e2e/test_orders.py land the same transactions over JSON-RPC.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from gridnode.chain.accounts import order_account
from gridnode.chain.assembly import PACKET_DATA_SIZE, Batch, tx_size
from gridnode.chain.idl import load_idls
from gridnode.chain.instructions import InstructionBuilder, order_placeholders, placeholder_key
from gridnode.chain.signers import Signers
from gridnode.chain.txtypes import (
    MAX_PLACEHOLDERS,
    PLACEHOLDER_PRICE,
    PLACEHOLDER_WH,
    TX_TYPES,
    U64_MAX,
    Read,
    is_placeholder,
)
from gridnode.chain.validation import OrderCreationPayload, RuleNotMet, enum_name
from gridnode.market.matching import BookOrder, match
from simulators.chain.harness import Chain
from tests.simulators.chain.market_setup import (
    active_orders,
    init_market,
    match_ix,
    order_address,
    order_ix,
    place,
    trade_address,
)

IDL_DIR = Path(__file__).resolve().parents[2] / "idl"


def test_the_least_number_of_placeholders() -> None:
    # index n free for the owner: none
    assert order_placeholders([False, False]) == 0
    # n taken: one placeholder at n, the owner's order at n + 1
    assert order_placeholders([True, False]) == 1
    assert order_placeholders([True, True, True, False]) == 3
    # more than the list covers
    assert order_placeholders([True, True]) is None


def test_placeholder_keys_are_one_off_and_repeatable() -> None:
    """A re-signed transaction must use the same placeholder keys; no two placeholders share one."""
    gateway = Keypair()
    keys = {str(placeholder_key(gateway, op, i).pubkey()) for op in range(3) for i in range(3)}
    assert len(keys) == 9
    assert placeholder_key(gateway, 7, 2).pubkey() == placeholder_key(gateway, 7, 2).pubkey()
    assert placeholder_key(Keypair(), 7, 2).pubkey() != placeholder_key(gateway, 7, 2).pubkey()


def test_matching_and_the_book_leave_placeholders_out() -> None:
    placeholder = BookOrder("ph", PLACEHOLDER_PRICE, PLACEHOLDER_WH, 0, owner="gateway")
    real = BookOrder("ask", 100, 50, 5, owner="alice")
    rich = BookOrder("bid", U64_MAX, 10, 1, owner="bob")    # the only bid that could meet it
    assert [(m.sell_order, m.amount_wh) for m in match([rich], [placeholder, real])] == [("ask", 10)]
    assert match([rich], [placeholder]) == []
    fields = {"seller": "g", "buyer": "11111111111111111111111111111111",
              "amount": PLACEHOLDER_WH, "filled_amount": 0, "price_per_kwh": PLACEHOLDER_PRICE,
              "order_type": "Sell", "status": "Active", "created_at": 1, "expires_at": 2}
    assert order_account("a", fields).placeholder
    assert not order_account("b", {**fields, "price_per_kwh": 100}).placeholder
    assert not order_account("c", {**fields, "order_type": "Buy"}).placeholder
    assert is_placeholder("sell", U64_MAX) and not is_placeholder("buy", U64_MAX)


def test_a_placeholder_never_completes_on_the_trading_program() -> None:
    """The only bid that meets it is at u64::MAX: a fill of 2 Wh or more overflows total_value
    (6015); a 1-Wh fill leaves it PartiallyFilled, still counted in active_orders."""
    chain = Chain()
    init_market(chain)
    gateway, buyer = chain.funded(), chain.funded()
    ph = place(chain, "sell", gateway, PLACEHOLDER_WH, PLACEHOLDER_PRICE)
    big = place(chain, "buy", buyer, 5, U64_MAX)
    chain.fails(6015, match_ix(chain, big, ph, 5), chain.authority)
    one = place(chain, "buy", buyer, 1, U64_MAX)
    before = active_orders(chain)
    chain.ok(match_ix(chain, one, ph, 1), chain.authority)
    assert enum_name(chain.decode("trading", "Order", ph)["status"]) == "PartiallyFilled"
    assert active_orders(chain) == before - 1            # only the 1-Wh bid completed
    assert chain.svm.get_account(trade_address(chain, one, ph)) is not None


class SvmPool:
    """The builder's chain reads (account data) served from the LiteSVM accounts."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.reads: list[int] = []

    async def account_data(self, keys: Sequence[Pubkey]) -> list[bytes | None]:
        self.reads.append(len(keys))
        out: list[bytes | None] = []
        for k in keys:
            acc = self.chain.svm.get_account(k)
            out.append(None if acc is None or acc.lamports == 0 else bytes(acc.data))
        return out


def market_with_user() -> tuple[Chain, Keypair, Keypair]:
    """A chain with the market and registry set up: (chain, the gateway, alice registered)."""
    chain = Chain()
    init_market(chain)
    chain.init_registry()
    gateway, alice = chain.funded(), chain.funded()
    chain.register_user(alice)
    return chain, gateway, alice


def cancel_orders(chain: Chain, kp: Keypair, n: int) -> None:
    """`n` orders of `kp` placed, then cancelled: their PDAs stay taken, the count goes back."""
    market: Any = chain.idls["trading"].pda("market")
    for o in [place(chain, "sell", kp, 10, 100) for _ in range(n)]:
        chain.ok(chain.ix("trading", "cancel_order", {},
                          {"market": market, "order": o, "authority": kp.pubkey()}), kp)


def order_builder(chain: Chain, gateway: Keypair, user: Keypair) -> InstructionBuilder:
    return InstructionBuilder(load_idls(IDL_DIR), SvmPool(chain),  # type: ignore[arg-type]
                              Signers.of(gateway, users=[user]))


def order_of(user: Keypair, side: str) -> OrderCreationPayload:
    return OrderCreationPayload(owner=str(user.pubkey()), side=side, energy_amount=10,
                                price_per_kwh=100)


@pytest.mark.parametrize("taken", [1, MAX_PLACEHOLDERS])
async def test_an_order_behind_placeholders_fits_and_lands(taken: int) -> None:
    """alice's orders at indices 0 .. taken-1 exist and were cancelled (the count is back at
    0): her next order is built behind `taken` placeholders (each signed by a one-off key the
    gateway funds in the same transaction), fits one transaction with its ERC slot and every
    signature, and lands on the program."""
    chain, gateway, alice = market_with_user()
    cancel_orders(chain, alice, taken)
    assert active_orders(chain) == 0
    builder = order_builder(chain, gateway, alice)
    payload = order_of(alice, "sell")
    op = await builder._prepare(1, TX_TYPES["order_creation"], payload, {})
    assert len(op.instructions) == 2 * taken + 1 and builder.placeholders == taken
    assert len(op.cosigners) == taken
    size = tx_size(Batch([op]), gateway)
    assert size <= PACKET_DATA_SIZE
    out = chain.ok(op.instructions, alice, *op.cosigners, gateway, payer=gateway)
    mine = order_address(chain, alice.pubkey(), taken)
    created = out.events["trading"]
    assert [str(f["order_id"]) for _, f in created] == [
        *(str(order_address(chain, placeholder_key(gateway, 1, i).pubkey(), i))
          for i in range(taken)), str(mine)]
    assert active_orders(chain) == taken + 1
    print(f"\n{taken} placeholder(s) + the order: {size} bytes, {out.cu} CU")
    # The next order of alice (index taken + 1 is hers to use) needs none.
    op2 = await builder._prepare(2, TX_TYPES["order_creation"], payload, {})
    assert len(op2.instructions) == 1
    _, addr2 = order_ix(chain, "sell", alice.pubkey(), 10, 100)
    assert op2.instructions[0].accounts[1].pubkey == addr2 == order_address(
        chain, alice.pubkey(), taken + 1)


async def test_the_gateways_own_order_at_the_index_does_not_block() -> None:
    """The owner's and the gateway's order PDAs at the index are both taken (a fixed placeholder
    key deadlocked here): the one-off placeholder key is free, the order lands behind it."""
    chain, gateway, alice = market_with_user()
    for kp in (alice, gateway):
        cancel_orders(chain, kp, 1)
    assert active_orders(chain) == 0
    builder = order_builder(chain, gateway, alice)
    op = await builder._prepare(1, TX_TYPES["order_creation"], order_of(alice, "buy"), {})
    chain.ok(op.instructions, alice, *op.cosigners, gateway, payer=gateway)
    assert active_orders(chain) == 2


async def test_an_owner_with_every_reachable_index_taken_waits() -> None:
    """The owner's order PDAs at n .. n + MAX_PLACEHOLDERS all exist: not built now (RuleNotMet,
    stays pending until other orders move the index)."""
    chain, gateway, alice = market_with_user()
    cancel_orders(chain, alice, MAX_PLACEHOLDERS + 1)
    builder = order_builder(chain, gateway, alice)
    with pytest.raises(RuleNotMet, match="order PDAs"):
        await builder._prepare(1, TX_TYPES["order_creation"], order_of(alice, "buy"), {})
    assert Read.ORDER_INDEX in TX_TYPES["order_creation"].readers
