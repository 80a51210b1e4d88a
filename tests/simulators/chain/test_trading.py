"""Trading program in LiteSVM: every instruction's effect and its exact errors, the order-PDA race,
settlement exactly once, and fuzzed instruction data."""

from __future__ import annotations

import random
import struct

import pytest
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from .conftest import NOW, SYSTEM_PROGRAM, TOKEN_PROGRAM, Chain
from .market_setup import (
    WH_BASE_UNITS,
    active_orders,
    erc_address,
    fund_grid,
    init_governance,
    init_market,
    issue_erc_ix,
    issue_validated_erc,
    match_ix,
    order_address,
    order_ix,
    place,
    registry_meter,
    settle_ix,
    trade_address,
    with_data,
    with_meta,
)

U64_MAX = 2**64 - 1
DAY = 86_400


def market(chain: Chain) -> dict:
    return chain.decode("trading", "Market", chain.idls["trading"].pda("market"))


def order(chain: Chain, key: Pubkey) -> dict:
    return chain.decode("trading", "Order", key)


@pytest.fixture
def book(chain: Chain) -> Chain:
    init_market(chain)
    return chain


# ---------------------------------------------------------------- initialize / market
def test_initialize_is_a_signed_no_op(chain: Chain) -> None:
    ix = chain.ix("trading", "initialize", {}, {"authority": chain.authority.pubkey()})
    out = chain.ok(ix, chain.authority)
    assert "Program log: Trading program initialized" in out.logs
    chain.fails(3010, with_meta(ix, 0, signer=False), chain.funded())
    chain.fails(3005, Instruction(ix.program_id, ix.data, []), chain.authority)


def test_initialize_market(chain: Chain) -> None:
    a = chain.authority
    out = chain.ok(chain.ix("trading", "initialize_market", {}, {"authority": a.pubkey()}), a)
    key = chain.idls["trading"].pda("market")
    assert len(chain.data(key)) == 75
    assert market(chain) == {"authority": a.pubkey(), "active_orders": 0, "total_volume": 0,
                             "total_trades": 0, "created_at": NOW, "clearing_enabled": True,
                             "market_fee_bps": 25}
    assert out.events["trading"] == [("MarketInitialized", {"authority": a.pubkey(), "timestamp": NOW})]
    chain.fails(0, chain.ix("trading", "initialize_market", {}, {"authority": a.pubkey()}), a)


def test_initialize_market_errors(chain: Chain) -> None:
    a = chain.authority
    ix = chain.ix("trading", "initialize_market", {}, {"authority": a.pubkey()})
    chain.fails(2006, with_meta(ix, 0, key=Pubkey.new_unique()), a)
    chain.fails(3010, with_meta(ix, 1, signer=False), chain.funded())
    chain.fails(3008, with_meta(ix, 2, key=Pubkey.new_unique()), a)
    chain.fails(2000, with_meta(ix, 0, writable=False), a)
    chain.fails(3005, Instruction(ix.program_id, ix.data, ix.accounts[:2]), a)
    chain.fails(101, with_data(ix, b"\x00" * 8), a)
    chain.fails(100, with_data(ix, bytes(ix.data)[:7]), a)


# ---------------------------------------------------------------- orders
def test_create_sell_order_without_erc(book: Chain) -> None:
    seller = book.funded()
    ix, key = order_ix(book, "sell", seller.pubkey(), 1_500, 4_000_000)
    # the optional ERC slot holds the trading program ID (Anchor's None)
    assert ix.accounts[2].pubkey == book.idls["trading"].program_id
    out = book.ok(ix, seller)
    assert key == order_address(book, seller.pubkey(), 0)
    assert order(book, key) == {
        "seller": seller.pubkey(), "buyer": Pubkey.default(), "amount": 1_500, "filled_amount": 0,
        "price_per_kwh": 4_000_000, "order_type": "Sell", "status": "Active", "created_at": NOW,
        "expires_at": NOW + DAY}
    assert len(book.data(key)) == 114
    assert market(book)["active_orders"] == 1
    assert out.events["trading"] == [("SellOrderCreated", {
        "seller": seller.pubkey(), "order_id": key, "amount": 1_500, "price_per_kwh": 4_000_000,
        "timestamp": NOW})]


def test_create_buy_order(book: Chain) -> None:
    buyer = book.funded()
    place(book, "sell", book.funded(), 10, 1)
    ix, key = order_ix(book, "buy", buyer.pubkey(), 2_000, 5_000_000)
    out = book.ok(ix, buyer)
    assert key == order_address(book, buyer.pubkey(), 1)
    assert order(book, key) == {
        "seller": Pubkey.default(), "buyer": buyer.pubkey(), "amount": 2_000, "filled_amount": 0,
        "price_per_kwh": 5_000_000, "order_type": "Buy", "status": "Active", "created_at": NOW,
        "expires_at": NOW + DAY}
    assert market(book)["active_orders"] == 2
    assert out.events["trading"] == [("BuyOrderCreated", {
        "buyer": buyer.pubkey(), "order_id": key, "amount": 2_000, "price_per_kwh": 5_000_000,
        "timestamp": NOW})]


@pytest.mark.parametrize("side", ["sell", "buy"])
def test_create_order_errors(book: Chain, side: str) -> None:
    user = book.funded()
    u = user.pubkey()
    book.fails(6001, order_ix(book, side, u, 0, 5)[0], user)
    book.fails(6002, order_ix(book, side, u, 5, 0)[0], user)
    book.fails(2006, order_ix(book, side, u, 5, 5, index=1)[0], user)
    good = order_ix(book, side, u, 5, 5)[0]
    auth = 3 if side == "sell" else 2
    book.fails(3010, with_meta(good, auth, signer=False), book.funded())
    book.fails(2000, with_meta(good, 0, writable=False), user)
    book.fails(3008, with_meta(good, auth + 1, key=Pubkey.new_unique()), user)
    book.fails(102, with_data(good, bytes(good.data)[:15]), user)
    book.fails(3005, Instruction(good.program_id, good.data, good.accounts[:auth]), user)
    # a Market-shaped account the trading program does not own
    fake = Pubkey.new_unique()
    book.set_account(fake, book.data(book.idls["trading"].pda("market")), SYSTEM_PROGRAM)
    book.fails(3007, with_meta(good, 0, key=fake), user)
    book.set_account(fake, b"\x01" * 75, book.idls["trading"].program_id)
    book.fails(3002, with_meta(good, 0, key=fake), user)
    assert market(book)["active_orders"] == 0
    book.ok(good, user)


def test_sell_order_checks_a_given_erc(book: Chain) -> None:
    init_governance(book)
    seller = book.funded()
    meter = registry_meter(book, "MTR-SELL", seller.pubkey(), generation=10_000)
    cert = issue_validated_erc(book, "ERC-1", 2_000, meter)
    book.fails(6011, order_ix(book, "sell", seller.pubkey(), 2_001, 7, erc=cert)[0], seller)
    key = place(book, "sell", seller, 2_000, 7, erc=cert)
    assert order(book, key)["amount"] == 2_000
    # issued but not validated for trading
    book.ok(issue_erc_ix(book, "ERC-2", 500, meter), book.authority)
    raw = erc_address(book, "ERC-2")
    book.fails(6010, order_ix(book, "sell", seller.pubkey(), 100, 7, erc=raw)[0], seller)
    # not Valid: a Revoked certificate (no revoke instruction exists at this version)
    gov = book.idls["governance"]
    revoked = gov.decode_account("ErcCertificate", book.data(cert)) | {"status": "Revoked"}
    fake = Pubkey.new_unique()
    book.set_account(fake, gov.encode_account("ErcCertificate", revoked), gov.program_id)
    book.fails(6008, order_ix(book, "sell", seller.pubkey(), 100, 7, erc=fake)[0], seller)
    # the same bytes owned by another program are not a governance certificate
    book.set_account(fake, book.data(cert), book.idls["trading"].program_id)
    book.fails(3007, order_ix(book, "sell", seller.pubkey(), 100, 7, erc=fake)[0], seller)
    book.set_account(fake, b"\x00" * 100, gov.program_id)
    book.fails(3002, order_ix(book, "sell", seller.pubkey(), 100, 7, erc=fake)[0], seller)
    # expired one year after issuance
    book.set_time(NOW + 31_536_000)
    book.fails(6009, order_ix(book, "sell", seller.pubkey(), 100, 7, erc=cert)[0], seller)


def test_order_pda_race_and_reread(book: Chain) -> None:
    """Two clients build against the same active_orders; the second fails with ConstraintSeeds and
    succeeds after re-reading the market."""
    alice, bob = book.funded(), book.funded()
    index = active_orders(book)
    first, _ = order_ix(book, "buy", alice.pubkey(), 100, 10, index=index)
    second, stale = order_ix(book, "sell", bob.pubkey(), 100, 9, index=index)
    book.ok(first, alice)
    out = book.fails(2006, second, bob)
    assert book.idls["trading"].error_name(out.error) == "ConstraintSeeds"
    assert book.svm.get_account(stale) is None
    retry, key = order_ix(book, "sell", bob.pubkey(), 100, 9)
    book.ok(retry, bob)
    assert key == order_address(book, bob.pubkey(), index + 1)
    assert market(book)["active_orders"] == index + 2


# ---------------------------------------------------------------- cancel
def test_cancel_order_decrements_active_orders(book: Chain) -> None:
    seller = book.funded()
    key = place(book, "sell", seller, 100, 10)
    place(book, "buy", book.funded(), 100, 5)
    ix = book.ix("trading", "cancel_order", {},
                 {"market": book.idls["trading"].pda("market"), "order": key, "authority": seller.pubkey()})
    other = book.funded()
    book.fails(6000, with_meta(ix, 2, key=other.pubkey()), other)
    book.fails(3010, with_meta(ix, 2, signer=False), other)
    book.fails(2000, with_meta(ix, 1, writable=False), seller)
    out = book.ok(ix, seller)
    assert order(book, key)["status"] == "Cancelled"
    assert market(book)["active_orders"] == 1
    assert out.events["trading"] == [("OrderCancelled", {"order_id": key, "user": seller.pubkey(),
                                                         "timestamp": NOW})]
    book.fails(6006, ix, seller)
    assert market(book)["active_orders"] == 1


# ---------------------------------------------------------------- match
def test_match_orders_partial_then_complete(book: Chain) -> None:
    seller, buyer1, buyer2 = book.funded(), book.funded(), book.funded()
    sell = place(book, "sell", seller, 1_000, 3_000_001)
    buy1 = place(book, "buy", buyer1, 600, 4_000_000)
    buy2 = place(book, "buy", buyer2, 900, 3_500_000)
    assert market(book)["active_orders"] == 3
    out = book.ok(match_ix(book, buy1, sell, 10_000), book.authority)
    # fill = min(10000, 600, 1000); price = floor((4000000 + 3000001) / 2) = 3500000
    # total = 600 * 3500000 = 2100000000; fee = 2100000000 * 25 / 10000 = 5250000
    trade = trade_address(book, buy1, sell)
    assert book.decode("trading", "TradeRecord", trade) == {
        "sell_order": sell, "buy_order": buy1, "seller": seller.pubkey(), "buyer": buyer1.pubkey(),
        "amount": 600, "price_per_kwh": 3_500_000, "total_value": 2_100_000_000,
        "fee_amount": 5_250_000, "executed_at": NOW}
    assert len(book.data(trade)) == 176
    assert out.events["trading"] == [("OrderMatched", {
        "sell_order": sell, "buy_order": buy1, "seller": seller.pubkey(), "buyer": buyer1.pubkey(),
        "amount": 600, "price": 3_500_000, "total_value": 2_100_000_000, "fee_amount": 5_250_000,
        "timestamp": NOW})]
    assert order(book, buy1)["status"] == "Completed" and order(book, buy1)["filled_amount"] == 600
    assert order(book, sell)["status"] == "PartiallyFilled" and order(book, sell)["filled_amount"] == 600
    assert market(book)["active_orders"] == 2
    book.ok(match_ix(book, buy2, sell, 500), book.authority)
    # fill = min(500, 900, 400) = 400; price = floor((3500000 + 3000001) / 2) = 3250000
    rec = book.decode("trading", "TradeRecord", trade_address(book, buy2, sell))
    assert (rec["amount"], rec["price_per_kwh"], rec["total_value"], rec["fee_amount"]) == (
        400, 3_250_000, 1_300_000_000, 3_250_000)
    assert order(book, sell)["status"] == "Completed"
    assert order(book, buy2)["status"] == "PartiallyFilled"
    m = market(book)
    assert (m["active_orders"], m["total_volume"], m["total_trades"]) == (1, 1_000, 2)
    # a completed order cannot be matched again
    book.fails(6004, match_ix(book, buy1, place(book, "sell", book.funded(), 5, 1), 5), book.authority)


def test_match_orders_errors(book: Chain) -> None:
    seller, buyer = book.funded(), book.funded()
    sell = place(book, "sell", seller, 100, 50)
    buy = place(book, "buy", buyer, 100, 60)
    cheap = place(book, "buy", book.funded(), 100, 49)
    a = book.authority
    outsider = book.funded()
    book.fails(6000, match_ix(book, buy, sell, 10, outsider.pubkey()), outsider)
    book.fails(6001, match_ix(book, buy, sell, 0), a)
    book.fails(6012, match_ix(book, sell, buy, 10), a)
    book.fails(6012, match_ix(book, buy, buy, 10), a)
    book.fails(6005, match_ix(book, cheap, sell, 10), a)
    ix = match_ix(book, buy, sell, 10)
    book.fails(3010, with_meta(ix, 4, signer=False), outsider)
    book.fails(2006, with_meta(ix, 3, key=Pubkey.new_unique()), a)
    book.fails(2000, with_meta(ix, 1, writable=False), a)
    book.fails(3002, with_meta(ix, 1, key=book.idls["trading"].pda("market")), a)
    book.fails(3008, with_meta(ix, 5, key=Pubkey.new_unique()), a)
    book.fails(102, with_data(ix, bytes(ix.data)[:12]), a)
    # expiry is enforced (24 h after creation)
    book.set_time(NOW + DAY)
    book.fails(6013, ix, a)
    book.set_time(NOW + DAY - 1)
    book.ok(ix, a)
    # a cancelled sell order is inactive
    cancel = book.ix("trading", "cancel_order", {},
                     {"market": book.idls["trading"].pda("market"), "order": sell,
                      "authority": seller.pubkey()})
    book.ok(cancel, seller)
    book.fails(6003, match_ix(book, cheap, sell, 10), a)
    # the same pair settles in one TradeRecord: a second match fails in System create (in use)
    sell2 = place(book, "sell", seller, 100, 50)
    book.ok(match_ix(book, buy, sell2, 1), a)
    book.fails(0, match_ix(book, buy, sell2, 1), a)


def test_match_value_overflow_is_an_error(book: Chain) -> None:
    sell = place(book, "sell", book.funded(), 2**40, 2**30)
    buy = place(book, "buy", book.funded(), 2**40, 2**30)
    book.fails(6015, match_ix(book, buy, sell, 2**40), book.authority)
    # the largest value that fits: fill * price < 2^64 and the fee computed in 128 bits
    book.ok(match_ix(book, buy, sell, 2**33), book.authority)
    rec = book.decode("trading", "TradeRecord", trade_address(book, buy, sell))
    assert rec["total_value"] == 2**63 and rec["fee_amount"] == 2**63 * 25 // 10_000


# ---------------------------------------------------------------- market params
def test_update_market_params(book: Chain) -> None:
    a = book.authority
    ix = book.ix("trading", "update_market_params", {"market_fee_bps": 10_000, "clearing_enabled": False},
                 {"market": book.idls["trading"].pda("market"), "authority": a.pubkey()})
    out = book.ok(ix, a)
    m = market(book)
    assert (m["market_fee_bps"], m["clearing_enabled"]) == (10_000, False)
    assert out.events["trading"] == [("MarketParamsUpdated", {
        "authority": a.pubkey(), "market_fee_bps": 10_000, "clearing_enabled": False, "timestamp": NOW})]
    over = book.ix("trading", "update_market_params", {"market_fee_bps": 10_001, "clearing_enabled": True},
                   {"market": book.idls["trading"].pda("market"), "authority": a.pubkey()})
    out = book.fails(6014, over, a)
    assert ("Program log: AnchorError occurred. Error Code: InvalidFee. Error Number: 6014. "
            "Error Message: Market fee exceeds 10000 basis points.") in out.logs
    other = book.funded()
    book.fails(6000, with_meta(ix, 1, key=other.pubkey()), other)
    book.fails(3010, with_meta(ix, 1, signer=False), other)
    book.fails(2000, with_meta(ix, 0, writable=False), a)
    book.fails(102, with_data(ix, bytes(ix.data)[:10] + b"\x02"), a)
    assert market(book)["market_fee_bps"] == 10_000


# ---------------------------------------------------------------- settle
def matched_trade(chain: Chain, amount_wh: int = 1_500, seller_units: int | None = None
                  ) -> tuple[Keypair, Keypair, Pubkey, Pubkey, Pubkey]:
    seller, buyer = chain.funded(), chain.funded()
    units = amount_wh * WH_BASE_UNITS if seller_units is None else seller_units
    seller_ta = fund_grid(chain, seller.pubkey(), units)
    buyer_ta = fund_grid(chain, buyer.pubkey(), 0)
    sell = place(chain, "sell", seller, amount_wh, 3_000_000)
    buy = place(chain, "buy", buyer, amount_wh, 3_000_000)
    chain.ok(match_ix(chain, buy, sell, amount_wh), chain.authority)
    return seller, buyer, trade_address(chain, buy, sell), seller_ta, buyer_ta


def test_settle_trade_moves_energy_once(book: Chain) -> None:
    seller, buyer, trade, seller_ta, buyer_ta = matched_trade(book, 1_500, 2_000 * WH_BASE_UNITS)
    ix = settle_ix(book, trade, seller_ta, buyer_ta, seller.pubkey())
    out = book.ok(ix, seller)
    assert book.token_balance(seller_ta) == 500 * WH_BASE_UNITS
    assert book.token_balance(buyer_ta) == 1_500 * WH_BASE_UNITS
    settlement = book.idls["trading"].find_pda([b"settlement", bytes(trade)])[0]
    expected = {"trade_record": trade, "seller": seller.pubkey(), "buyer": buyer.pubkey(),
                "amount": 1_500, "token_amount": 1_500_000_000, "settled_by": seller.pubkey()}
    assert book.decode("trading", "TradeSettlement", settlement) == expected | {"settled_at": NOW}
    assert out.events["trading"] == [("TradeSettled", expected | {"timestamp": NOW})]
    # exactly once, even when the seller still holds enough tokens
    book.fails(6016, ix, seller)
    assert book.token_balance(buyer_ta) == 1_500 * WH_BASE_UNITS


def test_settle_trade_when_the_marker_address_was_prefunded(book: Chain) -> None:
    """Lamports sent to the settlement PDA beforehand cannot block settlement."""
    seller, buyer, trade, seller_ta, buyer_ta = matched_trade(book, 3)
    settlement = book.idls["trading"].find_pda([b"settlement", bytes(trade)])[0]
    book.svm.airdrop(settlement, 5_000)
    book.ok(settle_ix(book, trade, seller_ta, buyer_ta, seller.pubkey()), seller)
    acc = book.svm.get_account(settlement)
    assert acc.owner == book.idls["trading"].program_id
    assert acc.lamports == book.svm.minimum_balance_for_rent_exemption(160)
    assert book.token_balance(buyer_ta) == 3 * WH_BASE_UNITS


def test_settle_trade_by_approved_delegate(book: Chain) -> None:
    seller, buyer, trade, seller_ta, buyer_ta = matched_trade(book, 40)
    gateway = book.funded()
    ix = settle_ix(book, trade, seller_ta, buyer_ta, gateway.pubkey())
    book.fails(6000, ix, gateway)
    # SPL Token Approve (opcode 4): the seller lets the gateway move up to the trade's tokens
    approve = Instruction(TOKEN_PROGRAM, bytes([4]) + struct.pack("<Q", 40 * WH_BASE_UNITS), [
        AccountMeta(seller_ta, False, True), AccountMeta(gateway.pubkey(), False, False),
        AccountMeta(seller.pubkey(), True, False)])
    book.ok(approve, seller)
    book.ok(ix, gateway)
    assert book.token_balance(buyer_ta) == 40 * WH_BASE_UNITS
    assert book.token_balance(seller_ta) == 0


def test_settle_trade_errors(book: Chain) -> None:
    seller, buyer, trade, seller_ta, buyer_ta = matched_trade(book, 10, 9 * WH_BASE_UNITS)
    s = seller.pubkey()
    ix = settle_ix(book, trade, seller_ta, buyer_ta, s)
    # the seller's account lacks one Wh: the SPL Token program refuses (InsufficientFunds = 1)
    book.fails(1, ix, seller)
    book.fails(6017, settle_ix(book, trade, buyer_ta, seller_ta, s), seller)
    stranger_ta = fund_grid(book, book.funded().pubkey(), 0)
    book.fails(6017, settle_ix(book, trade, seller_ta, stranger_ta, s), seller)
    book.fails(6000, settle_ix(book, trade, seller_ta, buyer_ta, buyer.pubkey()), buyer)
    book.fails(3010, with_meta(ix, 5, signer=False), buyer)
    book.fails(2012, with_meta(ix, 2, key=Pubkey.new_unique()), seller)
    book.fails(2006, with_meta(ix, 1, key=Pubkey.new_unique()), seller)
    book.fails(2000, with_meta(ix, 3, writable=False), seller)
    book.fails(3008, with_meta(ix, 6, key=SYSTEM_PROGRAM), seller)
    book.fails(3007, with_meta(ix, 3, key=buyer.pubkey()), seller)
    book.fails(3012, with_meta(ix, 4, key=Pubkey.new_unique()), seller)
    book.fails(3002, with_meta(ix, 0, key=book.idls["trading"].pda("market")), seller)
    book.fails(3005, Instruction(ix.program_id, ix.data, ix.accounts[:7]), seller)
    fund_grid(book, s, WH_BASE_UNITS)
    book.ok(ix, seller)
    assert book.token_balance(buyer_ta) == 10 * WH_BASE_UNITS
    # an amount whose GRID value does not fit u64 (a TradeRecord written directly)
    tr = book.idls["trading"]
    huge = tr.decode_account("TradeRecord", book.data(trade)) | {"amount": 2**60}
    forged = Pubkey.new_unique()
    book.set_account(forged, tr.encode_account("TradeRecord", huge), tr.program_id)
    book.fails(6015, settle_ix(book, forged, seller_ta, buyer_ta, s), seller)


# ---------------------------------------------------------------- fuzzing
def fuzz_cases(chain: Chain) -> list[tuple[Instruction, Keypair]]:
    """One valid instruction per trading instruction, with its signer, on a live book."""
    init_governance(chain)
    seller, buyer = chain.funded(), chain.funded()
    meter = registry_meter(chain, "MTR-FZ", seller.pubkey(), 10**6)
    cert = issue_validated_erc(chain, "ERC-FZ", 1_000, meter)
    a = chain.authority
    seller2, buyer2, trade, seller_ta, buyer_ta = matched_trade(chain, 5)
    sell = place(chain, "sell", seller, 500, 10, erc=cert)
    buy = place(chain, "buy", buyer, 500, 12)
    m = chain.idls["trading"].pda("market")
    return [
        (chain.ix("trading", "initialize", {}, {"authority": a.pubkey()}), a),
        (chain.ix("trading", "initialize_market", {}, {"authority": a.pubkey()}), a),
        (order_ix(chain, "sell", seller.pubkey(), 5, 5, erc=cert)[0], seller),
        (order_ix(chain, "buy", buyer.pubkey(), 5, 5)[0], buyer),
        (match_ix(chain, buy, sell, 7), a),
        (chain.ix("trading", "cancel_order", {}, {"market": m, "order": sell, "authority": seller.pubkey()}),
         seller),
        (chain.ix("trading", "update_market_params", {"market_fee_bps": 30, "clearing_enabled": True},
                  {"market": m, "authority": a.pubkey()}), a),
        (settle_ix(chain, trade, seller_ta, buyer_ta, seller2.pubkey()), seller2),
    ]


def test_fuzz_instruction_data(book: Chain) -> None:
    """Random tails after each real discriminator, and random whole payloads: every transaction
    ends in success or an Anchor/program error code, never a runtime fault."""
    rng = random.Random(20250624)
    cases = fuzz_cases(book)
    outcomes: dict[str, int] = {}
    for round_ in range(250):
        for ix, signer in cases:
            disc = bytes(ix.data)[:8]
            n = rng.choice([0, 1, 2, 7, 8, 9, 16, 17, 24, 40, rng.randrange(0, 300)])
            tail = rng.randbytes(n)
            data = disc + tail if round_ % 4 else rng.randbytes(rng.randrange(0, 24))
            out = book.send(with_data(ix, data), signer)
            assert out.ok or isinstance(out.error, int), f"{data.hex()}: {out.error} {out.logs[-3:]}"
            key = "ok" if out.ok else str(out.error)
            outcomes[key] = outcomes.get(key, 0) + 1
    assert sum(outcomes.values()) == 250 * len(cases)
    assert {"102", "101"} <= outcomes.keys()
