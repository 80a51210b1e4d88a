"""The gridnode command: outputs and exit codes (0 ok, 2 usage/config, 1 runtime failure)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from gridnode.cli import main
from gridnode.keys import generate_keypair_file
from gridnode.store import Store, migrate

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
    latest = migrate.discover()[-1].version
    assert out.splitlines()[-1] == f"{db}: schema version {latest}"
    code, out, _ = run_cli(capsys, "db", "migrate", "--db", str(db))
    assert code == 0 and "applied" not in out
    assert out.splitlines() == [f"{db}: schema version {latest} (up to date)"]
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


def _gridnode(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gridnode", *argv], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def test_check_config_reports_every_problem_run_would_fail_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    afile = tmp_path / "afile"
    afile.write_text("not a directory")
    gw = tmp_path / "gw.json"
    run_cli(capsys, "keygen", str(gw))
    gw.chmod(0o644)
    cfg = tmp_path / "site.toml"
    cfg.write_text(f"""
[node]
data_dir = "{afile}"
[keys]
gateway_keypair = "{gw}"
[chain]
rpc_urls = ["http://127.0.0.1:1"]
idl_dir = "{tmp_path / 'no-idl'}"
user_keypairs = ["{tmp_path / 'absent-user.json'}"]
[meters]
profiles_dir = "{tmp_path / 'no-profiles'}"
[[meters.buses]]
kind = "tcp"
host = "127.0.0.1"
port = 1
[[meters.buses.meters]]
meter_id = "m1"
unit_id = 1
profile = "sdm630"
rated_power_w = 1000
[meters.mqtt]
tls = true
ca_file = "{tmp_path / 'absent-ca.pem'}"
[[meters.mqtt.meters]]
meter_id = "m2"
format = "tasmota"
topic = "tele/m2/SENSOR"
""")
    code, out, err = run_cli(capsys, "check-config", str(cfg))
    assert code == 2 and out == ""
    assert "configuration errors (6):" in err
    lines = err.splitlines()[1:]
    by_key = {line.split(" = ")[0].split(": ", 1)[1]: line for line in lines}
    assert set(by_key) == {"node.data_dir", "keys.gateway_keypair", "chain.user_keypairs[0]",
                           "chain.idl_dir", "meters.profiles_dir", "meters.mqtt.ca_file"}
    assert f"node.data_dir = '{afile}': expected a directory gridnode can create or write " \
           "(it is a file)" in by_key["node.data_dir"]
    assert "chmod 600" in by_key["keys.gateway_keypair"]
    assert "No such file or directory" in by_key["chain.user_keypairs[0]"]
    assert "a PEM file of CA certificates" in by_key["meters.mqtt.ca_file"]
    assert all(line.startswith(f"  {cfg}: ") for line in lines)


def test_a_ca_file_that_is_not_pem_and_a_data_dir_under_a_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "afile").write_text("x")
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    cfg = tmp_path / "site.toml"
    cfg.write_text(f'[node]\ndata_dir = "{tmp_path / "afile" / "state"}"\n'
                   f'[meters.mqtt]\ntls = true\nca_file = "{tmp_path / "ca.pem"}"\n')
    code, _, err = run_cli(capsys, "check-config", str(cfg))
    assert code == 2
    assert f"{tmp_path / 'afile'} is a file" in err
    assert "meters.mqtt.ca_file" in err and "a PEM file of CA certificates" in err


@pytest.mark.parametrize("case", ["key-mode", "key-absent", "key-content", "user-key-absent",
                                  "data-dir-file", "ca-file-absent", "empty-file"])
def test_run_exits_2_on_a_configuration_error(tmp_path: Path, case: str) -> None:
    """Under systemd exit status 2 is not retried (RestartPreventExitStatus): a node that cannot
    start because of its configuration must say so with 2, never 1."""
    gw = tmp_path / "gw.json"
    generate_keypair_file(gw)
    user = tmp_path / "user.json"
    generate_keypair_file(user)
    data_dir = tmp_path / "state"
    extra = ""
    if case == "key-mode":
        gw.chmod(0o640)
    elif case == "key-absent":
        gw.unlink()
    elif case == "key-content":
        gw.write_text("[1, 2, 3]")
    elif case == "user-key-absent":
        user.unlink()
    elif case == "data-dir-file":
        data_dir.write_text("x")
    elif case == "ca-file-absent":
        extra = f'[meters.mqtt]\ntls = true\nca_file = "{tmp_path / "ca.pem"}"\n'
    cfg = tmp_path / "site.toml"
    cfg.write_text("" if case == "empty-file" else f"""
[node]
data_dir = "{data_dir}"
[keys]
gateway_keypair = "{gw}"
[chain]
rpc_urls = ["http://127.0.0.1:1"]
user_keypairs = ["{user}"]
{extra}""")
    proc = _gridnode("run", "-c", str(cfg))
    key = {"key-mode": "keys.gateway_keypair", "key-absent": "keys.gateway_keypair",
           "key-content": "keys.gateway_keypair", "user-key-absent": "chain.user_keypairs[0]",
           "data-dir-file": "node.data_dir", "ca-file-absent": "meters.mqtt.ca_file",
           "empty-file": "<empty>"}[case]
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert key in proc.stderr and "Traceback" not in proc.stderr
    assert "event=ready" not in proc.stderr


def test_check_config_says_what_is_not_implemented_and_when_nothing_would_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "site.toml"
    cfg.write_text('[node]\nid = "x"\n[api]\nport = 9000\n')
    code, out, _ = run_cli(capsys, "check-config", str(cfg))
    assert code == 0
    lines = out.splitlines()
    assert lines[1] == ("  does nothing: no meters and no [chain] are configured, so the node "
                        "would only keep its database open")
    assert "  upstream: not configured (nothing is synced)" in lines
    api = [line for line in lines if line.startswith("  api: ")]
    assert len(api) == 1 and api[0].startswith("  api: http://127.0.0.1:9000, ")
    assert "'gridnode token secret /etc/gridnode/api-jwt.secret'" in api[0]

    cfg.write_text('[node]\nid = "x"\n[api]\nenabled = false\nport = 9000\n')
    code, out, _ = run_cli(capsys, "check-config", str(cfg))
    assert code == 0 and "  api: off (enable it with [api] enabled = true)" in out.splitlines()
    assert "http://" not in out and "9000" not in out

    code, out, _ = run_cli(capsys, "check-config", str(REPO / "config/gridnode.example.toml"))
    assert code == 0 and "does nothing" not in out

    cfg.write_text("# only a comment\n")
    code, out, err = run_cli(capsys, "check-config", str(cfg))
    assert code == 2 and out == ""
    assert f"{cfg} = <empty>: expected at least one section; an empty file configures " in err


def test_a_reader_that_leaves_early_is_not_an_error(tmp_path: Path) -> None:
    db = tmp_path / "g.db"

    async def seed() -> None:
        store = await Store.open(db)
        async with store.write() as tx:
            for i in range(3000):       # far more than a pipe buffer holds
                await tx.add_operation("meter_reading", {"n": i}, f"k:{i}")
        await store.close()

    asyncio.run(seed())
    proc = subprocess.Popen([sys.executable, "-m", "gridnode", "outbox", "list", "--db", str(db),
                             "--limit", "3000"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()          # `| head -1`
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141     # 128 + SIGPIPE, as `yes | head -1` gives
    assert first.split()[:2] == [b"id", b"status"]
    assert err == ""


def test_status_says_when_a_meter_has_no_export_counter(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "g.db"

    async def seed() -> None:
        store = await Store.open(db)
        async with store.write() as tx:
            await tx.execute("INSERT INTO meters (meter_id, source, profile, created_at_ms, "
                             "updated_at_ms) VALUES ('flat', 'mqtt', 'tasmota', 0, 0)")
            await tx.execute("INSERT INTO readings (meter_id, read_at_ms, received_at_ms, "
                             "import_wh, export_wh) VALUES ('flat', 1000, 1000, 42.5, NULL)")
        await store.close()

    asyncio.run(seed())
    code, out, _ = run_cli(capsys, "status", "--db", str(db))
    assert code == 0 and "None" not in out
    assert "import=42.5 Wh no export counter" in out


def test_check_config_finds_one_device_behind_two_names(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What parse_config cannot see: a host name that resolves to another entry's address, a
    serial path that is a link to another entry's device (/dev/serial/by-id/... -> ttyUSB0)."""
    host = socket.gethostname()
    try:
        address = socket.getaddrinfo(host, 502, type=socket.SOCK_STREAM)[0][4][0]
    except OSError:
        pytest.skip(f"this machine's name {host!r} does not resolve")
    device = tmp_path / "ttyUSB0"
    device.write_text("")
    (tmp_path / "by-id").mkdir()
    (tmp_path / "by-id" / "usb-meter-port0").symlink_to(device)
    cfg = tmp_path / "site.toml"
    cfg.write_text("".join(f'[[meters.buses]]\nkind = "tcp"\nhost = "{h}"\n'
                           for h in (address, host))
                   + "".join(f'[[meters.buses]]\nkind = "rtu"\nport = "{p}"\n'
                             for p in (device, tmp_path / "by-id" / "usb-meter-port0")))
    code, _, err = run_cli(capsys, "check-config", str(cfg))
    assert code == 2 and "configuration errors (2):" in err
    assert (f"{cfg}: meters.buses[1].host = '{host}:502': expected a bus endpoint not already "
            f"used by meters.buses[0] ('{address}:502'") in err
    assert (f"{cfg}: meters.buses[3].port = '{tmp_path / 'by-id' / 'usb-meter-port0'}': "
            f"expected a bus endpoint not already used by meters.buses[2]") in err
