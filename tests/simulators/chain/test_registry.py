"""Registry program in LiteSVM: users, meters, readings, settlement, exact errors."""

from __future__ import annotations

import pytest
from solders.instruction import Instruction
from solders.pubkey import Pubkey

from gridnode.chain.idl import IdlError

from .conftest import NOW, Chain
from .test_oracle import unsigned


def _meter(chain: Chain, user, meter_id="MTR-1"):
    chain.init_registry()
    chain.register_user(user)
    return chain.register_meter(user, meter_id)


def test_initialize_and_register(chain: Chain) -> None:
    a = chain.authority
    out = chain.ok(chain.ix("registry", "initialize", {}, {"authority": a.pubkey()}), a)
    reg = chain.idls["registry"].pda("registry")
    assert chain.decode("registry", "Registry", reg) == {
        "authority": a.pubkey(), "user_count": 0, "meter_count": 0, "created_at": NOW}
    assert out.events["registry"] == [("RegistryInitialized", {"authority": a.pubkey(), "timestamp": NOW})]
    assert len(chain.data(reg)) == 64

    user = chain.funded()
    ua = chain.register_user(user, "Consumer", "Chiang Mai ✓")
    assert len(chain.data(ua)) == 166
    assert chain.decode("registry", "UserAccount", ua) == {
        "authority": user.pubkey(), "user_type": "Consumer", "location": "Chiang Mai ✓",
        "status": "Active", "registered_at": NOW, "meter_count": 0, "created_at": NOW}
    meter = chain.register_meter(user, "MTR-0001", "Battery")
    assert len(chain.data(meter)) == 144
    assert chain.decode("registry", "MeterAccount", meter) == {
        "meter_id": "MTR-0001", "owner": user.pubkey(), "meter_type": "Battery", "status": "Active",
        "registered_at": NOW, "last_reading_at": 0, "total_generation": 0, "total_consumption": 0,
        "settled_net_generation": 0, "claimed_erc_generation": 0}
    assert chain.decode("registry", "Registry", reg)["user_count"] == 1
    assert chain.decode("registry", "Registry", reg)["meter_count"] == 1
    assert chain.decode("registry", "UserAccount", ua)["meter_count"] == 1


def test_register_events_and_errors(chain: Chain) -> None:
    chain.init_registry()
    reg = chain.idls["registry"]
    user, other = chain.funded(), chain.funded()
    ix = chain.ix("registry", "register_user", {"user_type": "Prosumer", "location": "x" * 100},
                  {"registry": reg.pda("registry"), "user_authority": user.pubkey()})
    out = chain.ok(ix, user)
    assert out.events["registry"] == [("UserRegistered", {"user": user.pubkey(), "user_type": "Prosumer",
                                                         "location": "x" * 100, "timestamp": NOW})]
    chain.fails(0, ix, user)  # one user account per wallet: already in use
    too_long = chain.ix("registry", "register_user", {"user_type": "Prosumer", "location": "x" * 101},
                        {"registry": reg.pda("registry"), "user_authority": other.pubkey()})
    chain.fails(3004, too_long, other)
    bad_enum = chain.ix("registry", "register_user", {"user_type": "Prosumer", "location": "x"},
                        {"registry": reg.pda("registry"), "user_authority": other.pubkey()})
    chain.fails(102, Instruction(bad_enum.program_id, bytes(bad_enum.data)[:8] + b"\x02" + bytes(bad_enum.data)[9:],
                                 bad_enum.accounts), other)
    wrong_seed = chain.ix("registry", "register_user", {"user_type": "Prosumer", "location": "x"},
                          {"registry": reg.pda("registry"), "user_authority": other.pubkey(),
                           "user_account": reg.pda("user_account", user_authority=user.pubkey())})
    chain.fails(2006, wrong_seed, other)

    def meter_ix(meter_id: str, signer: Pubkey, owner: Pubkey):
        return chain.ix("registry", "register_meter", {"meter_id": meter_id, "meter_type": "Wind"},
                        {"registry": reg.pda("registry"),
                         "user_account": reg.pda("user_account", user_authority=owner),
                         "user_authority": signer})

    out = chain.ok(meter_ix("M" * 32, user.pubkey(), user.pubkey()), user)
    assert out.events["registry"] == [("MeterRegistered", {"meter_id": "M" * 32, "owner": user.pubkey(),
                                                          "meter_type": "Wind", "timestamp": NOW})]
    chain.fails(0, meter_ix("M" * 32, user.pubkey(), user.pubkey()), user)  # global meter PDA
    with pytest.raises(IdlError, match="at most 32 bytes"):
        meter_ix("M" * 33, user.pubkey(), user.pubkey())
    long_id = chain.ix("registry", "register_meter", {"meter_id": "M" * 33, "meter_type": "Wind"},
                       {"registry": reg.pda("registry"), "meter_account": Pubkey.new_unique(),
                        "user_account": reg.pda("user_account", user_authority=user.pubkey()),
                        "user_authority": user.pubkey()})
    chain.fails(2006, long_id, user)
    chain.fails(6000, meter_ix("OTHER", other.pubkey(), user.pubkey()), other)
    chain.fails(3012, meter_ix("OTHER", other.pubkey(), other.pubkey()), other)  # no user account
    chain.fails(3010, unsigned(meter_ix("OTHER", user.pubkey(), user.pubkey()), 3), other)


def test_status_updates(chain: Chain) -> None:
    a, user = chain.authority, chain.funded()
    meter = _meter(chain, user)
    reg = chain.idls["registry"]
    ua = reg.pda("user_account", user_authority=user.pubkey())

    def user_status(who, status):
        return chain.ix("registry", "update_user_status", {"new_status": status},
                        {"registry": reg.pda("registry"), "user_account": ua, "authority": who})

    out = chain.ok(user_status(a.pubkey(), "Suspended"), a)
    assert chain.decode("registry", "UserAccount", ua)["status"] == "Suspended"
    assert out.events["registry"] == [("UserStatusUpdated", {"user": user.pubkey(), "old_status": "Active",
                                                            "new_status": "Suspended", "timestamp": NOW})]
    chain.fails(6001, user_status(user.pubkey(), "Active"), user)

    def meter_status(who, status, registry=None):
        return chain.ix("registry", "update_meter_status", {"new_status": status},
                        {"meter_account": meter, "authority": who,
                         **({"registry": registry} if registry else {})})

    out = chain.ok(meter_status(a.pubkey(), "Maintenance"), a)
    assert chain.decode("registry", "MeterAccount", meter)["status"] == "Maintenance"
    assert out.events["registry"] == [("MeterStatusUpdated", {
        "meter_id": "MTR-1", "owner": user.pubkey(), "old_status": "Active", "new_status": "Maintenance",
        "timestamp": NOW})]
    chain.fails(6001, meter_status(user.pubkey(), "Active"), user)
    # a copy of the registry at another address (owned by the program) fails the seeds check
    fake = Pubkey.new_unique()
    chain.set_account(fake, chain.data(reg.pda("registry")), reg.program_id)
    chain.fails(2006, meter_status(a.pubkey(), "Active", fake), a)
    chain.fails(3002, meter_status(a.pubkey(), "Active", ua), a)


def test_readings_validity_and_settlement(chain: Chain) -> None:
    user, other = chain.funded(), chain.funded()
    meter = _meter(chain, user)

    def update(signer, gen, cons, ts):
        return chain.ix("registry", "update_meter_reading",
                        {"energy_generated": gen, "energy_consumed": cons, "reading_timestamp": ts},
                        {"meter_account": meter, "oracle_authority": signer})

    out = chain.ok(update(user.pubkey(), 5000, 1200, NOW - 10), user)
    assert out.events["registry"] == [("MeterReadingUpdated", {
        "meter_id": "MTR-1", "owner": user.pubkey(), "energy_generated": 5000, "energy_consumed": 1200,
        "timestamp": NOW - 10})]
    m = chain.decode("registry", "MeterAccount", meter)
    assert (m["total_generation"], m["total_consumption"], m["last_reading_at"]) == (5000, 1200, NOW - 10)
    chain.fails(6000, update(other.pubkey(), 1, 1, NOW), other)
    chain.fails("ProgramFailedToComplete", update(user.pubkey(), 2**64 - 1, 0, NOW), user)

    view = lambda name: chain.ok(chain.ix("registry", name, {}, {"meter_account": meter}), user)  # noqa: E731
    assert view("get_unsettled_balance").return_data == (3800).to_bytes(8, "little")
    assert view("is_valid_meter").return_data == b"\x01"
    ua = chain.idls["registry"].pda("user_account", user_authority=user.pubkey())
    assert chain.ok(chain.ix("registry", "is_valid_user", {}, {"user_account": ua}), user).return_data == b"\x01"

    settle = lambda who: chain.ix("registry", "settle_meter_balance", {},  # noqa: E731
                                  {"meter_account": meter, "meter_owner": who})
    chain.fails(6000, settle(other.pubkey()), other)
    out = chain.ok(settle(user.pubkey()), user)
    assert out.return_data == (3800).to_bytes(8, "little")
    assert out.events["registry"] == [("MeterBalanceSettled", {
        "meter_id": "MTR-1", "owner": user.pubkey(), "tokens_to_mint": 3800, "total_settled": 3800,
        "timestamp": NOW})]
    assert chain.decode("registry", "MeterAccount", meter)["settled_net_generation"] == 3800
    chain.fails(6006, settle(user.pubkey()), user)
    assert view("get_unsettled_balance").return_data == bytes(8)

    a = chain.authority
    chain.ok(chain.ix("registry", "update_meter_status", {"new_status": "Inactive"},
                      {"meter_account": meter, "authority": a.pubkey()}), a)
    chain.ok(update(user.pubkey(), 100, 0, NOW), user)
    chain.fails(6003, settle(user.pubkey()), user)
    assert view("is_valid_meter").return_data == b"\x00"


def test_prefunded_meter_address_cannot_block_registration(chain: Chain) -> None:
    """Lamports sent to a PDA beforehand: init tops up, allocates and assigns instead."""
    user = chain.funded()
    chain.init_registry()
    chain.register_user(user)
    meter = chain.idls["registry"].pda("meter_account", meter_id="PRE-1")
    chain.svm.airdrop(meter, 5_000)
    assert chain.register_meter(user, "PRE-1") == meter
    acc = chain.svm.get_account(meter)
    assert acc.owner == chain.idls["registry"].program_id
    assert acc.lamports == chain.svm.minimum_balance_for_rent_exemption(144)
    assert chain.decode("registry", "MeterAccount", meter)["meter_id"] == "PRE-1"
