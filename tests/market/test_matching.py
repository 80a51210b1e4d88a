"""Price-time priority matching (gridnode.market.matching): the order of fills, partial fills,
ties broken by time, no cross, the program's floor midpoint price - and, against the real
trading program in LiteSVM, that every match it proposes fills exactly what match_orders fills
when asked for more than either order has left (fill = min of the remaining amounts)."""

from __future__ import annotations

import random

import pytest

from gridnode.chain.accounts import order_account
from gridnode.market.matching import BookOrder, Match, match, midpoint
from simulators.chain.harness import NOW, Chain
from tests.simulators.chain.market_setup import init_market, match_ix, place, trade_address


def bid(name: str, price: int, amount: int, t: int = 0, **kw: object) -> BookOrder:
    return BookOrder(name, price, amount, t, owner=f"{name}-owner", **kw)


ask = bid


def fills(ms: list[Match]) -> list[tuple[str, str, int, int]]:
    return [(m.buy_order, m.sell_order, m.amount_wh, m.price) for m in ms]


def test_best_bid_meets_cheapest_ask_first_with_partial_fills() -> None:
    bids = [bid("b-low", 100, 300), bid("b-high", 120, 500)]
    asks = [ask("a-dear", 110, 400), ask("a-cheap", 90, 200)]
    assert fills(match(bids, asks)) == [
        ("b-high", "a-cheap", 200, 105),    # 120 vs 90
        ("b-high", "a-dear", 300, 115),     # the rest of b-high; a-dear keeps 100
        # b-low (100) does not reach a-dear (110): no cross
    ]


def test_equal_prices_go_by_time_then_address() -> None:
    bids = [bid("b-late", 100, 100, t=20), bid("b-early", 100, 100, t=10)]
    asks = [ask("a-z", 100, 150, t=5), ask("a-a", 100, 150, t=5), ask("a-first", 100, 50, t=1)]
    assert fills(match(bids, asks)) == [
        ("b-early", "a-first", 50, 100),
        ("b-early", "a-a", 50, 100),        # same time as a-z: the lower address first
        ("b-late", "a-a", 100, 100),
    ]


def test_no_cross_no_match_and_empty_sides() -> None:
    assert match([bid("b", 99, 10)], [ask("a", 100, 10)]) == []
    assert match([], [ask("a", 1, 10)]) == [] and match([bid("b", 1, 10)], []) == []
    assert match([bid("b", 100, 0)], [ask("a", 1, 10)]) == []       # nothing left to buy


def test_price_is_the_programs_floor_midpoint() -> None:
    assert fills(match([bid("b", 101, 7)], [ask("a", 90, 9)])) == [("b", "a", 7, 95)]
    for b, a in [(1, 1), (3, 1), (2**64 - 1, 2**64 - 1), (2**64 - 1, 2**64 - 2), (7, 4)]:
        assert midpoint(b, a) == (b + a) // 2
    m = match([bid("b", 2**64 - 1, 3)], [ask("a", 2**64 - 2, 5)])[0]
    assert m.price == 2**64 - 2 and m.total_value == 3 * (2**64 - 2)


def test_traded_pairs_and_expired_orders_are_left_out() -> None:
    bids = [bid("b", 120, 100)]
    asks = [ask("a1", 90, 50), ask("a2", 95, 80)]
    # b and a1 already have a TradeRecord: the program cannot make a second one for that pair
    assert fills(match(bids, asks, traded={("b", "a1")})) == [("b", "a2", 80, 107)]
    expired = [ask("old", 80, 50, expires_at=1000), ask("new", 90, 50, expires_at=5000)]
    assert fills(match(bids, expired, now=1000)) == [("b", "new", 50, 105)]
    assert [m.seller for m in match(bids, expired, now=999)] == ["old-owner", "new-owner"]


def test_quantities_are_conserved_on_a_random_book() -> None:
    rng = random.Random(7)
    bids = [bid(f"b{i}", rng.randint(50, 150), rng.randint(1, 500), rng.randint(0, 9))
            for i in range(200)]
    asks = [ask(f"a{i}", rng.randint(50, 150), rng.randint(1, 500), rng.randint(0, 9))
            for i in range(200)]
    ms = match(bids, asks)
    got_b: dict[str, int] = {}
    got_a: dict[str, int] = {}
    for m in ms:
        got_b[m.buy_order] = got_b.get(m.buy_order, 0) + m.amount_wh
        got_a[m.sell_order] = got_a.get(m.sell_order, 0) + m.amount_wh
    by = {o.address: o for o in bids + asks}
    assert all(got_b[k] <= by[k].remaining for k in got_b)
    assert all(got_a[k] <= by[k].remaining for k in got_a)
    for m in ms:
        b, a = by[m.buy_order], by[m.sell_order]
        assert b.price_per_kwh >= a.price_per_kwh and m.price == (b.price_per_kwh
                                                                  + a.price_per_kwh) // 2
    # after matching, no remaining bid crosses a remaining ask (the book is cleared)
    left_b = [o for o in bids if o.remaining > got_b.get(o.address, 0)]
    left_a = [o for o in asks if o.remaining > got_a.get(o.address, 0)]
    if left_b and left_a:
        assert max(o.price_per_kwh for o in left_b) < min(o.price_per_kwh for o in left_a)


@pytest.fixture
def chain() -> Chain:
    return Chain()


def test_every_match_is_what_the_program_fills(chain: Chain) -> None:
    """The proposed matches, sent in order to the real trading program with match_orders asking
    for far more than either order holds: each TradeRecord has exactly the proposed amount and
    price, and every order ends as filled as the matching said."""
    init_market(chain)
    rng = random.Random(11)
    users = [chain.funded() for _ in range(4)]
    for u in users:
        chain.svm.airdrop(u.pubkey(), 10**9)
    placed = []
    for i in range(16):
        chain.set_time(NOW + i)                 # created_at orders the equal prices
        side = "buy" if i % 2 else "sell"
        placed.append(place(chain, side, users[i % 4], rng.randint(50, 400),
                            rng.choice([90, 95, 100, 105, 110])))
    book = [order_account(str(o), chain.decode("trading", "Order", o)) for o in placed]
    ms = match([o for o in book if o.side == "buy"], [o for o in book if o.side == "sell"])
    assert len(ms) >= 3, fills(ms)
    assert any(m.amount_wh < max(o.amount for o in book) for m in ms)
    from solders.pubkey import Pubkey
    for m in ms:
        buy, sell = Pubkey.from_string(m.buy_order), Pubkey.from_string(m.sell_order)
        chain.ok(match_ix(chain, buy, sell, 2**40), chain.authority)
        rec = chain.decode("trading", "TradeRecord", trade_address(chain, buy, sell))
        assert (int(rec["amount"]), int(rec["price_per_kwh"])) == (m.amount_wh, m.price)
    filled: dict[str, int] = {}
    for m in ms:
        filled[m.buy_order] = filled.get(m.buy_order, 0) + m.amount_wh
        filled[m.sell_order] = filled.get(m.sell_order, 0) + m.amount_wh
    after = {str(o): chain.decode("trading", "Order", o) for o in placed}
    assert {k: int(v["filled_amount"]) for k, v in after.items() if int(v["filled_amount"])} \
        == filled
