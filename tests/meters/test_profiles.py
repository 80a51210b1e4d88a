import math
import tomllib
from pathlib import Path

import pytest

from gridnode.config import parse_config
from gridnode.daemon import check_config
from gridnode.meters.profiles import (
    ProfileError,
    decode,
    load_profile_file,
    load_profiles,
    parse_profile,
    plan_blocks,
    registers_to_raw,
    shipped_profiles,
)
from simulators.meters.modbus_server import encode

PROFILES = load_profiles()
REPO = Path(__file__).resolve().parents[2]


def test_shipped_profiles_cover_the_required_meters() -> None:
    assert {"sdm630", "sdm120", "sdm72", "em24", "sunspec201", "sunspec203"} <= set(PROFILES)
    sdm = {f.role: f for f in PROFILES["sdm630"].fields()}
    assert (sdm["import_wh"].address, sdm["export_wh"].address) == (0x48, 0x4A)
    assert sdm["import_wh"].function_code == 4 and sdm["import_wh"].data_type == "float32"
    em24 = {f.role: f for f in PROFILES["em24"].fields()}
    assert em24["import_wh"].word_order == "little" and em24["import_wh"].data_type == "int32"


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_profile_round_trips_and_reads_in_few_blocks(name: str) -> None:
    p = PROFILES[name]
    values = {"import_wh": 123_456.0, "export_wh": 7_800.0, "power_w": 1234.0,
              "voltage_v": 231.0, "current_a": 5.25, "frequency_hz": 50.0}
    words = encode(p, values)
    blocks = plan_blocks(p)
    assert len([b for b in blocks if not b.optional]) == 1 and all(b.count <= 125 for b in blocks)
    regs = {b: [words.get(b.address + i, 0) for i in range(b.count)] for b in blocks}
    out = decode(p, regs)
    for role, v in out.items():
        assert v is not None and math.isclose(v, values[role], rel_tol=1e-3, abs_tol=0.02), role


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_sentinels_decode_to_none_never_zero(name: str) -> None:
    p = PROFILES[name]
    words = encode(p, {"import_wh": None, "export_wh": None, "power_w": 1.0})
    regs = {b: [words.get(b.address + i, 0) for i in range(b.count)] for b in plan_blocks(p)}
    out = decode(p, regs)
    assert out["import_wh"] is None and out["export_wh"] is None


def test_raw_sentinels() -> None:
    assert registers_to_raw([0x7FC0, 0x0000], "float32", "big") is None      # NaN
    assert registers_to_raw([0xFFFF], "uint16", "big") is None
    assert registers_to_raw([0x8000], "int16", "big") is None
    assert registers_to_raw([0x0001, 0x0000], "int32", "little") == 1


def test_bad_profile_names_the_file_and_key(tmp_path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text('name = "bad"\nregisters = [{ role = "power_w", address = 1, colour = 2 }]\n')
    with pytest.raises(ProfileError) as e:
        load_profile_file(f)
    assert str(f) in str(e.value) and "colour" in str(e.value)
    with pytest.raises(ProfileError, match="import_wh"):
        parse_profile({"name": "x", "registers": [{"role": "power_w", "address": 0}]}, "cfg")


def test_shipped_profiles_load_from_any_working_directory(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    shipped = shipped_profiles()
    assert shipped == PROFILES == load_profiles()
    names = {tomllib.loads(p.read_text())["name"] for p in (REPO / "config" / "meters").glob("*.toml")}
    assert set(shipped) == names


def test_a_profiles_dir_adds_and_replaces_by_name(tmp_path) -> None:
    sdm = (REPO / "config" / "meters" / "sdm630.toml").read_text()
    (tmp_path / "mine.toml").write_text(sdm.replace('name = "sdm630"', 'name = "sdm630-site"'))
    (tmp_path / "sdm120.toml").write_text(
        'name = "sdm120"\ndescription = "site variant"\nregisters = [{ role = "import_wh", address = 2 }]\n')
    profiles = load_profiles(tmp_path)
    assert profiles["sdm630-site"].registers == PROFILES["sdm630"].registers
    assert profiles["sdm120"].description == "site variant"
    assert profiles["em24"] == PROFILES["em24"]


async def test_a_missing_profiles_dir_is_reported_by_check_config(tmp_path) -> None:
    with pytest.raises(ProfileError, match="no such directory"):
        load_profiles(tmp_path / "absent")
    cfg = parse_config(f'[meters]\nprofiles_dir = "{tmp_path / "absent"}"\n'
                       '[[meters.buses]]\nkind = "tcp"\nhost = "127.0.0.1"\n'
                       '[[meters.buses.meters]]\nmeter_id = "m1"\nunit_id = 1\n'
                       'profile = "sdm630"\nrated_power_w = 1000\n', "site.toml")
    (issue,) = await check_config(cfg)
    assert (issue.file, issue.path) == ("site.toml", "meters.profiles_dir")
    assert "no such directory" in issue.allowed
