"""The five programs together, as the platform uses them: meters and readings, GRID minted for net
generation, an ERC issued and validated, a sell and a buy order matched and settled — every balance
and account checked against values computed by hand."""

from __future__ import annotations

from solders.pubkey import Pubkey

from .conftest import NOW, Chain
from .market_setup import (
    active_orders,
    erc_address,
    issue_erc_ix,
    match_ix,
    order_address,
    order_ix,
    settle_ix,
    trade_address,
    validate_erc_ix,
)

GRID_PER_WH = 10**6  # base units; 1 GRID = 1 kWh with 9 decimals


def mint_supply(chain: Chain, mint: Pubkey) -> int:
    return int.from_bytes(chain.data(mint)[36:44], "little")


def test_register_read_mint_certify_trade_settle(chain: Chain) -> None:
    c = chain
    op = c.authority  # the platform operator: registry, oracle, token, governance, market
    gateway, alice, bob = c.funded(), c.funded(), c.funded()

    # --- registry: two users, one meter each
    registry = c.init_registry()
    alice_user = c.register_user(alice, "Prosumer", "Bangkok, rooftop PV")
    bob_user = c.register_user(bob, "Consumer", "Bangkok, flat 4B")
    pv = c.register_meter(alice, "PV-ALICE-01", "Solar")
    grid_meter = c.register_meter(bob, "GRID-BOB-01", "Grid")

    # --- readings: the gateway reports them to the oracle, the owners book them in the registry
    oracle_data = c.init_oracle(gateway.pubkey())
    readings = [  # (owner, meter, meter_id, produced Wh, consumed Wh, interval end)
        (alice, pv, "PV-ALICE-01", 3_200, 700, NOW - 1_800),
        (alice, pv, "PV-ALICE-01", 2_800, 300, NOW - 900),
        (bob, grid_meter, "GRID-BOB-01", 0, 1_900, NOW - 900),
    ]
    submitted = []
    for owner, meter, meter_id, produced, consumed, ts in readings:
        out = c.ok(c.ix("oracle", "submit_meter_reading",
                        {"meter_id": meter_id, "energy_produced": produced, "energy_consumed": consumed,
                         "reading_timestamp": ts},
                        {"oracle_data": oracle_data, "authority": gateway.pubkey()}), gateway)
        submitted += out.events["oracle"]
        c.ok(c.ix("registry", "update_meter_reading",
                  {"energy_generated": produced, "energy_consumed": consumed, "reading_timestamp": ts},
                  {"meter_account": meter, "oracle_authority": owner.pubkey()}), owner)
    assert [e["meter_id"] for _, e in submitted] == ["PV-ALICE-01", "PV-ALICE-01", "GRID-BOB-01"]
    # alice: 6,000 Wh generated, 1,000 Wh consumed -> 5,000 Wh net; bob: 1,900 Wh consumed, no net

    # --- GRID for net generation (registry settles, energy token mints 10^6 units per Wh)
    token_info, mint = c.init_token()
    alice_ata = c.create_ata(alice.pubkey(), mint, alice)
    bob_ata = c.create_ata(bob.pubkey(), mint, bob)

    def mint_grid(owner, meter, ata):
        return c.ix("energy_token", "mint_grid_tokens", {},
                    {"mint": mint, "meter_account": meter, "user_token_account": ata,
                     "meter_owner": owner.pubkey(), "registry_program": c.idls["registry"].program_id})

    out = c.ok(mint_grid(alice, pv, alice_ata), alice)
    assert out.events["energy_token"] == [("GridTokensMinted", {
        "meter_owner": alice.pubkey(), "amount": 5_000_000_000, "timestamp": NOW})]
    c.fails(6006, mint_grid(bob, grid_meter, bob_ata), bob)  # nothing to mint for a consumer

    # --- governance: an ERC on alice's registry meter, validated for trading
    c.ok(c.ix("governance", "initialize_poa", {}, {"authority": op.pubkey()}), op)
    c.set_time(NOW + 60)
    c.ok(issue_erc_ix(c, "ERC-ALICE-2025-06", 4_000, pv, source="solar",
                      validation="PV-ALICE-01 2 intervals"), op)
    cert = erc_address(c, "ERC-ALICE-2025-06")
    c.fails(6020, issue_erc_ix(c, "ERC-ALICE-2025-07", 2_001, pv), op)  # 6,000 - 4,000 left
    c.set_time(NOW + 120)
    c.ok(validate_erc_ix(c, cert), op)

    # --- trading: alice sells 3,000 Wh at 4.0 GRID/kWh with the ERC, bob bids 2,000 Wh at 4.6
    c.ok(c.ix("trading", "initialize_market", {}, {"authority": op.pubkey()}), op)
    c.set_time(NOW + 180)
    sell_ix, sell = order_ix(c, "sell", alice.pubkey(), 3_000, 4_000_000_000, erc=cert)
    c.ok(sell_ix, alice)
    buy_ix, buy = order_ix(c, "buy", bob.pubkey(), 2_000, 4_600_000_000)
    c.ok(buy_ix, bob)
    assert (sell, buy) == (order_address(c, alice.pubkey(), 0), order_address(c, bob.pubkey(), 1))
    c.set_time(NOW + 240)
    out = c.ok(match_ix(c, buy, sell, 2_000), op)
    trade = trade_address(c, buy, sell)
    c.set_time(NOW + 300)
    settled = c.ok(settle_ix(c, trade, alice_ata, bob_ata, alice.pubkey()), alice)
    c.fails(6016, settle_ix(c, trade, alice_ata, bob_ata, alice.pubkey()), alice)

    # ---------------------------------------------------------------- hand-computed end state
    # clearing price floor((4,600,000,000 + 4,000,000,000) / 2) = 4,300,000,000 per kWh;
    # total_value = 2,000 x 4,300,000,000 = 8,600,000,000,000 (amount x price, as the public
    # program); fee = 8,600,000,000,000 x 25 / 10,000 = 21,500,000,000
    # tokens: alice 5,000 Wh minted = 5,000,000,000 units, 2,000 Wh = 2,000,000,000 to bob
    assert c.token_balance(alice_ata) == 3_000_000_000
    assert c.token_balance(bob_ata) == 2_000_000_000
    assert mint_supply(c, mint) == 5_000_000_000
    assert c.decode("energy_token", "TokenInfo", token_info) == {
        "authority": op.pubkey(), "mint": mint, "total_supply": 5_000_000_000, "created_at": NOW}

    assert c.decode("registry", "Registry", registry) == {
        "authority": op.pubkey(), "user_count": 2, "meter_count": 2, "created_at": NOW}
    assert c.decode("registry", "UserAccount", alice_user)["meter_count"] == 1
    assert c.decode("registry", "UserAccount", bob_user)["meter_count"] == 1
    assert c.decode("registry", "MeterAccount", pv) == {
        "meter_id": "PV-ALICE-01", "owner": alice.pubkey(), "meter_type": "Solar", "status": "Active",
        "registered_at": NOW, "last_reading_at": NOW - 900, "total_generation": 6_000,
        "total_consumption": 1_000, "settled_net_generation": 5_000, "claimed_erc_generation": 0}
    assert c.decode("registry", "MeterAccount", grid_meter) == {
        "meter_id": "GRID-BOB-01", "owner": bob.pubkey(), "meter_type": "Grid", "status": "Active",
        "registered_at": NOW, "last_reading_at": NOW - 900, "total_generation": 0,
        "total_consumption": 1_900, "settled_net_generation": 0, "claimed_erc_generation": 0}
    oracle = c.decode("oracle", "OracleData", oracle_data)
    assert (oracle["total_readings"], oracle["last_reading_timestamp"]) == (3, NOW - 900)

    gov = c.idls["governance"]
    assert c.decode("governance", "ErcCertificate", cert) == {
        "certificate_id": "ERC-ALICE-2025-06", "authority": op.pubkey(), "energy_amount": 4_000,
        "renewable_source": "solar", "validation_data": "PV-ALICE-01 2 intervals", "issued_at": NOW + 60,
        "expires_at": NOW + 60 + 31_536_000, "status": "Valid", "validated_for_trading": True,
        "trading_validated_at": NOW + 120}
    assert c.decode("governance", "MeterClaim", gov.pda("meter_claim", meter_account=pv)) == {
        "meter": pv, "claimed_erc_generation": 4_000, "certificates_issued": 1,
        "last_claimed_at": NOW + 60}
    poa = c.decode("governance", "PoAConfig", gov.pda("poa_config"))
    assert (poa["total_ercs_issued"], poa["total_ercs_validated"], poa["total_energy_certified"],
            poa["last_erc_issued_at"], poa["last_updated"]) == (1, 1, 4_000, NOW + 60, NOW + 120)

    market = c.idls["trading"].pda("market")
    assert c.decode("trading", "Market", market) == {
        "authority": op.pubkey(), "active_orders": 1, "total_volume": 2_000, "total_trades": 1,
        "created_at": NOW + 120, "clearing_enabled": True, "market_fee_bps": 25}
    assert active_orders(c) == 1
    assert c.decode("trading", "Order", sell) == {
        "seller": alice.pubkey(), "buyer": Pubkey.default(), "amount": 3_000, "filled_amount": 2_000,
        "price_per_kwh": 4_000_000_000, "order_type": "Sell", "status": "PartiallyFilled",
        "created_at": NOW + 180, "expires_at": NOW + 180 + 86_400}
    assert c.decode("trading", "Order", buy) == {
        "seller": Pubkey.default(), "buyer": bob.pubkey(), "amount": 2_000, "filled_amount": 2_000,
        "price_per_kwh": 4_600_000_000, "order_type": "Buy", "status": "Completed",
        "created_at": NOW + 180, "expires_at": NOW + 180 + 86_400}
    record = {"sell_order": sell, "buy_order": buy, "seller": alice.pubkey(), "buyer": bob.pubkey(),
              "amount": 2_000, "price_per_kwh": 4_300_000_000, "total_value": 8_600_000_000_000,
              "fee_amount": 21_500_000_000}
    assert c.decode("trading", "TradeRecord", trade) == record | {"executed_at": NOW + 240}
    assert out.events["trading"] == [("OrderMatched", {
        "sell_order": sell, "buy_order": buy, "seller": alice.pubkey(), "buyer": bob.pubkey(),
        "amount": 2_000, "price": 4_300_000_000, "total_value": 8_600_000_000_000,
        "fee_amount": 21_500_000_000, "timestamp": NOW + 240})]
    settlement = c.idls["trading"].find_pda([b"settlement", bytes(trade)])[0]
    done = {"trade_record": trade, "seller": alice.pubkey(), "buyer": bob.pubkey(), "amount": 2_000,
            "token_amount": 2_000 * GRID_PER_WH, "settled_by": alice.pubkey()}
    assert c.decode("trading", "TradeSettlement", settlement) == done | {"settled_at": NOW + 300}
    assert settled.events["trading"] == [("TradeSettled", done | {"timestamp": NOW + 300})]

    # every account the programs created holds exactly its rent-exempt deposit:
    # (128 + space) x 3,480 lamports/byte-year x 2 years
    def rent(space: int) -> int:
        return (128 + space) * 3_480 * 2

    deposits = {registry: 64, alice_user: 166, bob_user: 166, pv: 144, grid_meter: 144,
                oracle_data: 105, token_info: 88, mint: 82, alice_ata: 165, bob_ata: 165,
                gov.pda("poa_config"): 496, cert: 460, gov.pda("meter_claim", meter_account=pv): 64,
                market: 75, sell: 114, buy: 114, trade: 176, settlement: 160}
    for key, space in deposits.items():
        acc = c.svm.get_account(key)
        assert (acc.lamports, len(acc.data)) == (rent(space), space), key
    assert rent(160) == 2_004_480 and rent(496) == 4_343_040
    # SOL: 5,000 lamports per transaction a wallet paid for (failed ones included) plus the
    # deposits it funded; everyone started with 100 SOL
    start = 100 * 10**9
    alice_txs = 9  # user, meter, 2 readings, ATA, mint, sell, settle, refused second settle
    bob_txs = 6  # user, meter, reading, ATA, refused mint, buy
    assert c.svm.get_balance(alice.pubkey()) == start - 5_000 * alice_txs - sum(
        rent(n) for n in (166, 144, 165, 114, 160))
    assert c.svm.get_balance(bob.pubkey()) == start - 5_000 * bob_txs - sum(
        rent(n) for n in (166, 144, 165, 114))
    assert c.svm.get_balance(gateway.pubkey()) == start - 5_000 * 3
