"""GET /metrics: the node's Prometheus series, in base units, on the API's own registry.

Most series are read at scrape time from the store and the subsystems' in-memory state (a custom
collector over a snapshot taken just before rendering), so the hot paths carry no metric code.
Two histograms need a measurement where it happens: RPC request latency (`RpcPool.observe`) and
SQLite commit latency (`Store.on_commit`), each a single `observe` call. What operations went
through (status entries, outcomes, confirmation and submission times) is counted from the audit
log through a cursor, so a scrape reads only the rows added since the previous one, whatever the
size of the store.

prometheus_client is imported on the first scrape (`gridnode.api.exposition` renders): a node
nobody scrapes does not carry it. Until then the histograms are plain bucket counters here.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web

from gridnode.alerts import RULES, current
from gridnode.store import views

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


@dataclass
class Buckets:
    """A histogram's counts: one per upper bound (not cumulative), the sum and the count."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    sum: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)       # the last one is +Inf

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1


class Metrics:
    """What the API measures between scrapes, and the scrape itself."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self.rpc_latency: defaultdict[str, Buckets] = defaultdict(lambda: Buckets(RPC_BUCKETS))
        self.commit_latency = Buckets(COMMIT_BUCKETS)
        self.confirmation = Buckets(TX_BUCKETS)
        self.submission = Buckets(TX_BUCKETS)
        # Counted from the audit log through a cursor: each scrape reads only what is new.
        self.entries: Counter[tuple[str, str]] = Counter()
        self.finished: Counter[tuple[str, str]] = Counter()
        self._cursor = 0
        self._reading = asyncio.Lock()
        self.started_at = time.time()
        self._exposition: Any = None        # gridnode.api.exposition.Exposition, first scrape

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
        self.rpc_latency[endpoint(url)].observe(seconds)

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

    async def render(self) -> tuple[bytes, str]:
        """The exposition text of every series, reading the store now, and its content type."""
        from gridnode.api.exposition import Exposition

        await self._advance()
        snap = await snapshot(self.ctx)
        if self._exposition is None:
            self._exposition = Exposition(self)
        return self._exposition.render(snap)      # no await: scrapes cannot interleave


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


async def metrics(call: Call) -> web.StreamResponse:
    """Prometheus text exposition of the node's series (base units)."""
    body, content_type = await call.ctx.metrics.render()
    return web.Response(body=body, headers={"Content-Type": content_type})
