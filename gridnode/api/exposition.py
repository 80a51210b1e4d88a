"""The Prometheus text of a scrape: prometheus_client's families over the API's measurements.

Imported on the first scrape only (see gridnode.api.metrics): the collector renders a snapshot
taken just before, so nothing here reads the store or waits.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from gridnode import __version__
from gridnode.api.metrics import ONLINE, Buckets, Metrics, Snapshot, endpoint
from gridnode.store import transitions

if TYPE_CHECKING:
    from gridnode.api.server import ApiContext


class Exposition:
    """A registry with one collector: every family is built from the snapshot of this scrape."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.registry = CollectorRegistry(auto_describe=False)
        self._snapshot: Snapshot | None = None
        self.registry.register(self)

    def render(self, snap: Snapshot) -> tuple[bytes, str]:
        self._snapshot = snap
        try:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        finally:
            self._snapshot = None

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        snap, m = self._snapshot, self.metrics
        if snap is None:
            return
        yield from _node(m.ctx, m.started_at)
        yield from _transactions(snap, m.entries, m.finished)
        yield from _rpc(snap)
        yield from _meters(snap)
        yield from _histograms(m)
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
        for code, n in sorted(m.ctx.problems.items()):
            problems.add_metric([code], n)
        yield problems
        active = GaugeMetricFamily("gridnode_alert_active", "1 while the alert is raised",
                                   labels=["alert"])
        for name, raised in sorted(snap.alerts.items()):
            active.add_metric([name], 1 if raised else 0)
        yield active


def _cumulative(b: Buckets) -> list[tuple[str, float]]:
    """(le, cumulative count) pairs, labelled as prometheus_client's own histograms are."""
    out: list[tuple[str, float]] = []
    total = 0
    for bound, n in zip((*b.bounds, float("inf")), b.counts, strict=True):
        total += n
        out.append((floatToGoString(bound), total))
    return out


def _histograms(m: Metrics) -> Iterable[Metric]:
    rpc = HistogramMetricFamily("gridnode_rpc_request_duration_seconds",
                                "RPC requests by endpoint, answered or not", labels=["endpoint"])
    for url, b in sorted(m.rpc_latency.items()):
        rpc.add_metric([url], _cumulative(b), b.sum)
    out: list[Metric] = [rpc]
    for name, doc, b in (
            ("gridnode_store_commit_duration_seconds", "SQLite COMMIT of the single writer",
             m.commit_latency),
            ("gridnode_transaction_confirmation_seconds", "submitted -> confirmed, per operation",
             m.confirmation),
            ("gridnode_transaction_submission_seconds",
             "created -> first submitted, per operation", m.submission)):
        fam = HistogramMetricFamily(name, doc)
        fam.add_metric([], _cumulative(b), b.sum)
        out.append(fam)
    return out


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
