"""The daemon under a real notify socket: readiness, watchdog tied to progress, clean stops."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gridnode import daemon
from gridnode.config import ConfigError, parse_config
from gridnode.store import Store
from gridnode.systemd import Notifier
from tests.store.nobody import as_nobody

REPO = Path(__file__).resolve().parents[1]


class NotifySocket:
    """A datagram socket standing where systemd's notify socket would be."""

    def __init__(self, address: str | bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.1)
        self.messages: list[str] = []

    def wait_for(self, field: str, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
            if field in self.messages[-1].split("\n"):
                return self.messages
        raise AssertionError(f"no {field} within {timeout}s; got {self.messages}")

    def drain(self) -> list[str]:
        self.sock.settimeout(0)
        try:
            while True:
                self.messages.append(self.sock.recv(4096).decode())
        except BlockingIOError:
            pass
        self.sock.settimeout(0.1)
        return self.messages


@pytest.fixture(params=["path", "abstract"])
def notify(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, NotifySocket]]:
    if request.param == "path":
        env_value = str(tmp_path / "notify.sock")
        sock = NotifySocket(env_value)
    else:
        name = f"gridnode-test-{os.getpid()}-{time.monotonic_ns()}"
        env_value = "@" + name
        sock = NotifySocket(b"\0" + name.encode())
    yield env_value, sock
    sock.sock.close()


def _config(tmp_path: Path, extra: str = "") -> Path:
    cfg = tmp_path / "gridnode.toml"
    cfg.write_text(f'[api]\nenabled = false\n[node]\ndata_dir = "{tmp_path / "state"}"\n{extra}')
    return cfg


def test_run_reports_ready_pings_watchdog_and_stops_on_sigterm(
        tmp_path: Path, notify: tuple[str, NotifySocket]) -> None:
    address, sock = notify
    env = {**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "600000"}
    proc = subprocess.Popen([sys.executable, "-m", "gridnode", "run", "-c",
                             str(_config(tmp_path))], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        sock.wait_for("READY=1", timeout=30)
        sock.wait_for("WATCHDOG=1", timeout=5)
        sock.wait_for("STATUS=running; operations none", timeout=5)
        assert (tmp_path / "state" / "gridnode.db").exists()
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        sock.wait_for("STOPPING=1", timeout=5)
        assert proc.wait(timeout=5) == 0
        assert time.monotonic() - sent < 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _, err = proc.communicate()
    assert "event=ready" in err and 'event="stop requested" reason=SIGTERM' in err
    ready = next(i for i, m in enumerate(sock.messages) if "READY=1" in m)
    stopping = next(i for i, m in enumerate(sock.messages) if "STOPPING=1" in m)
    assert ready < stopping


def test_outside_systemd_notifier_is_a_no_op() -> None:
    assert Notifier({}).ready("x") is False
    assert Notifier({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1000000",
                     "WATCHDOG_PID": "1"}).watchdog_s is None      # meant for another process
    assert Notifier({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1000000"}).watchdog_s == 1.0


class SlowWriter:
    """Writes one operation per loop; each write takes a while and must survive cancellation."""

    name = "slow-writer"

    def __init__(self, store: Store) -> None:
        self.store = store
        self.started = asyncio.Event()
        self.n = 0
        self._progress = time.monotonic()

    def progress(self) -> float:
        return self._progress

    async def _write_one(self) -> None:
        async with self.store.write() as tx:
            self.n += 1
            await tx.add_operation("meter_reading", {"n": self.n}, f"k{self.n}")
            self.started.set()
            await asyncio.sleep(0.3)
        self._progress = time.monotonic()

    async def run(self) -> None:
        while True:
            await asyncio.shield(self._write_one())


class Stuck:
    """Never makes progress (to withhold watchdog pings) and never ends by itself."""

    name = "stuck"

    def progress(self) -> float:
        return time.monotonic() - 3600

    async def run(self) -> None:
        await asyncio.Event().wait()


class Crashing:
    name = "crashing"

    def progress(self) -> float:
        return time.monotonic()

    async def run(self) -> None:
        await asyncio.sleep(0.05)
        raise ValueError("meter bus exploded")


async def test_stop_drains_the_write_in_flight(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               notify: tuple[str, NotifySocket]) -> None:
    address, sock = notify
    writers: list[SlowWriter] = []
    built = asyncio.Event()

    def build(config, store, keys):  # noqa: ANN001 - same signature as the real one
        writers.append(SlowWriter(store))
        built.set()
        return writers

    monkeypatch.setattr(daemon, "build_subsystems", build)
    node = daemon.Daemon(parse_config(_config(tmp_path).read_text()),
                         Notifier({"NOTIFY_SOCKET": address}))
    task = asyncio.create_task(node.run())
    await built.wait()
    await writers[0].started.wait()
    node.request_stop("test")
    assert await asyncio.wait_for(task, 10) == 0
    store = await Store.open(tmp_path / "state" / "gridnode.db")
    rows = await store.fetchall("SELECT idempotency_key FROM operations ORDER BY id")
    await store.close()
    assert [r[0] for r in rows] == [f"k{i}" for i in range(1, writers[0].n + 1)]
    assert writers[0].n >= 1
    messages = sock.drain()
    assert any("READY=1" in m for m in messages) and any("STOPPING=1" in m for m in messages)


async def test_watchdog_is_withheld_while_a_subsystem_is_stalled(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, notify: tuple[str, NotifySocket]) -> None:
    address, sock = notify
    monkeypatch.setattr(daemon, "build_subsystems", lambda c, s, k: [Stuck()])
    node = daemon.Daemon(parse_config(_config(tmp_path, "stall_timeout_s = 60\n").read_text()),
                         Notifier({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "300000"}))
    task = asyncio.create_task(node.run())
    await asyncio.sleep(0.6)           # six watchdog periods
    node.request_stop("test")
    assert await asyncio.wait_for(task, 10) == 0
    messages = sock.drain()
    assert not any("WATCHDOG=1" in m for m in messages)
    assert any("unhealthy: stuck made no progress" in m for m in messages)
    assert not any("STATUS=running;" in m for m in messages)


async def test_a_crashing_subsystem_stops_the_node_with_status_1(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, notify: tuple[str, NotifySocket]) -> None:
    address, sock = notify
    monkeypatch.setattr(daemon, "build_subsystems", lambda c, s, k: [Crashing(), Stuck()])
    node = daemon.Daemon(parse_config(_config(tmp_path).read_text()),
                         Notifier({"NOTIFY_SOCKET": address}))
    assert await asyncio.wait_for(node.run(), 10) == 1
    assert any("STOPPING=1" in m for m in sock.drain())


async def test_chain_without_a_usable_keypair_refuses_to_start(tmp_path: Path) -> None:
    key = tmp_path / "gw.json"
    key.write_text("[]")
    key.chmod(0o644)
    cfg = parse_config(_config(tmp_path, f'[keys]\ngateway_keypair = "{key}"\n'
                                         '[chain]\nrpc_urls = ["http://127.0.0.1:1"]\n').read_text())
    with pytest.raises(ConfigError, match="chmod 600"):
        daemon.load_gateway_keys(cfg)
    # A configuration error, like every other: exit status 2, which systemd does not retry.
    assert await daemon.Daemon(cfg, Notifier({})).run() == 2


async def test_a_config_error_found_while_building_subsystems_exits_2(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, notify: tuple[str, NotifySocket]) -> None:
    from gridnode.config import ConfigError, ConfigIssue

    address, sock = notify

    def build(config, store, keys):  # noqa: ANN001 - same signature as the real one
        raise ConfigError([ConfigIssue("x.toml", "meters.buses[0].meters[0].profile", "'nope'",
                                       "a known profile")])

    monkeypatch.setattr(daemon, "build_subsystems", build)
    node = daemon.Daemon(parse_config(_config(tmp_path).read_text()),
                         Notifier({"NOTIFY_SOCKET": address}))
    assert await asyncio.wait_for(node.run(), 10) == 2
    messages = sock.drain()
    assert any("STOPPING=1" in m for m in messages)
    assert not any("READY=1" in m for m in messages)


async def test_a_second_daemon_on_the_same_data_dir_is_refused(
        tmp_path: Path, notify: tuple[str, NotifySocket]) -> None:
    address, sock = notify
    cfg = parse_config(_config(tmp_path).read_text())
    first = daemon.Daemon(cfg, Notifier({"NOTIFY_SOCKET": address}))
    task = asyncio.create_task(first.run())
    await asyncio.to_thread(sock.wait_for, "READY=1", 10)
    second = daemon.Daemon(cfg, Notifier({}))
    assert await asyncio.wait_for(second.run(), 10) == 1
    first.request_stop("test")
    assert await asyncio.wait_for(task, 10) == 0
    # The lock goes with the daemon that held it.
    third = daemon.Daemon(cfg, Notifier({}))
    third_task = asyncio.create_task(third.run())
    await asyncio.sleep(0.3)
    third.request_stop("test")
    assert await asyncio.wait_for(third_task, 10) == 0


class Stubborn:
    """Swallows cancellation (a bug a real subsystem could have) until the test lets it go."""

    name = "stubborn"

    def __init__(self) -> None:
        self.released = asyncio.Event()
        self.cancellations = 0

    def progress(self) -> float:
        return time.monotonic()

    async def run(self) -> None:
        while not self.released.is_set():
            try:
                await self.released.wait()
            except asyncio.CancelledError:
                self.cancellations += 1
        await asyncio.Event().wait()      # released: the next cancellation ends it


async def test_a_subsystem_that_refuses_to_stop_is_left_behind_after_the_grace(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        notify: tuple[str, NotifySocket]) -> None:
    address, sock = notify
    stubborn = Stubborn()
    monkeypatch.setattr(daemon, "build_subsystems", lambda c, s, k: [stubborn])
    monkeypatch.setattr(daemon, "SHUTDOWN_GRACE_S", 0.4)
    monkeypatch.setattr(daemon, "SHUTDOWN_HARD_S", 0.3)
    node = daemon.Daemon(parse_config(_config(tmp_path).read_text()),
                         Notifier({"NOTIFY_SOCKET": address}))
    task = asyncio.create_task(node.run())
    await asyncio.to_thread(sock.wait_for, "READY=1", 10)
    started = time.monotonic()
    node.request_stop("test")
    assert await asyncio.wait_for(task, 10) == 1
    took = time.monotonic() - started
    assert 0.7 <= took < 5, took
    assert node.abandoned == ["stubborn"] and stubborn.cancellations == 2
    messages = [r.getMessage() for r in caplog.records if r.name == "gridnode.daemon"]
    assert "subsystems still stopping after the grace period; cancelling again" in messages
    assert "subsystems did not stop: exiting without them" in messages
    stubborn.released.set()               # let the test's event loop close
    await asyncio.sleep(0.05)


def test_the_process_exits_when_a_subsystem_never_stops(tmp_path: Path) -> None:
    """The real entry point under SIGTERM: a subsystem that ignores every cancellation costs the
    grace period and the hard limit, then the process exits with status 1 and says why."""
    script = f"""
import asyncio, sys
from gridnode import cli, daemon

class Deaf:
    name = "deaf"
    def progress(self):
        return 0.0
    async def run(self):
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass

daemon.SHUTDOWN_GRACE_S = 0.5
daemon.SHUTDOWN_HARD_S = 0.5
daemon.build_subsystems = lambda config, store, keys: [Deaf()]
sys.exit(cli.main(["run", "-c", {str(_config(tmp_path))!r}]))
"""
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "event=ready" in line:
                break
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, out
    assert 1.0 <= took < 8, took
    assert 'event="subsystems did not stop: exiting without them" subsystems=deaf' in out, out


def test_a_read_only_database_is_refused_before_ready_with_status_2() -> None:
    prefix = as_nobody()
    name = f"gridnode-test-{os.getpid()}-{time.monotonic_ns()}"
    sock = NotifySocket(b"\0" + name.encode())
    home = Path(tempfile.mkdtemp(prefix="gridnode-ro-"))   # not under pytest's private tmp
    try:
        cfg = _config(home)
        db = home / "state" / "gridnode.db"

        async def create() -> None:
            await (await Store.open(db)).close()

        asyncio.run(create())
        for p in [home, *home.rglob("*")]:
            p.chmod(0o777 if p.is_dir() else 0o644)
        db.chmod(0o444)
        env = {**os.environ, "NOTIFY_SOCKET": "@" + name}
        out = subprocess.run([*prefix, sys.executable, "-m", "gridnode", "run", "-c", str(cfg)],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 2, out.stderr
        assert 'event="cannot start: the database cannot be written"' in out.stderr, out.stderr
        assert "attempt to write a readonly database" in out.stderr
        assert "event=ready" not in out.stderr
        messages = sock.drain()
        assert any("STOPPING=1" in m for m in messages)
        assert not any("READY=1" in m for m in messages)
    finally:
        sock.sock.close()
        shutil.rmtree(home, ignore_errors=True)
