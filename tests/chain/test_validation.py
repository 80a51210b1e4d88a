"""Input validation: typed errors that name the field and what is allowed; each tx type's row
derives idempotency keys and parks stale readings from its payload model."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from solders.pubkey import Pubkey

from gridnode.chain.fees import percentile
from gridnode.chain.txtypes import TX_TYPES, new_operation, tx_type, tx_type_of
from gridnode.chain.validation import (
    InvalidInput,
    MeterReadingPayload,
    MeterRegistrationPayload,
    TooOld,
    UserRegistrationPayload,
)
from gridnode.config import ConfigError, parse_config
from gridnode.meters.signatures import parse_public_key
from gridnode.types import PUBKEY_RULE

READING = {"meter_id": "m1", "interval_start": 1_700_000_000, "interval_end": 1_700_000_900,
           "energy_produced_wh": 1200, "energy_consumed_wh": 300, "backfilled": False}


def test_a_good_reading_passes() -> None:
    payload = tx_type("meter_reading").parse(READING)
    assert isinstance(payload, MeterReadingPayload)
    assert payload.energy_produced_wh == 1200


@pytest.mark.parametrize(("change", "field"), [
    ({"meter_id": "x" * 33}, "meter_id"),
    ({"energy_produced_wh": -1}, "energy_produced_wh"),
    ({"energy_consumed_wh": 2**64}, "energy_consumed_wh"),
    ({"interval_end": 1_699_999_999}, "interval_end"),
])
def test_bad_readings_name_the_field(change: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        tx_type("meter_reading").parse({**READING, **change})
    assert err.value.details["field"] == field
    assert field in str(err.value)


def test_unknown_tx_type_and_bad_pubkey() -> None:
    with pytest.raises(InvalidInput, match="known"):
        tx_type("teleport")
    with pytest.raises(InvalidInput, match="owner"):
        tx_type("order_cancel").parse(
            {"owner": "not-a-key", "order": "11111111111111111111111111111111"})


def test_public_keys_and_meter_ids_follow_one_rule_in_config_payloads_and_meters() -> None:
    too_long, longest = "\u00e9" * 17, "\u00e9" * 16      # 34 and 32 bytes of UTF-8
    seed_rule = "1 to 32 bytes of UTF-8 (the on-chain meter_id, a PDA seed); this one is 34"
    with pytest.raises(ConfigError) as cfg:
        parse_config(f'[[meters.mqtt.meters]]\nmeter_id = "{too_long}"\nformat = "tasmota"\n'
                     'topic = "t"\npublic_key = "0OIl"\n', "site.toml")
    assert {e.path: e.allowed for e in cfg.value.errors} == {
        "meters.mqtt.meters[0].meter_id": seed_rule,
        "meters.mqtt.meters[0].public_key": PUBKEY_RULE}
    with pytest.raises(ValidationError) as payload:
        MeterRegistrationPayload(meter_id=too_long, owner="0OIl", meter_type="solar")
    assert {e["loc"][0]: e["msg"].removeprefix("Value error, ")
            for e in payload.value.errors()} == {"meter_id": seed_rule, "owner": PUBKEY_RULE}
    with pytest.raises(ValueError, match=r"^a base58 string of 32 bytes"):
        parse_public_key("0OIl")
    key = str(Pubkey.default())
    assert parse_public_key(key) == Pubkey.default()
    assert MeterRegistrationPayload(meter_id=longest, owner=key, meter_type="solar").owner == key
    assert parse_config(f'[[meters.mqtt.meters]]\nmeter_id = "{longest}"\nformat = "tasmota"\n'
                        f'topic = "t"\npublic_key = "{key}"\n').meters.mqtt is not None


def test_old_readings_are_parked_not_dropped() -> None:
    row = tx_type("meter_reading")
    payload = row.parse(READING)
    row.check_age(payload, 3600, now=1_700_000_900 + 3599)
    with pytest.raises(TooOld) as err:
        row.check_age(payload, 3600, now=1_700_000_900 + 3601)
    assert err.value.outcome == "parked"
    # other types have no age limit
    user = UserRegistrationPayload(user="11111111111111111111111111111111", user_type="consumer",
                                   location="x")
    tx_type_of(user).check_age(user, 1, now=1e12)


def test_the_producer_builds_the_model_and_the_row_names_the_operation() -> None:
    op = new_operation(MeterReadingPayload(**READING))
    assert op.tx_type == "meter_reading"
    assert op.idempotency_key == "meter_reading:m1:1700000900"
    assert dict(op.payload) == READING          # stored as plain JSON, parsed back the same
    assert tx_type(op.tx_type).parse(op.payload) == MeterReadingPayload(**READING)
    # a type without key fields needs the producer to name the operation
    order = TX_TYPES["order_creation"].parse({
        "owner": "11111111111111111111111111111111", "side": "buy", "energy_amount": 1,
        "price_per_kwh": 2})
    with pytest.raises(ValueError, match="no key fields"):
        new_operation(order)
    assert new_operation(order, "order:me:1").idempotency_key == "order:me:1"


def test_every_row_has_its_own_model() -> None:
    assert len({row.payload for row in TX_TYPES.values()}) == len(TX_TYPES)
    for name, row in TX_TYPES.items():
        assert row.name == name
        for field in row.key:
            assert field in row.payload.model_fields, (name, field)


def test_percentile() -> None:
    assert percentile([], 75) == 0
    assert percentile([10, 20, 30, 40], 75) == 30
    assert percentile([10, 20, 30, 40], 100) == 40
    assert percentile([5], 50) == 5


# -- the trade types (issue 14): grid_minting, match_orders, settle_trade ----------------------
K = [str(Pubkey.new_unique()) for _ in range(6)]
MINT = {"meter_id": "pv-1", "owner": K[0], "token_account": K[1], "interval_end": 1_700_000_900}
MATCH = {"buy_order": K[0], "sell_order": K[1], "amount": 500, "epoch": 1_700_000_900}
SETTLE = {"trade_record": K[0], "seller": K[1], "buyer": K[2], "seller_token_account": K[3],
          "buyer_token_account": K[4], "signer": K[5]}


def test_trade_payloads_parse_and_name_their_operations() -> None:
    from gridnode.chain.validation import (
        GridMintingPayload,
        MatchOrdersPayload,
        SettleTradePayload,
    )
    mint = tx_type("grid_minting").parse(MINT)
    assert isinstance(mint, GridMintingPayload)
    assert new_operation(mint).idempotency_key == "grid_minting:pv-1:1700000900"
    match = tx_type("match_orders").parse(MATCH)
    assert isinstance(match, MatchOrdersPayload)
    assert new_operation(match).idempotency_key == f"match_orders:{K[0]}:{K[1]}:1700000900"
    settle = tx_type("settle_trade").parse(SETTLE)
    assert isinstance(settle, SettleTradePayload)
    assert new_operation(settle).idempotency_key == f"settle_trade:{K[0]}"
    # who signs: the meter's owner, the market authority, the payload's signer
    assert [TX_TYPES[n].signer for n in ("grid_minting", "match_orders", "settle_trade")] == [
        "payload.owner", "authority", "payload.signer"]


@pytest.mark.parametrize(("name", "base", "change", "field"), [
    ("grid_minting", MINT, {"meter_id": ""}, "meter_id"),
    ("grid_minting", MINT, {"owner": "0OIl"}, "owner"),
    ("grid_minting", MINT, {"token_account": None}, "token_account"),
    ("grid_minting", MINT, {"interval_end": 2**63}, "interval_end"),
    ("match_orders", MATCH, {"amount": 0}, "amount"),
    ("match_orders", MATCH, {"amount": 2**64}, "amount"),
    ("match_orders", MATCH, {"sell_order": K[0]}, "sell_order"),
    ("match_orders", MATCH, {"buy_order": "short"}, "buy_order"),
    ("settle_trade", SETTLE, {"trade_record": "x"}, "trade_record"),
    ("settle_trade", SETTLE, {"signer": None}, "signer"),
    ("settle_trade", SETTLE, {"buyer_token_account": 7}, "buyer_token_account"),
])
def test_bad_trade_payloads_name_the_field(name: str, base: dict, change: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        tx_type(name).parse({**base, **change})
    assert err.value.details["field"] == field


def test_missing_trade_fields_are_named() -> None:
    for name, base in (("grid_minting", MINT), ("match_orders", MATCH), ("settle_trade", SETTLE)):
        for field in base:
            with pytest.raises(InvalidInput) as err:
                tx_type(name).parse({k: v for k, v in base.items() if k != field})
            assert err.value.details["field"] == field, (name, field)


def test_outcomes_the_trade_rows_declare() -> None:
    """What ends an operation as already done is data in its row: NoUnsettledBalance (registry
    6006 through the CPI, energy_token 6004), the trade record that exists (system 0),
    TradeAlreadySettled (6016); a meter's mints never share a transaction."""
    mint, match, settle = (TX_TYPES[n] for n in ("grid_minting", "match_orders", "settle_trade"))
    assert set(mint.done_on) == {6006, 6004} and mint.distinct == "meter_id"
    assert set(match.done_on) == {0}
    assert set(settle.done_on) == {6016}
    assert [t.account for t in settle.token_accounts] == ["payload.buyer_token_account"]
    assert [t.account for t in mint.token_accounts] == ["payload.token_account"]
    for row in TX_TYPES.values():     # a code that means "done" never also means "rebuild"
        assert not set(row.done_on) & row.rebuild_on, row.name
