"""The installation the README gives an operator, end to end, and what the daemon imports.

`pip install -c constraints.txt .` must give a gridnode that works anywhere: the wheel is built
from the sources, installed into a fresh virtualenv (no editable install, no dev extras, no
access to the checkout's files), and run from another working directory: `check-config` on the
example configuration, then `gridnode run` against the localnet until a meter's reading is
finalized on chain. The first run downloads the locked wheels from the package index; pip's cache
makes later runs take seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
import zipfile
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from packaging.utils import canonicalize_name

from simulators.chain.localnet import Localnet
from tests.configs import localnet_node, mqtt_meter, write_config
from tests.net import pick_free_port

REPO = Path(__file__).resolve().parents[1]
SOURCES = ["pyproject.toml", "README.md", "gridnode", "idl", "config/meters"]
DEV_TOOLS = ("pytest", "_pytest", "pluggy", "iniconfig", "pytest_asyncio", "pytest_timeout",
             "ruff", "mypy")


def _run(cmd: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(cmd)} exited {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel pip builds from a copy of the sources (the build leaves the checkout alone)."""
    work = tmp_path_factory.mktemp("build")
    src = work / "src"
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(work / "dist"),
          str(src)], cwd=work)
    (found,) = (work / "dist").glob("gridnode-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv holding the wheel and its locked dependencies, nothing else."""
    env = tmp_path_factory.mktemp("venv") / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(env)], cwd=env.parent)
    python = env / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
          "-c", str(REPO / "constraints.txt"), str(wheel)], cwd=env.parent)
    return env


def test_wheel_ships_the_idls_and_the_meter_profiles(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    idls = sorted(n.rsplit("/", 1)[1] for n in names if n.startswith("gridnode/data/idl/"))
    profiles = sorted(n.rsplit("/", 1)[1] for n in names if n.startswith("gridnode/data/meters/"))
    assert idls == sorted(p.name for p in (REPO / "idl").glob("*.json"))
    assert profiles == sorted(p.name for p in (REPO / "config" / "meters").glob("*.toml"))
    for name in idls:   # the files themselves, not links to a checkout
        shipped = zipfile.ZipFile(wheel).read(f"gridnode/data/idl/{name}")
        assert shipped == (REPO / "idl" / name).read_bytes()


def test_the_install_holds_only_what_constraints_txt_locks(venv: Path) -> None:
    listed = json.loads(_run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
                              "list", "--format=json"], cwd=venv.parent).stdout)
    installed = {canonicalize_name(d["name"]): d["version"] for d in listed}
    locked = {canonicalize_name(n): v for n, _, v in (
        line.partition("==") for line in (REPO / "constraints.txt").read_text().split())}
    assert installed.pop("gridnode") == "0.1.0"
    assert {n: v for n, v in installed.items() if locked.get(n) != v} == {}
    assert not {"pytest", "ruff", "mypy"} & set(installed)


def test_installed_check_config_passes_on_the_example_from_elsewhere(venv: Path,
                                                                    tmp_path: Path) -> None:
    site = _run([str(venv / "bin" / "python"), "-c",
                 "import gridnode, importlib.util as u; print(gridnode.__file__); "
                 "print([m for m in " + repr(DEV_TOOLS) + " if u.find_spec(m)])"], cwd=tmp_path)
    where, dev = site.stdout.splitlines()
    assert where.startswith(str(venv)) and dev == "[]", site.stdout
    r = _run([str(venv / "bin" / "gridnode"), "check-config",
              str(REPO / "config" / "gridnode.example.toml")], cwd=tmp_path)
    assert r.stdout.startswith("ok: "), r.stdout
    assert "sdm630" in r.stdout


def test_installed_check_config_names_a_missing_idl_dir(venv: Path, tmp_path: Path) -> None:
    (tmp_path / "site.toml").write_text('[chain]\nrpc_urls = ["http://127.0.0.1:8899"]\n'
                                        'idl_dir = "idl"\n')
    r = subprocess.run([str(venv / "bin" / "gridnode"), "check-config", "site.toml"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "site.toml: chain.idl_dir = 'idl': expected" in r.stderr
    assert "no such directory" in r.stderr


def _config(tmp_path: Path, net: Localnet, topic: str) -> Path:
    node = localnet_node(net, tmp_path / "data", rpc={"blockhash_max_age_s": None})
    return write_config(
        tmp_path / "site.toml", node, intervals={"minutes": 1},
        meters={"mqtt": {"host": "127.0.0.1", "meters": [mqtt_meter(
            "wheel-1", topic, "generic", 10000, fields={
                "import_energy": "import_wh", "energy_unit": "Wh", "time": "ts",
                "time_format": "unix_s"})]}},
        logging={"format": "json"})


def _finalized_readings(db: Path) -> list[dict]:
    if not db.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        try:
            rows = conn.execute(
                "SELECT e.data FROM chain_events e JOIN operations o ON o.id = e.operation_id "
                "WHERE e.name = 'MeterReadingSubmitted' AND o.status = 'finalized'").fetchall()
        except sqlite3.OperationalError:   # the daemon has not created its tables yet
            return []
    return [json.loads(r[0]) for r in rows]


async def test_installed_gridnode_runs_a_reading_to_finality(venv: Path, tmp_path: Path,
                                                            mqtt_broker: tuple[str, int]) -> None:
    """The meter publishes one reading every 10 s of its own clock, replayed quickly from ten
    minutes ago, so whole 1-minute intervals close without waiting for the wall clock; each
    holds 30 Wh (5 Wh per reading) and must come back as a finalized MeterReadingSubmitted."""
    topic = f"gridnode-install-test/{uuid.uuid4().hex}"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    async with Localnet(port=pick_free_port(), slot_ms=25, state_dir=tmp_path / "chain") as net:
        cfg = _config(tmp_path, net, topic)
        log_path = tmp_path / "gridnode.log"
        with log_path.open("w") as log:
            proc = await asyncio.create_subprocess_exec(
                str(venv / "bin" / "gridnode"), "run", "-c", str(cfg), cwd=elsewhere,
                stdout=log, stderr=subprocess.STDOUT,
                env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
        publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        publisher.connect(*mqtt_broker)
        publisher.loop_start()
        try:
            deadline = time.monotonic() + 60
            while "mqtt connected" not in log_path.read_text():
                assert proc.returncode is None, log_path.read_text()
                assert time.monotonic() < deadline, log_path.read_text()
                await asyncio.sleep(0.1)
            start = int(time.time()) // 60 * 60 - 600
            for k in range(58):
                payload = {"import_wh": 1000 + 5 * k, "ts": start + 10 * k}
                publisher.publish(topic, json.dumps(payload), qos=1).wait_for_publish(5)
                await asyncio.sleep(0.05)
            events: list[dict] = []
            while not events:
                assert proc.returncode is None, log_path.read_text()
                assert time.monotonic() < deadline, log_path.read_text()
                await asyncio.sleep(0.2)
                events = _finalized_readings(tmp_path / "data" / "gridnode.db")
        finally:
            publisher.loop_stop()
            publisher.disconnect()
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            rc = await asyncio.wait_for(proc.wait(), 30)
    assert rc == 0, log_path.read_text()
    assert {e["meter_id"] for e in events} == {"wheel-1"}
    assert {int(e["energy_consumed"]) for e in events} == {30}
    assert all(int(e["timestamp"]) % 60 == 0 and start < int(e["timestamp"]) <= start + 600
               for e in events)


def test_daemon_imports_no_dev_tools_even_where_they_are_installed() -> None:
    """In this (development) venv pytest is installed, and anchorpy imports its pytest plugin
    whenever it can: the daemon, with its pipeline built, must still not load it."""
    code = textwrap.dedent(f"""\
        import asyncio, json, sys, tempfile
        from pathlib import Path
        from solders.keypair import Keypair
        import gridnode.daemon
        from gridnode.config import parse_config
        from gridnode.store import Store
        cfg = parse_config('[chain]\\nrpc_urls = ["http://127.0.0.1:8899"]\\n')
        async def build():
            with tempfile.TemporaryDirectory() as tmp:
                store = await Store.open(Path(tmp) / "x.db")
                try:
                    return [s.name for s in gridnode.daemon.build_subsystems(cfg, store, Keypair())]
                finally:
                    await store.close()
        names = asyncio.run(build())
        dev = sorted(m for m in sys.modules if m.split(".")[0] in {DEV_TOOLS!r})
        print(json.dumps({{"subsystems": names, "dev": dev, "anchorpy": "anchorpy" in sys.modules,
                          "blocked": "anchorpy.pytest_plugin" in sys.modules}}))
        """)
    r = _run([sys.executable, "-c", code], cwd=REPO)
    out = json.loads(r.stdout)
    assert out["subsystems"] == ["pipeline", "alerts", "diskguard", "webhooks", "api"] \
        and out["anchorpy"]
    assert out["dev"] == []
    assert not out["blocked"]   # the plugin is only held off while anchorpy initialises


def test_the_cli_loads_no_http_stack_for_commands_that_send_nothing(tmp_path: Path) -> None:
    """Every command builds the whole argument parser, webhooks' included: aiohttp (about
    11 MB and 0.1 s on a Pi-class board) must wait for a command that makes a request."""
    code = textwrap.dedent("""\
        import sys
        from gridnode.cli import main
        status = main(sys.argv[1:])
        print("aiohttp" in sys.modules, file=sys.stderr)
        """)
    for argv in (["version"], ["webhooks", "list", "--db", str(tmp_path / "g.db")]):
        r = subprocess.run([sys.executable, "-c", code, *argv], cwd=REPO, capture_output=True,
                           text=True, timeout=60)
        assert r.stderr.strip().splitlines()[-1] == "False", (argv, r.stdout, r.stderr)
