"""gridnode.chain.idl against the IDL files: discriminators, conversion, coding, PDAs, events,
and where the IDLs come from (the package, a directory, configured program IDs)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from gridnode.chain.idl import (
    PROGRAMS,
    IdlError,
    IdlSetError,
    idls_for_chain,
    load_idls,
    shipped_idls,
    to_legacy,
)
from gridnode.config import ConfigError
from gridnode.config.chain import ChainConfig, ProgramIds

IDL_DIR = Path(__file__).resolve().parents[2] / "idl"
IDL_FILES = sorted(IDL_DIR.glob("*.json"))


def _sighash(prefix: str, name: str) -> list[int]:
    return list(hashlib.sha256(f"{prefix}:{name}".encode()).digest()[:8])


@pytest.fixture(scope="module")
def idls():
    return load_idls(IDL_DIR)


@pytest.mark.parametrize("path", IDL_FILES, ids=lambda p: p.stem)
def test_every_discriminator_matches_its_name(path: Path) -> None:
    idl = json.loads(path.read_text())
    for ix in idl["instructions"]:
        assert ix["discriminator"] == _sighash("global", ix["name"]), ix["name"]
    for acc in idl.get("accounts", []):
        assert acc["discriminator"] == _sighash("account", acc["name"]), acc["name"]
    for ev in idl.get("events", []):
        assert ev["discriminator"] == _sighash("event", ev["name"]), ev["name"]
    codes = [e["code"] for e in idl.get("errors", [])]
    assert codes == list(range(6000, 6000 + len(codes)))


def test_published_discriminators(idls) -> None:
    """Spot checks against the discriminators of the public programs."""
    assert idls["oracle"]._ix["submit_meter_reading"]["discriminator"] == [181, 247, 196, 139, 78, 88, 192, 206]
    assert idls["registry"]._ix["settle_meter_balance"]["discriminator"] == [178, 46, 241, 202, 53, 99, 79, 119]
    assert idls["energy_token"]._ix["mint_grid_tokens"]["discriminator"] == [216, 110, 76, 206, 212, 49, 238, 59]
    assert idls["registry"].account_discriminator("MeterAccount").hex() == "576f8b57b51468ff"


def test_singleton_pdas_match_the_deployed_addresses(idls) -> None:
    assert str(idls["registry"].pda("registry")) == "ERfEToWU9cETKzz4ztMRRYRLSL6fe9W437KY5DqED13c"
    assert str(idls["oracle"].pda("oracle_data")) == "41ZvaJg6orKkXSdWMQUzKwixqwnt6qYQGpEJStC4dt1Q"
    assert str(idls["energy_token"].pda("token_info")) == "68hhPSVvhePC3ioUe2jRhUru9NW5PKFjf3W8pU7ybz82"
    assert str(idls["energy_token"].pda("mint")) == "DYXurk47FxGZyzrGJ1pcDM3djZSg3XBFJn9hTzsjx5MM"


def test_legacy_conversion_keeps_accounts_and_flags() -> None:
    idl = json.loads((IDL_DIR / "registry.json").read_text())
    legacy = to_legacy(idl)
    reg_user = next(i for i in legacy["instructions"] if i["name"] == "register_user")
    assert [(a["name"], a["isMut"], a["isSigner"]) for a in reg_user["accounts"]] == [
        ("registry", True, False), ("user_account", True, False),
        ("user_authority", True, True), ("system_program", False, False)]
    assert {"defined": "UserType"} in [a["type"] for a in reg_user["args"]]
    assert "publicKey" in json.dumps(legacy) and '"pubkey"' not in json.dumps(legacy)


def test_instruction_encoding_and_pda_resolution(idls) -> None:
    oracle = idls["oracle"]
    gw = Pubkey.new_unique()
    ix = oracle.instruction("submit_meter_reading",
                            {"meter_id": "m-1", "energy_produced": 7, "energy_consumed": 3,
                             "reading_timestamp": -5},
                            {"oracle_data": oracle.pda("oracle_data"), "authority": gw})
    data = bytes(ix.data)
    assert data[:8] == bytes([181, 247, 196, 139, 78, 88, 192, 206])
    assert data[8:] == (b"\x03\x00\x00\x00m-1" + (7).to_bytes(8, "little")
                        + (3).to_bytes(8, "little") + (-5).to_bytes(8, "little", signed=True))
    assert [(m.is_signer, m.is_writable) for m in ix.accounts] == [(False, True), (True, False)]
    assert oracle.decode_args(data) == ("submit_meter_reading", {
        "meter_id": "m-1", "energy_produced": 7, "energy_consumed": 3, "reading_timestamp": -5})

    registry = idls["registry"]
    user = Pubkey.new_unique()
    ix = registry.instruction("register_meter", {"meter_id": "MTR-9", "meter_type": "Battery"},
                              {"registry": registry.pda("registry"), "user_account": Pubkey.new_unique(),
                               "user_authority": user})
    meter_pda = Pubkey.find_program_address([b"meter", b"MTR-9"], registry.program_id)[0]
    assert ix.accounts[2].pubkey == meter_pda
    assert bytes(ix.data)[-1] == 2  # Battery
    ix = registry.instruction("register_user", {"user_type": 1, "location": "x"},
                              {"registry": registry.pda("registry"), "user_authority": user})
    assert ix.accounts[1].pubkey == Pubkey.find_program_address([b"user", bytes(user)],
                                                                registry.program_id)[0]
    with pytest.raises(IdlError, match="user_authority"):
        registry.instruction("register_user", {"user_type": "Prosumer", "location": "x"},
                             {"registry": registry.pda("registry")})
    with pytest.raises(IdlError, match="unknown variant"):
        registry.instruction("register_user", {"user_type": "Landlord", "location": "x"},
                             {"registry": registry.pda("registry"), "user_authority": user})


def test_associated_token_account_resolved_with_program_seed(idls) -> None:
    token = idls["energy_token"]
    owner, mint = Pubkey.new_unique(), Pubkey.new_unique()
    tp = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
    ata_program = Pubkey.from_string("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL")
    ix = token.instruction("mint_to_wallet", {"amount": 1},
                           {"mint": mint, "destination_owner": owner, "authority": owner,
                            "payer": owner, "token_program": tp})
    expected = Pubkey.find_program_address([bytes(owner), bytes(tp), bytes(mint)], ata_program)[0]
    assert ix.accounts[1].pubkey == expected
    assert ix.accounts[6].pubkey == ata_program


def test_account_round_trip_and_discriminator_check(idls) -> None:
    registry = idls["registry"]
    owner = Pubkey.new_unique()
    value = {"meter_id": "m1", "owner": owner, "meter_type": "Wind", "status": "Maintenance",
             "registered_at": 1, "last_reading_at": -2, "total_generation": 2**64 - 1,
             "total_consumption": 4, "settled_net_generation": 5, "claimed_erc_generation": 6}
    data = registry.encode_account("MeterAccount", value)
    assert data[:8].hex() == "576f8b57b51468ff"
    assert data[8:14] == b"\x02\x00\x00\x00m1" and data[14:46] == bytes(owner)
    assert registry.decode_account("MeterAccount", data) == value
    with pytest.raises(IdlError, match="not a UserAccount"):
        registry.decode_account("UserAccount", data)
    with pytest.raises(IdlError, match="does not decode"):
        registry.decode_account("MeterAccount", data[:20])


def _data_line(payload: bytes) -> str:
    return "Program data: " + base64.b64encode(payload).decode()


def test_events_are_filtered_by_program_and_depth(idls) -> None:
    registry, token = idls["registry"], idls["energy_token"]
    owner = Pubkey.new_unique()
    settled = (
        bytes(next(e["discriminator"] for e in registry.raw["events"] if e["name"] == "MeterBalanceSettled"))
        + registry.encode_type("string", "m1") + bytes(owner) + (5).to_bytes(8, "little")
        + (9).to_bytes(8, "little") + (77).to_bytes(8, "little"))
    minted = (bytes(next(e["discriminator"] for e in token.raw["events"] if e["name"] == "GridTokensMinted"))
              + bytes(owner) + (5).to_bytes(8, "little") + (77).to_bytes(8, "little"))
    rid, tid = registry.program_id, token.program_id
    logs = [
        f"Program {tid} invoke [1]",
        f"Program {rid} invoke [2]",
        _data_line(settled),
        f"Program return: {rid} BQAAAAAAAAA=",
        f"Program {rid} success",
        "Program TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA invoke [2]",
        _data_line(settled),  # written while another program runs: not the registry's
        "Program TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA success",
        _data_line(minted),
        "Program data: !!!not-base64",
        f"Program {tid} success",
    ]
    assert registry.decode_events(logs) == [("MeterBalanceSettled", {
        "meter_id": "m1", "owner": owner, "tokens_to_mint": 5, "total_settled": 9, "timestamp": 77})]
    assert registry.decode_events(logs, depth=1) == []
    assert token.decode_events(logs) == [("GridTokensMinted", {"meter_owner": owner, "amount": 5,
                                                               "timestamp": 77})]


def test_error_names(idls) -> None:
    assert idls["oracle"].error_name(6001) == "UnauthorizedGateway"
    assert idls["registry"].error_name(6006) == "NoUnsettledBalance"
    assert idls["oracle"].error_name(2006) == "ConstraintSeeds"
    assert idls["oracle"].error_name(3010) == "AccountNotSigner"
    assert idls["oracle"].error_name(6999) is None


def _sample(idl: dict, ty, salt: int):
    """A value of an IDL type that exercises its encoding (non-zero where possible)."""
    if isinstance(ty, str):
        return {"bool": salt % 2 == 1, "string": f"s{salt}é", "pubkey": Pubkey.new_unique(),
                "bytes": bytes([salt % 256])}.get(ty, salt % 100 + (ty.startswith("i") and -1 or 0))
    if "option" in ty:
        return None if salt % 2 else _sample(idl, ty["option"], salt + 1)
    if "vec" in ty:
        return [_sample(idl, ty["vec"], salt + i) for i in range(2)]
    if "array" in ty:
        return [_sample(idl, ty["array"][0], salt + i) for i in range(ty["array"][1])]
    td = next(t for t in idl["types"] if t["name"] == ty["defined"]["name"])["type"]
    if td["kind"] == "enum":
        return td["variants"][salt % len(td["variants"])]["name"]
    return {f["name"]: _sample(idl, f["type"], salt + i) for i, f in enumerate(td["fields"])}


@pytest.mark.parametrize("path", IDL_FILES, ids=lambda p: p.stem)
def test_every_instruction_and_account_round_trips(path: Path, idls) -> None:
    raw = json.loads(path.read_text())
    program = idls[raw["metadata"]["name"]]
    for salt, ix in enumerate(raw["instructions"]):
        args = {a["name"]: _sample(raw, a["type"], salt + i) for i, a in enumerate(ix["args"])}
        data = program.encode_args(ix["name"], args)
        assert data[:8] == bytes(ix["discriminator"])
        assert program.decode_args(data) == (ix["name"], args)
    for salt, acc in enumerate(raw.get("accounts", [])):
        value = _sample(raw, {"defined": {"name": acc["name"]}}, salt)
        assert program.decode_account(acc["name"], program.encode_account(acc["name"], value)) == value


def test_seed_from_another_accounts_field(idls) -> None:
    """Trading's order PDA uses market.active_orders: read through `fetch` when given."""
    trading = idls["trading"]
    market = trading.pda("market")
    authority = Pubkey.new_unique()
    fields = next(t for t in trading.raw["types"] if t["name"] == "Market")["type"]["fields"]
    value = {f["name"]: 0 for f in fields} | {"authority": authority, "active_orders": 7,
                                             "clearing_enabled": True}
    store = {market: trading.encode_account("Market", value)}
    args = {"energy_amount": 10, "max_price_per_kwh": 3}
    with pytest.raises(IdlError, match="order"):
        trading.instruction("create_buy_order", args, {"market": market, "authority": authority})
    ix = trading.instruction("create_buy_order", args, {"market": market, "authority": authority},
                             fetch=store.get)
    expected = Pubkey.find_program_address([b"order", bytes(authority), (7).to_bytes(8, "little")],
                                           trading.program_id)[0]
    assert ix.accounts[1].pubkey == expected
    assert trading.pda("order", fetch=store.get, authority=authority, market=market) == expected
    with pytest.raises(IdlError, match="does not exist"):
        trading.instruction("create_buy_order", args, {"market": market, "authority": authority},
                            fetch=lambda _key: None)


# ---------------------------------------------------------------- where the IDLs come from
def _moved(*names: str) -> dict[str, Pubkey]:
    return {name: Keypair.from_seed(bytes([i + 1]) * 32).pubkey() for i, name in enumerate(names)}


def test_shipped_idls_load_from_any_working_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    raws = shipped_idls()
    assert sorted(raws) == sorted(PROGRAMS)
    for path in IDL_FILES:   # the package data is the top-level idl/ directory, not a copy
        assert raws[path.stem] == json.loads(path.read_text())
    # The defaults of chain.program_ids are the addresses the shipped IDLs declare.
    assert ProgramIds().model_dump() == {name: raw["address"] for name, raw in raws.items()}
    assert {n: str(p.program_id) for n, p in load_idls().items()} == ProgramIds().model_dump()


def test_an_idl_dir_adds_and_replaces_by_program_name(tmp_path: Path) -> None:
    oracle = json.loads((IDL_DIR / "oracle.json").read_text())
    other = str(Pubkey.new_unique())
    (tmp_path / "mine.json").write_text(json.dumps(oracle | {"address": other}))
    extra = oracle | {"address": str(Pubkey.new_unique()), "metadata": oracle["metadata"] | {
        "name": "meter_vault"}}
    (tmp_path / "vault.json").write_text(json.dumps(extra))
    idls = load_idls(tmp_path)
    assert str(idls["oracle"].program_id) == other
    assert str(idls["meter_vault"].program_id) == extra["address"]
    assert str(idls["registry"].program_id) == ProgramIds().registry


def test_an_incomplete_or_missing_idl_set_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(IdlSetError, match="no such directory"):
        load_idls(tmp_path / "absent")
    with pytest.raises(IdlSetError, match="no IDL for meter_vault"):
        load_idls(require=(*PROGRAMS, "meter_vault"))
    (tmp_path / "broken.json").write_text('{"address": "not base58", "metadata": {}}')
    with pytest.raises(IdlSetError, match=r"broken.json: not an Anchor 0.30\+ IDL"):
        load_idls(tmp_path)


def test_a_bad_idl_dir_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    chain = ChainConfig(rpc_urls=["http://127.0.0.1:8899"], idl_dir=tmp_path / "absent")
    with pytest.raises(ConfigError) as exc:
        idls_for_chain(chain, "site.toml")
    (issue,) = exc.value.errors
    assert (issue.file, issue.path, issue.value) == ("site.toml", "chain.idl_dir",
                                                     repr(str(tmp_path / "absent")))
    assert "registry, oracle, governance, energy_token, trading" in issue.allowed


def test_configured_program_ids_move_programs_everywhere() -> None:
    """energy_token and registry moved: their instructions, PDAs, events and the addresses other
    programs pin to them (trading's settle_trade mint is energy_token's ["mint"] PDA) follow."""
    moved = _moved("energy_token", "registry")
    idls = load_idls(program_ids=moved)
    token, registry, trading = idls["energy_token"], idls["registry"], idls["trading"]
    assert (token.program_id, registry.program_id) == (moved["energy_token"], moved["registry"])
    assert str(trading.program_id) == ProgramIds().trading and str(
        idls["oracle"].program_id) == ProgramIds().oracle
    mint = Pubkey.find_program_address([b"mint"], moved["energy_token"])[0]
    assert token.pda("mint") == mint
    settle = next(ix for ix in trading.raw["instructions"] if ix["name"] == "settle_trade")
    assert next(a for a in settle["accounts"] if a["name"] == "mint")["address"] == str(mint)
    owner = Pubkey.new_unique()
    assert registry.pda("registry") == Pubkey.find_program_address([b"registry"],
                                                                   moved["registry"])[0]
    ix = registry.instruction("register_user", {"user_type": "Prosumer", "location": "x"},
                              {"registry": registry.pda("registry"), "user_authority": owner})
    assert ix.program_id == moved["registry"]
    assert ix.accounts[1].pubkey == Pubkey.find_program_address([b"user", bytes(owner)],
                                                                moved["registry"])[0]
    # The ATA program the mint_to_wallet destination is derived under does not move.
    ata = Pubkey.from_string("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL")
    tp = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
    ix = token.instruction("mint_to_wallet", {"amount": 1},
                           {"mint": mint, "destination_owner": owner, "authority": owner,
                            "payer": owner, "token_program": tp})
    assert ix.accounts[1].pubkey == Pubkey.find_program_address(
        [bytes(owner), bytes(tp), bytes(mint)], ata)[0]
    # Events are taken from the moved program's invocations only.
    minted = (bytes(next(e["discriminator"] for e in token.raw["events"]
                         if e["name"] == "GridTokensMinted"))
              + bytes(owner) + (5).to_bytes(8, "little") + (77).to_bytes(8, "little"))
    for pid, expected in ((ProgramIds().energy_token, []),
                          (moved["energy_token"], [("GridTokensMinted", {
                              "meter_owner": owner, "amount": 5, "timestamp": 77})])):
        logs = [f"Program {pid} invoke [1]", _data_line(minted), f"Program {pid} success"]
        assert token.decode_events(logs) == expected
    # The loaded files are not changed for the next caller.
    assert str(load_idls()["energy_token"].program_id) == ProgramIds().energy_token


def test_only_program_ids_set_in_the_configuration_override_the_idls(tmp_path: Path) -> None:
    oracle = json.loads((IDL_DIR / "oracle.json").read_text())
    own = Pubkey.new_unique()
    (tmp_path / "oracle.json").write_text(json.dumps(oracle | {"address": str(own)}))
    base = {"rpc_urls": ["http://127.0.0.1:8899"], "idl_dir": tmp_path}
    assert idls_for_chain(ChainConfig(**base))["oracle"].program_id == own
    moved = _moved("oracle")["oracle"]
    chain = ChainConfig(**base, program_ids=ProgramIds(oracle=str(moved)))
    idls = idls_for_chain(chain)
    assert idls["oracle"].program_id == moved
    assert str(idls["registry"].program_id) == ProgramIds().registry
