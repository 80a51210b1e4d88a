"""Alert rules: the platform's (pending, confirmation time, failure rate, RPC health, settlement
queue) and the device's own (a stale meter, low disk space), with thresholds from `[alerts]`.

An alert is a state. `AlertsSubsystem` is a daemon subsystem of its own, so alerts are raised
whether or not the API runs: it checks every rule each `evaluate_every_s` against the store (and
the pipeline's RPC endpoints where there is a pipeline); a rule whose outcome changed is logged
once (a warning when raised, info when cleared), stored with its `alert.raised`/`alert.cleared`
event in one transaction, and from then on shown by /ready, GET /api/v1/alerts, /metrics,
`gridnode status` and the dashboard, which all read the stored state (`current`). A change the
store cannot take (a full disk) is kept in memory and stored at the next round, without a second
log line.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gridnode.config.alerts import AlertsConfig
from gridnode.log import get_logger
from gridnode.store import Store, StoreError, views
from gridnode.store import alerts as stored
from gridnode.store.alerts import Alert
from gridnode.store.db import _Reads

log = get_logger(__name__)

STALE_STATES = ("stale", "offline")


@dataclass(frozen=True)
class Outcome:
    """One rule's verdict this round."""

    raised: bool
    value: float | None
    threshold: float
    detail: str


Rule = Callable[["AlertsSubsystem"], Awaitable["Outcome | None"]]   # None: does not apply


class AlertsSubsystem:
    """Evaluates the rules in rounds; `unsaved` holds the changes the store has not taken yet."""

    name = "alerts"

    def __init__(self, config: AlertsConfig, store: Store, subsystems: Sequence[Any]) -> None:
        self.config = config
        self.store = store
        self.subsystems = subsystems        # the daemon's others: the pipeline's RPC health
        self.current: dict[str, Alert] = {}
        self.unsaved: dict[str, Alert] = {}
        self._round_started: float | None = None
        self._progress = time.monotonic()

    def progress(self) -> float:
        """Progressing while it waits between rounds; a round that never ends is a stall."""
        if self._round_started is None:
            self._progress = time.monotonic()
        return self._progress

    async def run(self) -> None:
        self.current = {a.name: a for a in await stored.all_alerts(self.store)}
        while True:
            self._round_started = self._progress = time.monotonic()
            await self.evaluate()
            self._round_started = None
            await asyncio.sleep(self.config.evaluate_every_s)

    async def evaluate(self) -> None:
        """One round: every rule, then the changes stored and logged."""
        now_ms = int(time.time() * 1000)
        for name, rule in RULES.items():
            outcome = await rule(self)
            if outcome is None:
                continue
            was = self.current.get(name)
            if outcome.raised == (was is not None and was.raised):
                continue
            alert = Alert(name, stored.RAISED if outcome.raised else stored.CLEARED,
                          outcome.value, outcome.threshold, outcome.detail,
                          now_ms if outcome.raised else (was.raised_at_ms if was else None),
                          now_ms)
            self.current[name] = alert
            self.unsaved[name] = alert
            if alert.raised:
                log.warning("alert raised", alert=name, value=outcome.value,
                            threshold=outcome.threshold, detail=outcome.detail)
            else:
                log.info("alert cleared", alert=name, value=outcome.value,
                         threshold=outcome.threshold, detail=outcome.detail)
        if self.unsaved:
            await self._store()

    async def _store(self) -> None:
        try:
            async with self.store.write() as tx:
                for a in self.unsaved.values():
                    await stored.change(tx, a.name, a.raised, value=a.value,
                                        threshold=a.threshold, detail=a.detail,
                                        at_ms=a.changed_at_ms)
        except StoreError as exc:       # a full disk: kept in memory, stored next round
            log.debug("alert changes not stored yet", error=str(exc))
        else:
            self.unsaved.clear()

    def _pipeline(self) -> Any | None:
        return next((s for s in self.subsystems if getattr(s, "name", None) == "pipeline"), None)

    # -- the rules ------------------------------------------------------------------------

    async def _pending(self) -> Outcome:
        depth = await views.status_counts(self.store)
        n = sum(depth.get(s, 0) for s in views.WAITING)
        limit = self.config.pending_max
        return Outcome(n > limit, n, limit, f"{n} operations wait for the chain (limit {limit})")

    async def _confirmation(self) -> Outcome:
        since = int((time.time() - self.config.window_s) * 1000)
        n, avg = await views.recent_confirmations(self.store, since)
        limit = self.config.confirmation_max_s
        return Outcome(avg is not None and avg > limit, None if avg is None else round(avg, 3),
                       limit, f"average confirmation {avg or 0:.1f} s over {n} operations in the "
                       f"last {self.config.window_s:g} s (limit {limit:g} s)")

    async def _failure_rate(self) -> Outcome:
        since = int((time.time() - self.config.window_s) * 1000)
        ended, bad = await views.recent_endings(self.store, since)
        rate = bad / ended if ended else 0.0
        limit = self.config.failure_rate_max
        return Outcome(ended >= self.config.failure_min_finished and rate > limit,
                       round(rate, 4), limit, f"{bad} of {ended} operations ended failed, "
                       f"expired or parked in the last {self.config.window_s:g} s "
                       f"(limit {limit:.0%})")

    async def _rpc_down(self) -> Outcome | None:
        pipeline = self._pipeline()
        if pipeline is None:
            return None
        eps = pipeline.pool.endpoints
        now = time.monotonic()
        down = [now - e.unhealthy_since for e in eps
                if not e.stats.healthy and e.unhealthy_since is not None]
        all_down = len(down) == len(eps)
        for_s = min(down) if all_down else 0.0
        limit = self.config.rpc_down_s
        if all_down:
            detail = (f"no RPC endpoint healthy for {for_s:.0f} s (limit {limit:g} s): "
                      + "; ".join(f"{e.url}: {e.stats.last_error or 'unhealthy'}" for e in eps))
        else:
            detail = f"{len(eps) - len(down)} of {len(eps)} RPC endpoints healthy"
        return Outcome(all_down and for_s >= limit, round(for_s, 1), limit, detail)

    async def _settlement_queue(self) -> Outcome:
        n = await views.settlement_queue(self.store)
        limit = self.config.settlement_queue_max
        return Outcome(n > limit, n, limit, f"{n} settlements queued (limit {limit})")

    async def _meter_stale(self) -> Outcome:
        now_ms = time.time() * 1000
        limit = self.config.meter_stale_s
        stale = [m.meter_id for m in await views.meters(self.store)
                 if m.state in STALE_STATES or (m.read_at_ms is not None
                                                and now_ms - m.read_at_ms > limit * 1000)]
        return Outcome(bool(stale), len(stale), limit,
                       f"no recent reading from {', '.join(stale)} (limit {limit:g} s)" if stale
                       else "every meter reports")

    async def _disk_low(self) -> Outcome:
        free = (await asyncio.to_thread(shutil.disk_usage, self.store.path.parent)).free
        limit = self.config.disk_free_min_bytes
        return Outcome(free < limit, free, limit,
                       f"{free / 2**20:.0f} MiB free where the database is (limit "
                       f"{limit / 2**20:.0f} MiB)")


RULES: dict[str, Rule] = {
    "pending": AlertsSubsystem._pending, "confirmation_time": AlertsSubsystem._confirmation,
    "failure_rate": AlertsSubsystem._failure_rate, "rpc_down": AlertsSubsystem._rpc_down,
    "settlement_queue": AlertsSubsystem._settlement_queue,
    "meter_stale": AlertsSubsystem._meter_stale, "disk_low": AlertsSubsystem._disk_low}


async def current(db: _Reads, subsystems: Sequence[Any]) -> list[Alert]:
    """Every alert ever raised with its state now, by name: the stored rows, and a change the
    store has not taken yet (a full disk) from the alerts subsystem, since it is still news."""
    by_name = {a.name: a for a in await stored.all_alerts(db)}
    for s in subsystems:
        if isinstance(s, AlertsSubsystem):
            by_name |= s.unsaved
    return sorted(by_name.values(), key=lambda a: a.name)
