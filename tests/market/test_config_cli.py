"""[market] in the configuration and at check-config, and the order commands (they only write
the database: no chain is needed to queue an order)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gridnode.cli import main
from gridnode.config import ConfigError, ConfigIssue, parse_config
from gridnode.keys import generate_keypair_file
from tests.configs import modbus_meter, tcp_bus, write_config


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def site(tmp_path: Path, *, registry_readings: bool = False, authority: bool = True,
         users: list[dict[str, Any]] | None = None) -> Path:
    for name in ("gw", "auth", "alice"):
        if not (tmp_path / f"{name}.json").exists():
            generate_keypair_file(tmp_path / f"{name}.json")
    chain: dict[str, Any] = {"rpc_urls": ["http://127.0.0.1:9"],
                             "registry_readings": registry_readings}
    if authority:
        chain["authority_keypair"] = str(tmp_path / "auth.json")
    bob = str(generate_keypair_file(tmp_path / "bob.json").pubkey()) \
        if not (tmp_path / "bob.json").exists() else None
    (tmp_path / "bob.json").unlink()     # bob keeps his key: only his public key is known
    return write_config(
        tmp_path / "site.toml",
        node={"data_dir": str(tmp_path / "data")},
        keys={"gateway_keypair": str(tmp_path / "gw.json")}, chain=chain,
        meters={"buses": [tcp_bus(15020, modbus_meter("pv-1", 1, "sdm630"),
                                  modbus_meter("flat-2", 2, "sdm120"))]},
        market={"epoch_minutes": 15, "users": users if users is not None else [
            {"name": "alice", "keypair": str(tmp_path / "alice.json"), "meters": ["pv-1"],
             "policy": "sell_surplus", "min_price_per_kwh": 120},
            {"name": "bob", "pubkey": bob, "delegate": True, "meters": ["flat-2"]}]})


def test_market_errors_name_the_key_and_what_is_allowed() -> None:
    def errors(text: str) -> list[ConfigIssue]:
        with pytest.raises(ConfigError) as exc:
            parse_config(text, "site.toml")
        return exc.value.errors

    errs = errors('[market]\nepoch_minutes = 7\n[[market.users]]\nname = "a"\n'
                  'keypair = "/k.json"\npubkey = "11111111111111111111111111111111"\n'
                  '[[market.users]]\nname = "b"\nkeypair = "/b.json"\npolicy = "sell_surplus"\n'
                  'meters = ["m"]\n[[market.users]]\nname = "c"\ncredential = "c"\n'
                  'policy = "barter"\n')
    text = "\n".join(str(e) for e in errs)
    assert "market.epoch_minutes = 7" in text     # named with the users' errors, not after them
    assert "market.users[0]" in text and "exactly one of keypair" in text
    assert "market.users[1]" in text and "min_price_per_kwh with policy = 'sell_surplus'" in text
    assert "market.users[2].policy = 'barter'" in text and "sell_surplus" in text
    errs = errors('[market]\nepoch_minutes = 7\n')
    assert errs[0].path == "market.epoch_minutes" and "1, 5, 15, 30 or 60" in errs[0].allowed
    errs = errors('[market]\n[[market.users]]\nname = "a"\npubkey = "11111111111111111111111111111111"'
                  '\ndelegate = true\npolicy = "buy_deficit"\nmax_price_per_kwh = 5\nmeters = ["m"]\n')
    assert errs[0].path == "market.users[0]"
    assert "policy = 'manual' for a delegate user" in errs[0].allowed


def test_check_config_says_who_can_sell_and_what_minting_needs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = site(tmp_path)
    code, out, err = run_cli(capsys, "check-config", str(cfg))
    assert code == 0, err
    assert "market: epochs of 15 min (UTC); clears the market at each epoch's end" in out
    assert "user alice can sell with its own key" in out and "at >= 120/kWh" in out
    assert "user bob can sell: settled with the gateway as its approved SPL delegate" in out
    assert "minting: needs chain.registry_readings = true" in out

    cfg = site(tmp_path, registry_readings=True, authority=False)
    code, out, err = run_cli(capsys, "check-config", str(cfg))
    assert code == 0, err
    assert "does not clear the market (no market authority key)" in out
    assert "minting: grid_minting after each finalized interval" in out


def test_check_config_refuses_unknown_meters_and_loose_user_keys(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = site(tmp_path, users=[
        {"name": "alice", "keypair": str(tmp_path / "alice.json"), "meters": ["pv-9"]}])
    (tmp_path / "alice.json").chmod(0o644)
    code, out, err = run_cli(capsys, "check-config", str(cfg))
    assert code == 2 and out == ""
    assert f"{cfg}: market.users[0].meters[0] = 'pv-9': expected a meter_id configured" in err
    assert f"{cfg}: market.users[0].keypair = " in err and "chmod 600" in err


def test_order_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = str(site(tmp_path))
    code, out, err = run_cli(capsys, "db", "migrate", "-c", cfg)
    assert code == 0, err
    code, out, err = run_cli(capsys, "order", "sell", "alice", "--wh", "1200", "--price", "150",
                             "--id", "noon", "-c", cfg)
    assert code == 0, err
    assert out.startswith("order 1: sell 1200 Wh at 150/kWh for alice queued")
    code, out, _ = run_cli(capsys, "order", "sell", "alice", "--wh", "1200", "--price", "150",
                           "--id", "noon", "-c", cfg)
    assert code == 0 and "was queued before; nothing added" in out
    code, out, _ = run_cli(capsys, "order", "buy", "alice", "--wh", "300", "--price", "90",
                           "-c", cfg)
    assert code == 0 and out.startswith("order 2: buy 300 Wh")
    code, out, _ = run_cli(capsys, "order", "list", "-c", cfg)
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 3 and " buy " in lines[1] and " sell " in lines[2]
    assert "manual" in lines[2] and "pending" in lines[2] and "alice -" in lines[2]
    code, out, _ = run_cli(capsys, "outbox", "list", "-c", cfg)
    assert "order_creation:manual:alice:noon" in out and len(out.splitlines()) == 3

    code, _, err = run_cli(capsys, "order", "cancel", "1", "-c", cfg)
    assert code == 2 and "not on chain yet" in err
    code, _, err = run_cli(capsys, "order", "cancel", "99", "-c", cfg)
    assert code == 1 and "no order 99" in err
    code, _, err = run_cli(capsys, "order", "sell", "bob", "--wh", "1", "--price", "1", "-c", cfg)
    assert code == 2 and "keeps its own key" in err
    code, _, err = run_cli(capsys, "order", "sell", "carol", "--wh", "1", "--price", "1",
                           "-c", cfg)
    assert code == 2 and "no user 'carol'" in err
    code, _, err = run_cli(capsys, "order", "sell", "alice", "--wh", "0", "--price", "1",
                           "-c", cfg)
    assert code == 2 and "energy_amount" in err
    code, _, err = run_cli(capsys, "settlement", "retry", "1", "-c", cfg)
    assert code == 1 and "no settlement 1" in err
