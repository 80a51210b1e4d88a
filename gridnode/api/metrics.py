"""GET /metrics: the node's Prometheus series, in base units, on the API's own registry.

Most series are read at scrape time from the store and the subsystems' in-memory state (a custom
collector over a snapshot taken just before rendering), so the hot paths carry no metric code.
Two histograms need a measurement where it happens: RPC request latency (`RpcPool.observe`) and
SQLite commit latency (`Store.on_commit`), each a single `observe` call. What operations went
through (status entries, outcomes, confirmation and submission times) is counted from the audit
log through a cursor, so a scrape reads only the rows added since the previous one, whatever the
size of the store.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)

from gridnode import __version__
from gridnode.alerts import RULES, current
from gridnode.store import transitions, views

if TYPE_CHECKING:
    from gridnode.api.server import ApiContext, Call

# Confirmation and submission times: the platform alerts at 60 s, so the buckets reach past it.
TX_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
RPC_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                  5.0, 10.0, 30.0, 60.0, 120.0)
ONLINE = "online"


@dataclass
class Snapshot:
    """What one scrape reports from the store and memory, read before rendering."""

    depth: dict[str, int]
    meters: list[views.MeterView]
    settlement_queue: int
    db_bytes: int
    endpoints: list[Any] = field(default_factory=list)
    alerts: dict[str, bool] = field(default_factory=dict)


class Metrics:
    """The API's registry: two instrumented histograms and a collector of everything else."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self.registry = CollectorRegistry(auto_describe=False)
        self.rpc_latency = Histogram(
            "gridnode_rpc_request_duration_seconds", "RPC requests by endpoint, answered or not",
            ["endpoint"], buckets=RPC_BUCKETS, registry=self.registry)
        self.commit_latency = Histogram(
            "gridnode_store_commit_duration_seconds", "SQLite COMMIT of the single writer",
            buckets=COMMIT_BUCKETS, registry=self.registry)
        self.confirmation = Histogram(
            "gridnode_transaction_confirmation_seconds", "submitted -> confirmed, per operation",
            buckets=TX_BUCKETS, registry=self.registry)
        self.submission = Histogram(
            "gridnode_transaction_submission_seconds", "created -> first submitted, per "
            "operation", buckets=TX_BUCKETS, registry=self.registry)
        # Counted from the audit log through a cursor: each scrape reads only what is new.
        self.entries: Counter[tuple[str, str]] = Counter()
        self.finished: Counter[tuple[str, str]] = Counter()
        self._cursor = 0
        self._reading = asyncio.Lock()
        self.started_at = time.time()
        self._snapshot: Snapshot | None = None
        self.registry.register(self)

    def attach(self) -> None:
        """Start the two measurements: the store's commits and the pipeline's RPC requests."""
        self.ctx.store.on_commit = self.commit_latency.observe
        pipeline = self.ctx.subsystem("pipeline")
        if pipeline is not None:
            pipeline.pool.observe = self._observe_rpc

    def detach(self) -> None:
        self.ctx.store.on_commit = None
        pipeline = self.ctx.subsystem("pipeline")
        if pipeline is not None:
            pipeline.pool.observe = None

    def _observe_rpc(self, url: str, seconds: float) -> None:
        self.rpc_latency.labels(endpoint(url)).observe(seconds)

    async def _advance(self) -> None:
        """Count the operation status entries added to the audit log since the last scrape."""
        async with self._reading:
            while True:
                batch = await views.entries_after(self.ctx.db, self._cursor)
                for e in batch:
                    self.entries[(e.tx_type, e.status)] += 1
                    if e.confirmation_s is not None:
                        self.confirmation.observe(e.confirmation_s)
                    if e.submission_s is not None:
                        self.submission.observe(e.submission_s)
                    if e.error is not None:
                        self.finished[(e.status, e.error)] += 1
                if batch:
                    self._cursor = batch[-1].id
                if len(batch) < views.ENTRIES_PAGE:
                    return

    async def render(self) -> bytes:
        """The exposition text of every series, reading the store now."""
        await self._advance()
        snap = await snapshot(self.ctx)
        self._snapshot = snap            # no await from here on: scrapes cannot interleave
        try:
            return generate_latest(self.registry)
        finally:
            self._snapshot = None

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot
        if snap is None:
            return
        yield from _node(self.ctx, self.started_at)
        yield from _transactions(snap, self.entries, self.finished)
        yield from _rpc(snap)
        yield from _meters(snap)
        store = GaugeMetricFamily("gridnode_store_size_bytes",
                                  "the database with its WAL and shared-memory files")
        store.add_metric([], snap.db_bytes)
        yield store
        queue = GaugeMetricFamily("gridnode_settlement_queue",
                                  "settlements not yet settled or failed")
        queue.add_metric([], snap.settlement_queue)
        yield queue
        problems = CounterMetricFamily("gridnode_api_problems_total",
                                       "API answers that were problem documents, by code",
                                       labels=["code"])
        for code, n in sorted(self.ctx.problems.items()):
            problems.add_metric([code], n)
        yield problems
        active = GaugeMetricFamily("gridnode_alert_active", "1 while the alert is raised",
                                   labels=["alert"])
        for name, raised in sorted(snap.alerts.items()):
            active.add_metric([name], 1 if raised else 0)
        yield active


async def snapshot(ctx: ApiContext) -> Snapshot:
    db = ctx.db
    pipeline = ctx.subsystem("pipeline")
    raised = {a.name for a in await current(db, ctx.subsystems) if a.raised}
    return Snapshot(
        depth=await views.status_counts(db), meters=await views.meters(db),
        settlement_queue=await views.settlement_queue(db),
        db_bytes=_db_bytes(ctx.store.path),
        endpoints=list(pipeline.pool.endpoints) if pipeline is not None else [],
        alerts={name: name in raised for name in RULES})


def endpoint(url: str) -> str:
    """An RPC URL as a label: host and port only, since providers put API keys in the path
    or the query."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname or url)


def _db_bytes(path: Path) -> int:
    total = 0
    for suffix in ("", "-wal", "-shm"):
        try:
            total += Path(f"{path}{suffix}").stat().st_size
        except OSError:
            pass
    return total


def _node(ctx: ApiContext, started_at: float) -> Iterable[Metric]:
    info = GaugeMetricFamily("gridnode_build_info", "always 1; the node's version and id",
                             labels=["version", "node_id"])
    info.add_metric([__version__, ctx.config.node.id], 1)
    start = GaugeMetricFamily("gridnode_start_time_seconds", "when the API started (Unix time)")
    start.add_metric([], started_at)
    return [info, start]


def _transactions(snap: Snapshot, entries: Counter[tuple[str, str]],
                  ended: Counter[tuple[str, str]]) -> Iterable[Metric]:
    total = CounterMetricFamily("gridnode_transactions_total",
                                "operations that entered a status, by tx type",
                                labels=["tx_type", "status"])
    for (tx_type, status), n in sorted(entries.items()):
        total.add_metric([tx_type, status], n)
    depth = GaugeMetricFamily("gridnode_outbox_operations", "operations in each status now",
                              labels=["status"])
    for status in transitions.OPERATION_STATUSES:
        depth.add_metric([status], snap.depth.get(status, 0))
    finished = CounterMetricFamily(
        "gridnode_transactions_finished_total",
        "operations that ended (again after a retry): result, status, the chain's error",
        labels=["result", "status", "error"])
    for (status, error), n in sorted(ended.items()):
        finished.add_metric(["success" if status == "finalized" else "failure", status, error],
                            n)
    return [total, depth, finished]


def _rpc(snap: Snapshot) -> Iterable[Metric]:
    up = GaugeMetricFamily("gridnode_rpc_up", "1 while the endpoint is healthy",
                           labels=["endpoint"])
    requests = CounterMetricFamily("gridnode_rpc_requests_total", "RPC requests",
                                   labels=["endpoint"])
    errors = CounterMetricFamily("gridnode_rpc_errors_total", "RPC requests that failed",
                                 labels=["endpoint"])
    lag = GaugeMetricFamily("gridnode_rpc_lag_slots", "slots behind the best endpoint",
                            labels=["endpoint"])
    for e in snap.endpoints:
        url = endpoint(e.url)
        up.add_metric([url], 1 if e.stats.healthy else 0)
        requests.add_metric([url], e.stats.requests)
        errors.add_metric([url], e.stats.errors)
        lag.add_metric([url], e.stats.lag_slots)
    return [up, requests, errors, lag]


def _meters(snap: Snapshot) -> Iterable[Metric]:
    polls = CounterMetricFamily("gridnode_meter_polls_total", "requests to the meter (polls "
                                "or messages)", labels=["meter"])
    errors = CounterMetricFamily("gridnode_meter_errors_total", "failed polls",
                                 labels=["meter"])
    accepted = CounterMetricFamily("gridnode_meter_readings_accepted_total",
                                   "readings stored", labels=["meter"])
    rejected = CounterMetricFamily("gridnode_meter_rejections_total",
                                   "readings refused, by reason", labels=["meter", "reason"])
    up = GaugeMetricFamily("gridnode_meter_up", "1 while the meter is online",
                           labels=["meter"])
    last = GaugeMetricFamily("gridnode_meter_last_reading_timestamp_seconds",
                             "time of the latest stored reading (Unix)", labels=["meter"])
    for m in snap.meters:
        polls.add_metric([m.meter_id], m.requests or 0)
        errors.add_metric([m.meter_id], m.errors or 0)
        accepted.add_metric([m.meter_id], m.accepted or 0)
        for reason, n in sorted(m.rejections.items()):
            rejected.add_metric([m.meter_id, reason], n)
        up.add_metric([m.meter_id], 1 if m.state == ONLINE else 0)
        if m.read_at_ms is not None:
            last.add_metric([m.meter_id], m.read_at_ms / 1000)
    return [polls, errors, accepted, rejected, up, last]


async def metrics(call: Call) -> web.StreamResponse:
    """Prometheus text exposition of the node's series (base units)."""
    body = await call.ctx.metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
