"""Alert rules: the platform's (pending, confirmation time, failure rate, RPC health, settlement
queue) and the device's own (a stale meter, low disk space), with thresholds from `[alerts]`.

An alert is a state. `AlertEvaluator` checks every rule each `evaluate_every_s`; a rule whose
outcome changed is logged once (a warning when raised, info when cleared), stored with its
`alert.raised`/`alert.cleared` event in one transaction, and from then on shown by /ready,
GET /api/v1/alerts, /metrics, `gridnode status` and the dashboard. A change the store cannot
take (a full disk) is kept in memory and stored at the next round, without a second log line.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gridnode.api.models import AlertInfo, AlertList, iso
from gridnode.log import get_logger
from gridnode.store import StoreError, views
from gridnode.store import alerts as stored
from gridnode.store.alerts import Alert

if TYPE_CHECKING:
    from gridnode.api.server import ApiContext, Call, Reply

log = get_logger(__name__)

STALE_STATES = ("stale", "offline")


@dataclass(frozen=True)
class Outcome:
    """One rule's verdict this round."""

    raised: bool
    value: float | None
    threshold: float
    detail: str


Rule = Callable[["AlertEvaluator"], Awaitable["Outcome | None"]]   # None: does not apply


class AlertEvaluator:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self.config = ctx.config.alerts
        self.current: dict[str, Alert] = {}
        self._unsaved: dict[str, Alert] = {}
        self.rules: dict[str, Rule] = {
            "pending": AlertEvaluator._pending, "confirmation_time":
            AlertEvaluator._confirmation, "failure_rate": AlertEvaluator._failure_rate,
            "rpc_down": AlertEvaluator._rpc_down,
            "settlement_queue": AlertEvaluator._settlement_queue,
            "meter_stale": AlertEvaluator._meter_stale, "disk_low": AlertEvaluator._disk_low}

    def states(self) -> dict[str, bool]:
        """Every rule, raised or not (for /metrics)."""
        return {name: name in self.current and self.current[name].raised for name in self.rules}

    def active(self) -> list[Alert]:
        return [a for _, a in sorted(self.current.items()) if a.raised]

    async def run(self) -> None:
        self.current = {a.name: a for a in await stored.all_alerts(self.ctx.db)}
        if not self.config.enabled:
            return
        while True:
            await self.evaluate()
            await asyncio.sleep(self.config.evaluate_every_s)

    async def evaluate(self) -> None:
        """One round: every rule, then the changes stored and logged."""
        now_ms = int(time.time() * 1000)
        changes: list[Alert] = []
        for name, rule in self.rules.items():
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
            self._unsaved[name] = alert
            changes.append(alert)
            if alert.raised:
                log.warning("alert raised", alert=name, value=outcome.value,
                            threshold=outcome.threshold, detail=outcome.detail)
            else:
                log.info("alert cleared", alert=name, value=outcome.value,
                         threshold=outcome.threshold, detail=outcome.detail)
        if self._unsaved:
            await self._store()

    async def _store(self) -> None:
        try:
            async with self.ctx.store.write() as tx:
                for a in self._unsaved.values():
                    await stored.change(tx, a.name, a.raised, value=a.value,
                                        threshold=a.threshold, detail=a.detail,
                                        at_ms=a.changed_at_ms)
        except StoreError as exc:       # a full disk: kept in memory, stored next round
            log.debug("alert changes not stored yet", error=str(exc))
        else:
            self._unsaved.clear()

    # -- the rules ------------------------------------------------------------------------

    async def _pending(self) -> Outcome:
        depth = await views.status_counts(self.ctx.db)
        n = sum(depth.get(s, 0) for s in views.WAITING)
        limit = self.config.pending_max
        return Outcome(n > limit, n, limit, f"{n} operations wait for the chain (limit {limit})")

    async def _confirmation(self) -> Outcome:
        since = int((time.time() - self.config.window_s) * 1000)
        n, avg = await views.recent_confirmations(self.ctx.db, since)
        limit = self.config.confirmation_max_s
        return Outcome(avg is not None and avg > limit, None if avg is None else round(avg, 3),
                       limit, f"average confirmation {avg or 0:.1f} s over {n} operations in the "
                       f"last {self.config.window_s:g} s (limit {limit:g} s)")

    async def _failure_rate(self) -> Outcome:
        since = int((time.time() - self.config.window_s) * 1000)
        ended, bad = await views.recent_endings(self.ctx.db, since)
        rate = bad / ended if ended else 0.0
        limit = self.config.failure_rate_max
        return Outcome(ended >= self.config.failure_min_finished and rate > limit,
                       round(rate, 4), limit, f"{bad} of {ended} operations ended failed, "
                       f"expired or parked in the last {self.config.window_s:g} s "
                       f"(limit {limit:.0%})")

    async def _rpc_down(self) -> Outcome | None:
        pipeline = self.ctx.subsystem("pipeline")
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
        n = await views.settlement_queue(self.ctx.db)
        limit = self.config.settlement_queue_max
        return Outcome(n > limit, n, limit, f"{n} settlements queued (limit {limit})")

    async def _meter_stale(self) -> Outcome:
        now_ms = time.time() * 1000
        limit = self.config.meter_stale_s
        stale = [m.meter_id for m in await views.meters(self.ctx.db)
                 if m.state in STALE_STATES or (m.read_at_ms is not None
                                                and now_ms - m.read_at_ms > limit * 1000)]
        return Outcome(bool(stale), len(stale), limit,
                       f"no recent reading from {', '.join(stale)} (limit {limit:g} s)" if stale
                       else "every meter reports")

    async def _disk_low(self) -> Outcome:
        free = (await asyncio.to_thread(shutil.disk_usage, self.ctx.store.path.parent)).free
        limit = self.config.disk_free_min_bytes
        return Outcome(free < limit, free, limit,
                       f"{free / 2**20:.0f} MiB free where the database is (limit "
                       f"{limit / 2**20:.0f} MiB)")


async def list_alerts(call: Call) -> Reply:
    """Every alert that was ever raised, with its state now; raised ones first."""
    from gridnode.api.server import Reply

    rows = await stored.all_alerts(call.ctx.db)
    evaluator = call.ctx.alerts
    if evaluator is not None:           # a change the store has not taken yet is still news
        by_name = {a.name: a for a in rows} | dict(evaluator._unsaved)
        rows = sorted(by_name.values(), key=lambda a: a.name)
    return Reply(AlertList(active=sum(a.raised for a in rows), alerts=[AlertInfo(
        name=a.name, state=a.state, value=a.value, threshold=a.threshold, detail=a.detail,
        raised_at=iso(a.raised_at_ms), changed_at=iso(a.changed_at_ms))
        for a in sorted(rows, key=lambda a: (not a.raised, a.name))]))
