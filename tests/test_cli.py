"""The gridnode command: outputs and exit codes (0 ok, 2 usage/config, 1 runtime failure)."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from gridnode.cli import main
from gridnode.store import Store

REPO = Path(__file__).resolve().parents[1]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:       # argparse usage errors
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_check_config_ok_and_every_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "check-config", str(REPO / "config/gridnode.example.toml"))
    assert code == 0
    assert out.startswith("ok: ") and "3 on 2 Modbus bus(es)" in out

    bad = tmp_path / "bad.toml"
    bad.write_text('[node]\nid = "x"\ncolour = 1\n[api]\nport = -1\n[logging]\nformat = "xml"\n')
    code, out, err = run_cli(capsys, "check-config", str(bad))
    assert code == 2 and out == ""
    assert "configuration errors (3)" in err
    for path in ("node.colour", "api.port", "logging.format"):
        assert f"{bad}: {path} = " in err


def test_check_config_reports_what_subsystems_and_key_files_refuse(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "gw.json"
    text = (REPO / "config/gridnode.example.toml").read_text()
    text = text.replace('profile = "sdm120"', 'profile = "sdm999"')
    text = text.replace('gateway_keypair = "var/gridnode/gateway-keypair.json"',
                        f'gateway_keypair = "{key}"')
    cfg = tmp_path / "site.toml"
    cfg.write_text(text)
    code, out, _ = run_cli(capsys, "keygen", str(key))
    key.chmod(0o644)
    code, out, err = run_cli(capsys, "check-config", str(cfg))
    assert code == 2 and out == ""
    assert f"{cfg}: meters.buses[0].meters[1].profile = 'sdm999'" in err
    assert f"{cfg}: keys.gateway_keypair = '{key}'" in err and "chmod 600" in err

    key.chmod(0o600)
    cfg.write_text(text.replace('profile = "sdm999"', 'profile = "sdm120"'))
    code, out, _ = run_cli(capsys, "check-config", str(cfg))
    assert code == 0 and f"keypair: {key}" in out
    key.unlink()
    code, out, _ = run_cli(capsys, "check-config", str(cfg))
    assert code == 0 and "does not exist yet (create it: gridnode keygen" in out


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "frobnicate")[0] == 2
    assert run_cli(capsys, "outbox", "retry", "not-a-number")[0] == 2
    assert run_cli(capsys, "status", "-c", "/nonexistent/gridnode.toml")[0] == 2


def test_keygen_writes_once_and_never_prints_the_secret(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "gw.json"
    code, out, _ = run_cli(capsys, "keygen", str(path))
    assert code == 0 and os.stat(path).st_mode & 0o777 == 0o600
    secret = json.loads(path.read_text())
    assert "public key: " in out
    assert str(secret[0:4])[1:-1] not in out
    code, _, err = run_cli(capsys, "keygen", str(path))
    assert code == 1 and "already exists" in err


def _seed(db: Path) -> dict[str, int]:
    async def go() -> dict[str, int]:
        store = await Store.open(db)
        ids: dict[str, int] = {}
        async with store.write() as tx:
            await tx.execute("INSERT INTO meters (meter_id, source, profile, created_at_ms, "
                             "updated_at_ms) VALUES ('m1', 'modbus', 'sdm630', 0, 0), "
                             "('m2', 'mqtt', 'tasmota', 0, 0)")
            await tx.execute("INSERT INTO readings (meter_id, read_at_ms, received_at_ms, "
                             "import_wh, export_wh) VALUES ('m1', 1000, 1000, 5.5, 0), "
                             "('m1', 900000000000, 900000000000, 1234.5, 10)")
            await tx.execute("INSERT INTO meter_health (meter_id, source, requests, errors, "
                             "accepted, rejected, last_error, state, updated_at_ms) VALUES "
                             "('m1', 'rs485', 10, 2, 7, 1, 'timeout', 'online', 0)")
            for name in ("failed", "submitted", "pending"):
                ids[name], _ = await tx.add_operation("meter_reading", {"n": name}, f"k:{name}")
            await tx.set_status("operation", ids["failed"], "failed", reason="program error",
                                last_error="custom program error 0x1770")
            await tx.set_status("operation", ids["submitted"], "signed", reason="s")
            await tx.set_status("operation", ids["submitted"], "submitted", reason="sent")
        await store.close()
        return ids

    return asyncio.run(go())


def test_db_status_and_outbox(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "g.db"
    assert run_cli(capsys, "status", "--db", str(db))[0] == 1     # nothing there yet
    code, out, _ = run_cli(capsys, "db", "migrate", "--db", str(db))
    assert code == 0 and "applied 0001_initial" in out
    code, out, _ = run_cli(capsys, "db", "migrate", "--db", str(db))
    assert code == 0 and "up to date" in out and "applied" not in out
    ids = _seed(db)
    code, out, _ = run_cli(capsys, "db", "check", "--db", str(db))
    assert code == 0 and out.strip().endswith(": ok")

    code, out, _ = run_cli(capsys, "status", "--db", str(db))
    assert code == 0
    assert "operations: failed=1, pending=1, submitted=1" in out
    assert f"oldest pending: #{ids['pending']} meter_reading k:pending" in out
    assert "m1 (modbus, online): last reading 1998-07-09 16:00:00" in out
    assert "import=1234.5 Wh" in out
    assert "accepted=7 rejected=1 errors=2 last error: timeout" in out
    assert "m2 (mqtt): no reading yet" in out

    code, out, _ = run_cli(capsys, "outbox", "list", "--db", str(db), "--status", "failed")
    assert code == 0 and "k:failed" in out and "k:pending" not in out
    assert "custom program error 0x1770" in out

    code, out, _ = run_cli(capsys, "outbox", "show", str(ids["submitted"]), "--db", str(db))
    assert code == 0 and "status: submitted" in out
    assert "signed -> submitted: sent" in out and "transactions: 0" in out
    assert run_cli(capsys, "outbox", "show", "999", "--db", str(db))[0] == 1

    code, _, err = run_cli(capsys, "outbox", "retry", str(ids["submitted"]), "--db", str(db))
    assert code == 1 and "submitted" in err and "failed, parked" in err
    code, out, _ = run_cli(capsys, "outbox", "retry", str(ids["failed"]), "--db", str(db),
                           "--reason", "program upgraded")
    assert code == 0 and "failed -> pending" in out
    code, out, _ = run_cli(capsys, "outbox", "show", str(ids["failed"]), "--db", str(db))
    assert "status: pending" in out and "attempts: 0" in out
    assert 'failed -> pending: operator retry {"note":"program upgraded"}' in out


def test_db_check_reports_a_damaged_file(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "g.db"
    _seed(db)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'operations_status'"
                        ).fetchone()[0]
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with open(db, "r+b") as f:          # scribble over the index's root page, as bad flash might
        f.seek((root - 1) * page + 8)
        f.write(b"\xff" * 64)
    code, out, _ = run_cli(capsys, "db", "check", "--db", str(db))
    assert code == 1 and not out.strip().endswith(": ok")
    junk = tmp_path / "junk.db"
    junk.write_text("not sqlite at all, just text that is long enough " * 4)
    code, _, err = run_cli(capsys, "status", "--db", str(junk))
    assert code == 1 and "not a database" in err


def test_module_entry_point_and_version() -> None:
    proc = subprocess.run([sys.executable, "-m", "gridnode", "version"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("gridnode 0.")
