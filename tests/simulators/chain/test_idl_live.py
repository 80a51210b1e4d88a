"""gridnode.chain.idl against the running programs: PDAs resolved from another account's field."""

from __future__ import annotations

import pytest

from simulators.chain.svm import PROGRAMS_DIR

from .conftest import Chain


@pytest.mark.skipif(not (PROGRAMS_DIR / "trading.so").exists(), reason="trading program not built")
def test_order_pda_from_market_active_orders(chain: Chain) -> None:
    a = chain.authority
    trading = chain.idls["trading"]
    chain.ok(chain.ix("trading", "initialize_market", {}, {"authority": a.pubkey()}), a)
    market = trading.pda("market")

    def fetch(key):
        acc = chain.svm.get_account(key)
        return bytes(acc.data) if acc is not None else None

    for i in range(3):
        ix = trading.instruction("create_buy_order", {"energy_amount": 100 + i, "max_price_per_kwh": 5},
                                 {"market": market, "authority": a.pubkey()}, fetch=fetch)
        chain.ok(ix, a)
        order = chain.decode("trading", "Order", ix.accounts[1].pubkey)
        assert order["amount"] == 100 + i and order["order_type"] == "Buy"
    assert chain.decode("trading", "Market", market)["active_orders"] == 3
