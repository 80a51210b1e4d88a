"""The daemon: open the store, start the subsystems, report readiness, stop gracefully.

A subsystem is any object with ``name``, ``async run()`` (runs until cancelled; cancellation
must let in-flight writes finish) and ``progress()`` (monotonic time of its last real progress).
Each runs in its own task under the daemon: one crashing stops the node with exit status 1 so
systemd restarts it, rather than a node running with half its parts dead. Stopping is bounded:
subsystems get ``SHUTDOWN_GRACE_S`` to finish what is in flight, then a second cancellation and
``SHUTDOWN_HARD_S`` more; one that still runs is left behind and the process exits (status 1)
with a line naming it, well before systemd's TimeoutStopSec would kill it without a word.

The store must be writable before the node says READY: a read-only database (file, directory or
filesystem) is an installation problem, exit status 2, which systemd does not retry. A full disk
is not: the subsystems wait it out.

The watchdog task pings systemd only while the node really works: the event loop is not lagging,
the store's writer can take the database lock and its reader can read, and every subsystem has
made progress within ``node.stall_timeout_s``.
"""

from __future__ import annotations

import asyncio
import datetime
import fcntl
import logging
import os
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol, runtime_checkable

from solders.keypair import Keypair

from gridnode.alerts import AlertsSubsystem
from gridnode.chain.signers import Signers
from gridnode.chain.txtypes import DETAILS_EXPIRE
from gridnode.config import ConfigError, ConfigIssue, GridnodeConfig
from gridnode.config.machine import check_machine
from gridnode.keys import load_configured_keypairs
from gridnode.log import get_logger
from gridnode.meters.service import MetersSubsystem
from gridnode.outbox.pipeline import Pipeline
from gridnode.store import Store, StoreError, StoreReadOnly, operations, retention
from gridnode.systemd import Notifier

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]

log = get_logger(__name__)

SHUTDOWN_GRACE_S = 10.0     # to finish in-flight work after the stop (TimeoutStopSec is 30)
SHUTDOWN_HARD_S = 5.0       # after the second cancellation, before exiting without them
STORE_CLOSE_S = 2.0         # closing the store when a subsystem was left behind
HEALTH_INTERVAL_S = 30.0     # without a systemd watchdog, how often health is checked
RETENTION_FIRST_RUN_S = 60.0  # the first purge, after the start's own work
WARN_EVERY_S = 600.0         # repeat an unhealthy warning at most this often (SD-card wear)


@runtime_checkable
class Subsystem(Protocol):
    name: str

    async def run(self) -> None: ...

    def progress(self) -> float: ...


class DaemonError(Exception):
    """The daemon could not start (another one holds the data directory); exit status 1."""


def build_subsystems(config: GridnodeConfig, store: Store,
                     keys: Keypair | None) -> list[Subsystem]:
    """Every subsystem the configuration asks for; each feature adds its line here.

    Building must not start anything or talk to the outside (that is what ``run`` is for):
    ``gridnode check-config`` builds the subsystems against a throwaway store to report, as
    ConfigError, what only a subsystem can judge (a meter profile that does not exist). The
    ConfigError lists what every subsystem refused, not only the first one's.
    """
    subsystems: list[Subsystem] = []
    issues: list[ConfigIssue] = []
    builders: list[Callable[[], Subsystem]] = []
    if config.meters.buses or (config.meters.mqtt and config.meters.mqtt.meters):
        builders.append(lambda: MetersSubsystem.from_config(config, store, file=config.source))
    if config.chain is not None and keys is not None:
        builders.append(lambda: _pipeline(config, store, keys))
    if config.market is not None and config.market.enabled:    # after the pipeline it uses
        from gridnode.market.service import MarketSubsystem
        builders.append(lambda: MarketSubsystem.from_config(config, store, subsystems))
    if config.alerts.enabled:   # whether or not the API runs; it reads what the others do
        builders.append(lambda: AlertsSubsystem(config.alerts, store, subsystems))
    if config.storage.min_free_mb > 0:
        from gridnode.store.diskguard import DiskGuard
        builders.append(lambda: DiskGuard(config.storage, store, subsystems))
    if config.upstream is not None:     # one engine for every delivery destination
        from gridnode.deliveries import DeliveriesSubsystem
        builders.append(lambda: DeliveriesSubsystem.from_config(config, store))
    if config.publish.mqtt.enabled:
        from gridnode.deliveries.homeassistant import HomeAssistant
        builders.append(lambda: HomeAssistant.from_config(config, store, subsystems))
    if config.webhooks.enabled:     # registrations come and go at run time (API, CLI)
        from gridnode.deliveries.webhooks import WebhooksSubsystem
        builders.append(lambda: WebhooksSubsystem.from_config(config, store))
    if config.api.enabled:      # built last: it serves what the others do
        from gridnode.api import ApiServer
        builders.append(lambda: ApiServer.from_config(config, store, subsystems))
    for build in builders:
        try:
            subsystems.append(build())
        except ConfigError as exc:
            issues += exc.errors
    if issues:
        raise ConfigError(issues)
    return subsystems


def _pipeline(config: GridnodeConfig, store: Store, gateway: Keypair) -> Pipeline:
    """The pipeline with every signing key the configuration names; ConfigError lists each key
    file that cannot be used together with what the pipeline itself refuses (IDLs)."""
    chain = config.chain
    assert chain is not None
    issues: list[ConfigIssue] = []
    authority, users = None, []
    named = [("chain.authority_keypair", chain.authority_keypair)] if chain.authority_keypair \
        else []
    named += chain.user_keypair_files()
    if config.market is not None:       # the market users whose own key the node holds
        named += config.market.user_keypair_files()
    try:
        keypairs = load_configured_keypairs(config.source, named)
        authority = keypairs.pop(0) if chain.authority_keypair else None
        users = keypairs
    except ConfigError as exc:
        issues += exc.errors      # the pipeline is still built (without them) to judge the rest
    try:
        pipeline = Pipeline(store, chain, config.outbox, Signers.of(gateway, authority, users),
                            source=config.source)
    except ConfigError as exc:
        issues += exc.errors
    if issues:
        raise ConfigError(issues)
    return pipeline


async def check_config(config: GridnodeConfig) -> list[ConfigIssue]:
    """What ``run`` would refuse in a configuration that validates: the machine (data directory,
    TLS files, bus names), key files, and what the subsystems judge (profiles, IDLs)."""
    issues = check_machine(config, resolve=True)
    keys = None
    path = config.keys.gateway_keypair_path()
    # A keypair not created yet is for the installer's next step, not a configuration error.
    if config.chain is not None and path is not None and path.exists():
        try:
            keys = _gateway_keypair(config)
        except ConfigError as exc:
            issues += exc.errors
    with tempfile.TemporaryDirectory(prefix="gridnode-check-") as tmp:
        store = await Store.open(Path(tmp) / "check.db")
        try:
            build_subsystems(config, store, keys or Keypair())
        except ConfigError as exc:
            issues += exc.errors
        finally:
            await store.close()
    return issues


def load_gateway_keys(config: GridnodeConfig) -> Keypair | None:
    """The gateway keypair when a chain is configured (it is only needed to sign).

    Raises ConfigError when it is missing or unusable: a configuration error (exit status 2,
    which systemd does not retry), not a runtime failure.
    """
    if config.chain is None:
        return None
    keypair = _gateway_keypair(config)
    log.info("gateway keypair loaded", pubkey=str(keypair.pubkey()),
             path=str(config.keys.gateway_keypair_path()))
    return keypair


def _gateway_keypair(config: GridnodeConfig) -> Keypair:
    path = config.keys.gateway_keypair_path()
    if path is None:
        raise ConfigError([ConfigIssue(
            config.source, "keys.gateway_keypair", "<missing>",
            f"a keypair file, since [chain] is configured (or the systemd credential "
            f"'{config.keys.credential}'; gridnode keygen PATH makes one)")])
    key = "keys.gateway_keypair" if path == config.keys.gateway_keypair else "keys.credential"
    return load_configured_keypairs(config.source, [(key, path)])[0]


class Daemon:
    def __init__(self, config: GridnodeConfig, notifier: Notifier | None = None) -> None:
        self.config = config
        self.notifier = notifier or Notifier()
        self.stop_requested = asyncio.Event()
        self.healthy = True
        self.abandoned: list[str] = []      # subsystems still running when the daemon gave up
        self._lag_s = 0.0

    def request_stop(self, reason: str) -> None:
        if not self.stop_requested.is_set():
            log.info("stop requested", reason=reason)
            self.stop_requested.set()

    async def run(self) -> int:
        """Run until a stop is requested (0), a subsystem fails (1) or the config is unusable (2)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
        try:
            return await self._run()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            self.notifier.close()

    async def _run(self) -> int:
        lock = None
        try:
            lock = _lock_data_dir(self.config.node.data_dir)
            keys = load_gateway_keys(self.config)
            store = await Store.open(self.config.node.database)
        except Exception as exc:
            log.error("cannot start", error=str(exc))
            self.notifier.stopping(f"cannot start: {exc}")
            if lock is not None:
                lock.close()
            return 2 if isinstance(exc, ConfigError | StoreReadOnly) else 1
        assert lock is not None
        try:
            for mig in store.applied_now:
                log.info("migration applied", version=mig.version, name=mig.name)
            try:
                await store.check_writable()
            except StoreReadOnly as exc:
                log.error("cannot start: the database cannot be written", error=str(exc),
                          database=str(self.config.node.database))
                self.notifier.stopping(f"cannot start: {exc}")
                return 2
            try:
                subsystems = build_subsystems(self.config, store, keys)
            except ConfigError as exc:
                for issue in exc.errors:
                    log.error("configuration error", issue=str(issue))
                self.notifier.stopping("configuration error")
                return 2
            return await self._supervise(store, subsystems)
        finally:
            if not self.abandoned:
                await store.close()
            else:       # a subsystem left behind may hold the writer; SQLite survives an exit
                try:
                    async with asyncio.timeout(STORE_CLOSE_S):
                        await store.close()
                except TimeoutError:
                    log.error("store not closed: a subsystem left behind holds it")
            lock.close()
            log.info("stopped")

    async def _supervise(self, store: Store, subsystems: Sequence[Subsystem]) -> int:
        names = ", ".join(s.name for s in subsystems) or "none"
        tasks = [asyncio.create_task(_run_subsystem(s), name=s.name) for s in subsystems]
        tasks.append(asyncio.create_task(self._watchdog(store, subsystems), name="watchdog"))
        if await _started(subsystems, tasks):
            log.info("ready", node_id=self.config.node.id,
                     database=str(self.config.node.database), subsystems=names)
            self.notifier.ready(f"running: subsystems {names}")
        stop = asyncio.create_task(self.stop_requested.wait(), name="stop")
        scheduler = _scheduler(self.config, store)
        scheduler.start()
        try:
            await asyncio.wait([stop, *tasks], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            scheduler.shutdown(wait=False)
            # a subsystem only ends by failing (it runs until cancelled)
            crashed = any(t.done() for t in tasks)
            self.notifier.stopping("a subsystem failed" if crashed else "stopping")
            await self._stop(tasks)
        failed = False
        for task in tasks:
            exc = task.exception() if task.done() and not task.cancelled() else None
            if exc is not None:
                log.exception("subsystem failed", exc_info=exc, subsystem=task.get_name())
                failed = True
        return 1 if failed or self.abandoned else 0

    async def _stop(self, tasks: list[asyncio.Task[None]]) -> None:
        """Cancel `tasks`, give them the grace period, cancel again, then leave them behind."""
        running = [t for t in tasks if not t.done()]
        for task in running:
            task.cancel()
        if running:
            _, pending = await asyncio.wait(running, timeout=SHUTDOWN_GRACE_S)
            if pending:
                log.error("subsystems still stopping after the grace period; cancelling again",
                          subsystems=",".join(t.get_name() for t in pending),
                          grace_s=SHUTDOWN_GRACE_S)
                for task in pending:
                    task.cancel()
                _, pending = await asyncio.wait(pending, timeout=SHUTDOWN_HARD_S)
            if pending:
                self.abandoned = sorted(t.get_name() for t in pending)
                log.critical("subsystems did not stop: exiting without them",
                             subsystems=",".join(self.abandoned),
                             waited_s=SHUTDOWN_GRACE_S + SHUTDOWN_HARD_S)

    async def _watchdog(self, store: Store, subsystems: Sequence[Subsystem]) -> None:
        wd = self.notifier.watchdog_s
        interval = wd / 3 if wd else HEALTH_INTERVAL_S
        stall = self.config.node.stall_timeout_s
        loop = asyncio.get_running_loop()
        shown, warned_at = "", -WARN_EVERY_S
        summary_every = self.config.logging.summary_every_s
        summarized = loop.time()
        while True:
            problems = await self._health(store, subsystems, stall, limit_s=interval)
            if problems:
                status = "unhealthy: " + "; ".join(problems)
                if self.healthy or loop.time() - warned_at >= WARN_EVERY_S:
                    log.warning("unhealthy, withholding watchdog pings",
                                problems="; ".join(problems))
                    warned_at = loop.time()
            else:
                if wd:
                    self.notifier.watchdog()
                if not self.healthy:
                    log.info("healthy")
                status = await _status_line(store)
            self.healthy = not problems
            if status != shown:      # systemctl status shows the latest
                self.notifier.status(status)
                shown = status
            if summary_every and loop.time() - summarized >= summary_every:
                summarized = loop.time()
                await _summary(store, subsystems, self.healthy)
            started = loop.time()
            await asyncio.sleep(interval)
            self._lag_s = loop.time() - started - interval

    async def _health(self, store: Store, subsystems: Sequence[Subsystem], stall: float,
                      limit_s: float) -> list[str]:
        problems: list[str] = []
        if self._lag_s > max(1.0, limit_s / 2):
            problems.append(f"event loop lagged {self._lag_s:.1f}s")
        started = time.monotonic()
        try:
            async with asyncio.timeout(limit_s):
                await store.probe()
        except TimeoutError:
            problems.append(f"store did not answer within {limit_s:.1f}s")
        except Exception as exc:
            problems.append(f"store probe failed: {exc}")
        now = time.monotonic()
        for s in subsystems:
            idle = now - s.progress()
            if idle > stall:
                problems.append(f"{s.name} made no progress for {idle:.0f}s")
        if now - started > limit_s:
            problems.append("event loop too slow")
        return problems


def _lock_data_dir(data_dir: Path) -> IO[str]:
    """Hold an exclusive lock on the data directory for the life of the daemon.

    Two daemons on one data directory would poll the same buses and sign the same operations;
    the second one is refused. The kernel drops the lock when the process dies, so a crash never
    leaves a stale lock behind.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    f = open(data_dir / "gridnode.lock", "a+")  # noqa: SIM115 - held until the daemon stops
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "unknown"
        f.close()
        raise DaemonError(f"another gridnode (pid {holder}) is running on {data_dir}") from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


async def _status_line(store: Store) -> str:
    """``running; operations pending=3 finalized=120`` for systemd's STATUS."""
    try:
        counts = await operations.status_counts(store)
    except Exception as exc:        # a status line is not worth stopping the watchdog for
        return f"running; operations unknown ({exc})"
    return "running; operations " + (" ".join(f"{k}={n}" for k, n in counts.items()) or "none")


def _scheduler(config: GridnodeConfig, store: Store) -> AsyncIOScheduler:
    """The daemon's one scheduler of periodic jobs (interval-scheduled, a late run still runs,
    missed runs coalesce into one, never two at once)."""
    from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]

    if "apscheduler" not in config.logging.levels:     # its per-run lines are not news
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
    sched = AsyncIOScheduler(timezone=datetime.UTC, job_defaults={
        "coalesce": True, "max_instances": 1, "misfire_grace_time": None})
    rc = config.retention

    async def raw(cutoff: int) -> LogLine | None:
        done = await retention.purge_raw(store, cutoff, rc.batch)
        return ("raw readings purged", {
            "deleted": done.deleted, "batches": done.batches, "freed_pages": done.freed_pages,
            "raw_days": rc.raw_days}) if done.deleted else None

    async def events(cutoff: int) -> LogLine | None:   # only what every destination has
        done = await retention.purge_events(store, cutoff, rc.batch)
        return ("events purged", {
            "events": done.events, "delivered_items": done.items,
            "freed_pages": done.freed_pages, "event_days": rc.event_days,
        }) if done.events or done.items else None

    async def details(cutoff: int) -> LogLine | None:  # oracle readings finalized long ago
        done = await retention.purge_details(store, cutoff, DETAILS_EXPIRE, rc.batch)
        return ("operation details purged", {
            "operations": done.operations, "audit_rows": done.audit_rows,
            "chain_events": done.chain_events, "transactions": done.transactions,
            "freed_pages": done.freed_pages, "detail_days": rc.detail_days,
        }) if done.operations else None

    for job_id, days, offset_s, run, failed in (
            ("retention-raw", rc.raw_days, 0, raw, "retention purge failed"),
            ("retention-events", rc.event_days, 5, events, "event purge failed"),
            ("retention-details", rc.detail_days, 10, details, "detail purge failed")):
        if days > 0:
            _schedule_purge(sched, job_id, days, rc.every_s, offset_s, run, failed)
    if config.reconciliation.enabled and config.chain is not None:
        from gridnode.settlement import reconciliation  # daily, and what was missed at start
        reconciliation.schedule(sched, config, store)
    return sched


LogLine = tuple[str, dict[str, Any]]     # an event and its fields


def _schedule_purge(sched: AsyncIOScheduler, job_id: str, days: float, every_s: float,
                    offset_s: float, run: Callable[[int], Awaitable[LogLine | None]],
                    failed: str) -> None:
    """One retention job: every `every_s`, `run` with the cutoff `days` back (Unix ms); its
    line at info when something went; a store error (a full disk, say) is a warning and the
    next run tries again. The first run comes after the start's own work, the jobs `offset_s`
    apart."""
    async def job() -> None:
        cutoff = int((time.time() - days * 86400) * 1000)
        try:
            line = await run(cutoff)
        except StoreError as exc:
            log.warning(failed, error=str(exc))
            return
        if line is not None:
            log.info(line[0], **line[1])

    sched.add_job(job, "interval", seconds=every_s, id=job_id,
                  next_run_time=datetime.datetime.now(datetime.UTC) + datetime.timedelta(
                      seconds=min(RETENTION_FIRST_RUN_S, every_s) + offset_s),
                  replace_existing=True)


async def _summary(store: Store, subsystems: Sequence[Subsystem], healthy: bool) -> None:
    """The periodic one-line summary at info: totals since start and what the chain looks like."""
    fields: dict[str, object] = {"healthy": healthy}
    for s in subsystems:
        if isinstance(s, MetersSubsystem):
            fields.update(readings=s.recorder.stored_readings,
                          intervals=s.recorder.closed_intervals,
                          storage_full=s.recorder.storage_full.active)
        elif isinstance(s, Pipeline):
            fields["rpc_healthy"] = sum(e.stats.healthy for e in s.pool.endpoints)
            fields["rpc_endpoints"] = len(s.pool.endpoints)
            fields["block_height"] = s.inflight.block_height
    try:
        fields.update(("ops_" + k, n) for k, n in (await operations.status_counts(store)).items())
    except Exception as exc:        # a summary is not worth stopping the watchdog for
        fields["operations"] = f"unknown ({exc})"
    log.info("summary", **fields)


async def _started(subsystems: Sequence[Subsystem], tasks: Sequence[asyncio.Task[None]]) -> bool:
    """Wait until each subsystem with a `started` event (one that serves others, the API) has
    set it; False when a subsystem ended first (it failed: the node is not ready)."""
    for s, task in zip(subsystems, tasks, strict=False):
        started = getattr(s, "started", None)
        if isinstance(started, asyncio.Event) and not started.is_set():
            waiter = asyncio.create_task(started.wait())
            await asyncio.wait([waiter, task], return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
    return not any(t.done() for t in tasks)


async def _run_subsystem(subsystem: Subsystem) -> None:
    log.info("subsystem starting", subsystem=subsystem.name)
    await subsystem.run()
    raise RuntimeError(f"subsystem {subsystem.name} returned; subsystems run until cancelled")


async def run(config: GridnodeConfig) -> int:
    """The daemon's exit status; exits the process at once if a subsystem was left behind (the
    event loop would otherwise wait for it forever when it closes)."""
    daemon = Daemon(config)
    status = await daemon.run()
    if daemon.abandoned:
        logging.shutdown()
        os._exit(status)
    return status
