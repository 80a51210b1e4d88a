"""Input validation: typed errors that name the field and what is allowed."""

from __future__ import annotations

import pytest

from gridnode.chain.fees import percentile
from gridnode.chain.validation import InvalidInput, TooOld, check_age, check_input

READING = {"meter_id": "m1", "interval_start": 1_700_000_000, "interval_end": 1_700_000_900,
           "energy_produced_wh": 1200, "energy_consumed_wh": 300, "backfilled": False}


def test_a_good_reading_passes() -> None:
    assert check_input("meter_reading", READING)["energy_produced_wh"] == 1200


@pytest.mark.parametrize(("change", "field"), [
    ({"meter_id": "x" * 33}, "meter_id"),
    ({"energy_produced_wh": -1}, "energy_produced_wh"),
    ({"energy_consumed_wh": 2**64}, "energy_consumed_wh"),
    ({"interval_end": 1_699_999_999}, "interval_end"),
])
def test_bad_readings_name_the_field(change: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        check_input("meter_reading", {**READING, **change})
    assert err.value.details["field"] == field
    assert field in str(err.value)


def test_unknown_tx_type_and_bad_pubkey() -> None:
    with pytest.raises(InvalidInput, match="known"):
        check_input("teleport", {})
    with pytest.raises(InvalidInput, match="owner"):
        check_input("order_cancel", {"owner": "not-a-key", "order": "11111111111111111111111111111111"})


def test_old_readings_are_parked_not_dropped() -> None:
    check_age("meter_reading", READING, 3600, now=1_700_000_900 + 3599)
    with pytest.raises(TooOld) as err:
        check_age("meter_reading", READING, 3600, now=1_700_000_900 + 3601)
    assert err.value.outcome == "parked"


def test_percentile() -> None:
    assert percentile([], 75) == 0
    assert percentile([10, 20, 30, 40], 75) == 30
    assert percentile([10, 20, 30, 40], 100) == 40
    assert percentile([5], 50) == 5
