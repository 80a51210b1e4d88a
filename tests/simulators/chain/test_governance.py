"""Governance program in LiteSVM: every instruction's effect and its exact errors, ERCs issued
against Registry meters with the claim recorded, persisted statistics, and fuzzed instruction data."""

from __future__ import annotations

import random
import struct

import pytest
from solders.instruction import Instruction
from solders.pubkey import Pubkey

from .conftest import NOW, SYSTEM_PROGRAM, Chain
from .market_setup import (
    REGISTRY_ID,
    erc_address,
    init_governance,
    issue_erc_ix,
    registry_meter,
    validate_erc_ix,
    with_data,
    with_meta,
)

YEAR = 31_536_000


def poa(chain: Chain) -> dict:
    return chain.decode("governance", "PoAConfig", chain.idls["governance"].pda("poa_config"))


def admin_ix(chain: Chain, name: str, args: dict | None = None, authority: Pubkey | None = None
             ) -> Instruction:
    return chain.ix("governance", name, args or {}, {"authority": authority or chain.authority.pubkey()})


@pytest.fixture
def gov(chain: Chain) -> Chain:
    init_governance(chain)
    return chain


DEFAULTS = {
    "authority_name": "REC", "contact_info": "engineering_erc@utcc.ac.th", "version": 1,
    "emergency_paused": False, "emergency_timestamp": None, "emergency_reason": None,
    "maintenance_mode": False, "erc_validation_enabled": True, "min_energy_amount": 100,
    "max_erc_amount": 1_000_000, "erc_validity_period": YEAR, "auto_revoke_expired": False,
    "require_oracle_validation": False, "delegation_enabled": False, "oracle_authority": None,
    "min_oracle_confidence": 80, "allow_certificate_transfers": False, "total_ercs_issued": 0,
    "total_ercs_validated": 0, "total_ercs_revoked": 0, "total_energy_certified": 0,
    "created_at": NOW, "last_updated": NOW, "last_erc_issued_at": None,
}


def test_initialize_poa(chain: Chain) -> None:
    a = chain.authority
    ix = admin_ix(chain, "initialize_poa")
    out = chain.ok(ix, a)
    key = chain.idls["governance"].pda("poa_config")
    assert len(chain.data(key)) == 496
    assert poa(chain) == DEFAULTS | {"authority": a.pubkey()}
    assert out.events["governance"] == [("PoAInitialized", {
        "authority": a.pubkey(), "authority_name": "REC", "timestamp": NOW})]
    chain.fails(0, ix, a)


def test_initialize_poa_errors(chain: Chain) -> None:
    a = chain.authority
    ix = admin_ix(chain, "initialize_poa")
    chain.fails(2006, with_meta(ix, 0, key=Pubkey.new_unique()), a)
    chain.fails(3010, with_meta(ix, 1, signer=False), chain.funded())
    chain.fails(2000, with_meta(ix, 1, writable=False), a, payer=chain.funded())
    chain.fails(3008, with_meta(ix, 2, key=Pubkey.new_unique()), a)
    chain.fails(3005, Instruction(ix.program_id, ix.data, ix.accounts[:2]), a)
    chain.fails(101, with_data(ix, b"\xff" * 8), a)


def test_emergency_pause_and_unpause(gov: Chain) -> None:
    a = gov.authority
    gov.set_time(NOW + 60)
    out = gov.ok(admin_ix(gov, "emergency_pause"), a)
    state = poa(gov)
    assert state["emergency_paused"] and state["emergency_timestamp"] == NOW + 60
    assert state["last_updated"] == NOW  # the public program does not stamp pauses
    assert out.events["governance"] == [("EmergencyPauseActivated", {"authority": a.pubkey(),
                                                                      "timestamp": NOW + 60})]
    gov.fails(6001, admin_ix(gov, "emergency_pause"), a)
    out = gov.ok(admin_ix(gov, "emergency_unpause"), a)
    state = poa(gov)
    assert not state["emergency_paused"] and state["emergency_timestamp"] is None
    assert out.events["governance"] == [("EmergencyPauseDeactivated", {"authority": a.pubkey(),
                                                                        "timestamp": NOW + 60})]
    gov.fails(6002, admin_ix(gov, "emergency_unpause"), a)


@pytest.mark.parametrize("name,args", [
    ("emergency_pause", {}), ("emergency_unpause", {}),
    ("update_governance_config", {"erc_validation_enabled": False}),
    ("set_maintenance_mode", {"maintenance_enabled": True}),
    ("update_erc_limits", {"min_energy_amount": 1, "max_erc_amount": 2, "erc_validity_period": 3}),
    ("update_authority_info", {"contact_info": "ops@example.org"}),
])
def test_admin_account_checks(gov: Chain, name: str, args: dict) -> None:
    a = gov.authority
    ix = admin_ix(gov, name, args)
    other = gov.funded()
    gov.fails(6000, admin_ix(gov, name, args, other.pubkey()), other)
    gov.fails(3010, with_meta(ix, 1, signer=False), other)
    gov.fails(2000, with_meta(ix, 0, writable=False), a)
    gov.fails(3005, Instruction(ix.program_id, ix.data, ix.accounts[:1]), a)
    poa_key = gov.idls["governance"].pda("poa_config")
    copy = Pubkey.new_unique()
    gov.set_account(copy, gov.data(poa_key), gov.idls["governance"].program_id)
    gov.fails(2006, with_meta(ix, 0, key=copy), a)
    gov.set_account(copy, gov.data(poa_key), SYSTEM_PROGRAM)
    gov.fails(3007, with_meta(ix, 0, key=copy), a)
    gov.fails(3012, with_meta(ix, 0, key=Pubkey.new_unique()), a)
    gov.set_account(copy, b"\x07" * 496, gov.idls["governance"].program_id)
    gov.fails(3002, with_meta(ix, 0, key=copy), a)
    if args:
        gov.fails(102, with_data(ix, bytes(ix.data)[:8]), a)
    assert poa(gov) == DEFAULTS | {"authority": a.pubkey()}


def test_corrupt_poa_config_does_not_decode(gov: Chain) -> None:
    key = gov.idls["governance"].pda("poa_config")
    good = gov.data(key)
    ix = admin_ix(gov, "emergency_pause")
    gov.set_account(key, good[:120], gov.idls["governance"].program_id)
    gov.fails(3003, ix, gov.authority)
    # a contact_info length running past the account's end
    gov.set_account(key, good[:47] + (10_000).to_bytes(4, "little") + good[51:],
                    gov.idls["governance"].program_id)
    gov.fails(3003, ix, gov.authority)


def test_update_governance_config_and_maintenance(gov: Chain) -> None:
    a = gov.authority
    gov.set_time(NOW + 5)
    out = gov.ok(admin_ix(gov, "update_governance_config", {"erc_validation_enabled": False}), a)
    assert out.events["governance"] == [("GovernanceConfigUpdated", {
        "authority": a.pubkey(), "erc_validation_enabled": False, "old_enabled": True,
        "timestamp": NOW + 5})]
    state = poa(gov)
    assert not state["erc_validation_enabled"] and state["last_updated"] == NOW + 5
    gov.set_time(NOW + 9)
    out = gov.ok(admin_ix(gov, "set_maintenance_mode", {"maintenance_enabled": True}), a)
    assert out.events["governance"] == [("MaintenanceModeUpdated", {
        "authority": a.pubkey(), "maintenance_enabled": True, "timestamp": NOW + 9})]
    state = poa(gov)
    assert state["maintenance_mode"] and state["last_updated"] == NOW + 9


def test_update_erc_limits(gov: Chain) -> None:
    a = gov.authority
    out = gov.ok(admin_ix(gov, "update_erc_limits", {"min_energy_amount": 10, "max_erc_amount": 5_000,
                                                     "erc_validity_period": 3_600}), a)
    state = poa(gov)
    assert (state["min_energy_amount"], state["max_erc_amount"], state["erc_validity_period"]) == (
        10, 5_000, 3_600)
    assert out.events["governance"] == [("ErcLimitsUpdated", {
        "authority": a.pubkey(), "old_min": 100, "new_min": 10, "old_max": 1_000_000, "new_max": 5_000,
        "old_validity": YEAR, "new_validity": 3_600, "timestamp": NOW})]
    for code, args in [(6013, (0, 5, 5)), (6014, (5, 5, 5)), (6015, (5, 6, 0)), (6015, (5, 6, -1))]:
        gov.fails(code, admin_ix(gov, "update_erc_limits", dict(zip(
            ("min_energy_amount", "max_erc_amount", "erc_validity_period"), args, strict=True))), a)
    assert poa(gov)["min_energy_amount"] == 10


def test_update_authority_info(gov: Chain) -> None:
    a = gov.authority
    contact = "x" * 128
    out = gov.ok(admin_ix(gov, "update_authority_info", {"contact_info": contact}), a)
    assert poa(gov)["contact_info"] == contact
    assert out.events["governance"] == [("AuthorityInfoUpdated", {
        "authority": a.pubkey(), "old_contact": "engineering_erc@utcc.ac.th", "new_contact": contact,
        "timestamp": NOW})]
    out = gov.fails(6016, admin_ix(gov, "update_authority_info", {"contact_info": "y" * 129}), a)
    assert ("Program log: AnchorError occurred. Error Code: ContactInfoTooLong. Error Number: 6016. "
            "Error Message: Contact information too long.") in out.logs
    gov.ok(admin_ix(gov, "update_authority_info", {"contact_info": ""}), a)
    assert poa(gov)["contact_info"] == ""
    bad_utf8 = bytes(admin_ix(gov, "update_authority_info", {"contact_info": "ab"}).data)[:-2] + b"\xff\xfe"
    gov.fails(102, with_data(admin_ix(gov, "update_authority_info", {"contact_info": "ab"}), bad_utf8), a)


STATS = struct.Struct("<QQQQ???QQq???qq")


def decode_stats(raw: bytes) -> dict:
    """GovernanceStats borsh, decoded independently of the IDL module."""
    names = ("total_ercs_issued", "total_ercs_validated", "total_ercs_revoked", "total_energy_certified",
             "erc_validation_enabled", "emergency_paused", "maintenance_mode", "min_energy_amount",
             "max_erc_amount", "erc_validity_period", "require_oracle_validation",
             "allow_certificate_transfers", "delegation_enabled", "created_at", "last_updated")
    out = dict(zip(names, STATS.unpack_from(raw), strict=True))
    tag = raw[STATS.size]
    out["last_erc_issued_at"] = struct.unpack_from("<q", raw, STATS.size + 1)[0] if tag else None
    assert len(raw) == STATS.size + 1 + (8 if tag else 0)
    return out


def stats(chain: Chain) -> dict:
    ix = chain.ix("governance", "get_governance_stats", {})
    return decode_stats(chain.ok(ix, chain.authority).return_data)


def test_get_governance_stats(gov: Chain) -> None:
    s = stats(gov)
    state = poa(gov)
    assert s == {k: state[k] for k in s}
    assert s["last_erc_issued_at"] is None and s["total_ercs_issued"] == 0
    ix = gov.ix("governance", "get_governance_stats", {})
    fake = Pubkey.new_unique()
    gov.set_account(fake, gov.data(ix.accounts[0].pubkey), gov.idls["governance"].program_id)
    gov.fails(2006, with_meta(ix, 0, key=fake), gov.authority)
    gov.fails(3005, Instruction(ix.program_id, ix.data, []), gov.authority)


# ---------------------------------------------------------------- ERCs
def test_issue_erc_against_a_registry_meter(gov: Chain) -> None:
    a = gov.authority
    owner = Pubkey.new_unique()
    meter = registry_meter(gov, "MTR-7", owner, generation=5_000, consumption=800)
    gov.set_time(NOW + 100)
    out = gov.ok(issue_erc_ix(gov, "ERC-2025-0001", 3_000, meter, source="solar", validation="q2"), a)
    cert = erc_address(gov, "ERC-2025-0001")
    assert len(gov.data(cert)) == 460
    assert gov.decode("governance", "ErcCertificate", cert) == {
        "certificate_id": "ERC-2025-0001", "authority": a.pubkey(), "energy_amount": 3_000,
        "renewable_source": "solar", "validation_data": "q2", "issued_at": NOW + 100,
        "expires_at": NOW + 100 + YEAR, "status": "Valid", "validated_for_trading": False,
        "trading_validated_at": None}
    claim = gov.idls["governance"].find_pda([b"meter_claim", bytes(meter)])[0]
    assert claim == gov.idls["governance"].pda("meter_claim", meter_account=meter)
    assert gov.decode("governance", "MeterClaim", claim) == {
        "meter": meter, "claimed_erc_generation": 3_000, "certificates_issued": 1,
        "last_claimed_at": NOW + 100}
    # the Registry's meter is untouched (the runtime would refuse a write anyway)
    reg = gov.idls["registry"].decode_account("MeterAccount", gov.data(meter))
    assert reg["total_generation"] == 5_000 and reg["claimed_erc_generation"] == 0
    state = poa(gov)
    assert (state["total_ercs_issued"], state["total_energy_certified"], state["last_erc_issued_at"],
            state["last_updated"]) == (1, 3_000, NOW + 100, NOW + 100)
    assert out.events["governance"] == [("ErcIssued", {
        "certificate_id": "ERC-2025-0001", "authority": a.pubkey(), "energy_amount": 3_000,
        "renewable_source": "solar", "timestamp": NOW + 100})]
    # 2,000 Wh of the 5,000 remain unclaimed; the bound is on generation, as in the public program
    gov.fails(6020, issue_erc_ix(gov, "ERC-2025-0002", 2_001, meter), a)
    gov.ok(issue_erc_ix(gov, "ERC-2025-0002", 2_000, meter), a)
    assert gov.decode("governance", "MeterClaim", claim)["claimed_erc_generation"] == 5_000
    assert gov.decode("governance", "MeterClaim", claim)["certificates_issued"] == 2
    gov.fails(6020, issue_erc_ix(gov, "ERC-2025-0003", 100, meter), a)
    s = stats(gov)
    assert (s["total_ercs_issued"], s["total_energy_certified"], s["last_erc_issued_at"]) == (
        2, 5_000, NOW + 100)
    # the same certificate id cannot be issued twice (System create: already in use)
    other = registry_meter(gov, "MTR-8", owner, generation=10_000)
    gov.fails(0, issue_erc_ix(gov, "ERC-2025-0001", 100, other), a)


def test_issue_erc_counts_the_registry_claimed_field(gov: Chain) -> None:
    meter = registry_meter(gov, "MTR-C", Pubkey.new_unique(), generation=1_000, claimed=700)
    gov.fails(6020, issue_erc_ix(gov, "C-1", 301, meter), gov.authority)
    gov.ok(issue_erc_ix(gov, "C-1", 300, meter), gov.authority)


def test_issue_erc_errors(gov: Chain) -> None:
    a = gov.authority
    meter = registry_meter(gov, "MTR-E", Pubkey.new_unique(), generation=10**7)
    gov.fails(6008, issue_erc_ix(gov, "E", 99, meter), a)
    gov.fails(6009, issue_erc_ix(gov, "E", 1_000_001, meter), a)
    gov.fails(6010, issue_erc_ix(gov, "x" * 33, 100, meter, erc=Pubkey.new_unique()), a)
    gov.ok(issue_erc_ix(gov, "x" * 32, 100, meter), a)
    gov.fails(6011, issue_erc_ix(gov, "E", 100, meter, source="s" * 65), a)
    # all three strings must fit the 460-byte account once validated (88 fixed bytes)
    gov.fails(3004, issue_erc_ix(gov, "E", 100, meter, source="s", validation="v" * 371), a)
    gov.ok(issue_erc_ix(gov, "E", 100, meter, source="s", validation="v" * 370), a)
    gov.ok(validate_erc_ix(gov, erc_address(gov, "E")), a)
    other = gov.funded()
    gov.fails(6000, issue_erc_ix(gov, "F", 100, meter, authority=other.pubkey()), other)
    ix = issue_erc_ix(gov, "F", 100, meter)
    gov.fails(3010, with_meta(ix, 3, signer=False), other)
    gov.fails(2000, with_meta(ix, 0, writable=False), a)
    gov.fails(2006, with_meta(ix, 1, key=erc_address(gov, "G")), a)
    gov.fails(2006, with_meta(ix, 5, key=Pubkey.new_unique()), a)
    gov.fails(3008, with_meta(ix, 4, key=Pubkey.new_unique()), a)
    gov.fails(3005, Instruction(ix.program_id, ix.data, ix.accounts[:5]), a)
    gov.fails(102, with_data(ix, bytes(ix.data)[:-3]), a)
    # a governance-owned copy of the meter (what the public program expected) is refused
    copy = Pubkey.new_unique()
    gov.set_account(copy, gov.data(meter), gov.idls["governance"].program_id)
    gov.fails(3007, issue_erc_ix(gov, "F", 100, copy), a)
    gov.set_account(copy, b"\x00" * 144, REGISTRY_ID)
    gov.fails(3002, issue_erc_ix(gov, "F", 100, copy), a)
    for name, args in [("emergency_pause", {}), ("set_maintenance_mode", {"maintenance_enabled": True}),
                       ("update_governance_config", {"erc_validation_enabled": False})]:
        gov.ok(admin_ix(gov, name, args), a)
        gov.fails(6005, issue_erc_ix(gov, "F", 100, meter), a)
        undo = {"emergency_pause": ("emergency_unpause", {}),
                "set_maintenance_mode": ("set_maintenance_mode", {"maintenance_enabled": False}),
                "update_governance_config": ("update_governance_config", {"erc_validation_enabled": True})}
        gov.ok(admin_ix(gov, *undo[name]), a)
    gov.ok(ix, a)


def test_validate_erc_for_trading(gov: Chain) -> None:
    a = gov.authority
    meter = registry_meter(gov, "MTR-V", Pubkey.new_unique(), generation=10_000)
    gov.ok(issue_erc_ix(gov, "V-1", 1_000, meter), a)
    cert = erc_address(gov, "V-1")
    gov.set_time(NOW + 30)
    out = gov.ok(validate_erc_ix(gov, cert), a)
    c = gov.decode("governance", "ErcCertificate", cert)
    assert c["validated_for_trading"] and c["trading_validated_at"] == NOW + 30
    assert out.events["governance"] == [("ErcValidatedForTrading", {
        "certificate_id": "V-1", "authority": a.pubkey(), "timestamp": NOW + 30})]
    state = poa(gov)
    assert (state["total_ercs_validated"], state["last_updated"]) == (1, NOW + 30)
    assert stats(gov)["total_ercs_validated"] == 1
    gov.fails(6007, validate_erc_ix(gov, cert), a)


def test_validate_erc_errors(gov: Chain) -> None:
    a = gov.authority
    meter = registry_meter(gov, "MTR-W", Pubkey.new_unique(), generation=10_000)
    gov.ok(issue_erc_ix(gov, "W-1", 1_000, meter), a)
    cert = erc_address(gov, "W-1")
    other = gov.funded()
    gov.fails(6000, validate_erc_ix(gov, cert, other.pubkey()), other)
    ix = validate_erc_ix(gov, cert)
    gov.fails(3010, with_meta(ix, 2, signer=False), other)
    gov.fails(2000, with_meta(ix, 1, writable=False), a)
    gov.fails(2000, with_meta(ix, 0, writable=False), a)
    gov_program = gov.idls["governance"].program_id
    moved = Pubkey.new_unique()
    gov.set_account(moved, gov.data(cert), gov_program)
    gov.fails(2006, with_meta(ix, 1, key=moved), a)
    gov.fails(3002, with_meta(ix, 1, key=ix.accounts[0].pubkey), a)
    revoked = gov.idls["governance"].decode_account("ErcCertificate", gov.data(cert)) | {"status": "Revoked"}
    raw = gov.idls["governance"].encode_account("ErcCertificate", revoked)
    gov.set_account(cert, raw + bytes(460 - len(raw)), gov_program)
    gov.fails(6006, ix, a)
    valid = revoked | {"status": "Valid"}
    raw = gov.idls["governance"].encode_account("ErcCertificate", valid)
    gov.set_account(cert, raw + bytes(460 - len(raw)), gov_program)
    gov.ok(admin_ix(gov, "set_maintenance_mode", {"maintenance_enabled": True}), a)
    gov.fails(6003, ix, a)
    gov.ok(admin_ix(gov, "set_maintenance_mode", {"maintenance_enabled": False}), a)
    gov.ok(admin_ix(gov, "emergency_pause"), a)
    gov.fails(6003, ix, a)
    gov.ok(admin_ix(gov, "emergency_unpause"), a)
    gov.set_time(NOW + YEAR)
    gov.fails(6012, ix, a)
    gov.set_time(NOW + YEAR - 1)
    gov.ok(ix, a)


# ---------------------------------------------------------------- fuzzing
def test_fuzz_instruction_data(gov: Chain) -> None:
    """Random tails after each real discriminator, and random whole payloads: every transaction
    ends in success or an Anchor/program error code, never a runtime fault."""
    a = gov.authority
    meter = registry_meter(gov, "MTR-FZ", Pubkey.new_unique(), generation=10**12)
    gov.ok(issue_erc_ix(gov, "FZ-1", 1_000, meter), a)
    cases = [
        admin_ix(gov, "initialize_poa"), admin_ix(gov, "emergency_pause"), admin_ix(gov, "emergency_unpause"),
        issue_erc_ix(gov, "FZ-2", 500, meter), validate_erc_ix(gov, erc_address(gov, "FZ-1")),
        admin_ix(gov, "update_governance_config", {"erc_validation_enabled": True}),
        admin_ix(gov, "set_maintenance_mode", {"maintenance_enabled": False}),
        admin_ix(gov, "update_erc_limits", {"min_energy_amount": 1, "max_erc_amount": 2,
                                            "erc_validity_period": 3}),
        admin_ix(gov, "update_authority_info", {"contact_info": "c"}),
        gov.ix("governance", "get_governance_stats", {}),
    ]
    rng = random.Random(4_242)
    outcomes: dict[str, int] = {}
    for round_ in range(200):
        for ix in cases:
            disc = bytes(ix.data)[:8]
            n = rng.choice([0, 1, 4, 5, 8, 9, 17, 25, rng.randrange(0, 400)])
            data = disc + rng.randbytes(n) if round_ % 4 else rng.randbytes(rng.randrange(0, 24))
            if round_ % 7 == 0 and n >= 4:
                # a string length prefix claiming more bytes than the data holds
                data = disc + struct.pack("<I", rng.randrange(n, 2**32)) + rng.randbytes(n - 4)
            out = gov.send(with_data(ix, data), a)
            assert out.ok or isinstance(out.error, int), f"{data.hex()}: {out.error} {out.logs[-3:]}"
            key = "ok" if out.ok else str(out.error)
            outcomes[key] = outcomes.get(key, 0) + 1
    assert sum(outcomes.values()) == 200 * len(cases)
    assert {"ok", "100", "101", "102"} <= outcomes.keys()
    # the configuration still decodes after everything the fuzzer managed to write
    assert poa(gov)["authority"] == a.pubkey()
