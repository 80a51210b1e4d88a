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
