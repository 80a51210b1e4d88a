"""The node endpoints: liveness, readiness, meters and their intervals, the chain as the node sees
it, and the fee the node would bid now."""

from __future__ import annotations

import asyncio
import math
import time

from gridnode import __version__
from gridnode.alerts import current
from gridnode.api.models import (
    ChainState,
    Endpoint,
    FeeEstimate,
    FeeQuery,
    Health,
    Interval,
    IntervalList,
    IntervalQuery,
    MeterInfo,
    MeterList,
    Ready,
    iso,
)
from gridnode.api.problems import FieldProblem, Problem, invalid, pointer
from gridnode.api.server import Call, Reply
from gridnode.api.transactions import owner_of
from gridnode.chain.assembly import SIGNATURE_FEE_LAMPORTS, priority_price
from gridnode.chain.fees import percentile
from gridnode.chain.rpc import RpcRejected, RpcUnavailable
from gridnode.chain.txtypes import TX_TYPES, Pda
from gridnode.store import views

STORE_CHECK_S = 2.0
DEFAULT_COMPUTE_UNITS = 200_000     # Solana's default per instruction, before any history
DAY_S = 86400


async def health(call: Call) -> Reply:
    """Liveness: the process answers (no token needed)."""
    ctx = call.ctx
    return Reply(Health(status="ok", version=__version__, node_id=ctx.config.node.id,
                        uptime_s=round(time.monotonic() - ctx.started_at, 3)))


async def ready(call: Call) -> Reply:
    """Readiness: the store answers, every subsystem progresses, the chain is reachable; 503
    with the reasons otherwise (no token needed)."""
    ctx = call.ctx
    checks: dict[str, str] = {}
    reasons: list[str] = []
    alerts: list[str] = []
    try:
        async with asyncio.timeout(STORE_CHECK_S):
            await ctx.db.fetchone("SELECT max(version) FROM schema_migrations")
            alerts = [a.name for a in await current(ctx.db, ctx.subsystems) if a.raised]
        checks["store"] = "ok"
    except TimeoutError:
        reasons.append(f"store did not answer within {STORE_CHECK_S:g} s")
    except Problem:
        raise
    except Exception as exc:   # noqa: BLE001 - any failure to read is the reason itself
        reasons.append(f"store cannot be read ({type(exc).__name__})")
    now, stall = time.monotonic(), ctx.config.node.stall_timeout_s
    for s in ctx.subsystems:
        if s.name == "api":
            continue
        idle = now - s.progress()
        if idle > stall:
            reasons.append(f"{s.name} made no progress for {idle:.0f} s")
        else:
            checks[s.name] = "ok"
    pipeline = ctx.subsystem("pipeline")
    if pipeline is not None:
        eps = pipeline.pool.endpoints
        if any(e.stats.healthy for e in eps):
            checks["chain"] = "ok"
        else:
            reasons.append("no RPC endpoint is healthy: " + "; ".join(
                f"{e.url}: {e.stats.last_error or 'unhealthy'}" for e in eps))
    if reasons:
        raise Problem(503, "not-ready", "Not ready", "; ".join(reasons), reasons=reasons,
                      alerts=alerts, headers={"Retry-After": "5"})
    return Reply(Ready(status="ready", checks=checks, alerts=alerts))


async def meters(call: Call) -> Reply:
    """Each meter: last values, power, health, rejections by reason (a user's own)."""
    db = call.ctx.db
    owner = owner_of(call.who)
    only = None if owner is None else await views.owned_meters(db, owner)
    return Reply(MeterList(meters=[MeterInfo(
        meter_id=m.meter_id, source=m.source, profile=m.profile, owner=m.owner, state=m.state,
        last_reading_at=iso(m.read_at_ms), import_wh=m.import_wh, export_wh=m.export_wh,
        power_w=m.power_w, voltage_v=m.voltage_v, current_a=m.current_a,
        frequency_hz=m.frequency_hz, requests=m.requests, errors=m.errors, accepted=m.accepted,
        rejected=m.rejected, rejections=m.rejections, last_good_at=iso(m.last_good_at_ms),
        last_error=m.last_error) for m in await views.meters(db, only)]))


async def intervals(call: Call) -> Reply:
    """A meter's closed intervals between `from` and `to` (Unix seconds), oldest first."""
    db = call.ctx.db
    q: IntervalQuery = call.query
    meter_id = call.request.match_info["meter_id"]
    owner = owner_of(call.who)
    if not await views.meter_exists(db, meter_id) or (
            owner is not None and meter_id not in await views.owned_meters(db, owner)):
        raise Problem(404, "meter-not-found", "Not found",
                      f"no meter {meter_id!r} that this token may see")
    to = q.to if q.to is not None else int(time.time())
    start = q.from_ if q.from_ is not None else max(0, to - DAY_S)
    if start > to:
        raise invalid([FieldProblem(pointer=pointer("query", "from"),
                                    detail=f"from ({start}) is after to ({to})",
                                    allowed="a time at or before `to`")], "invalid query")
    rows = await views.intervals(db, meter_id, start, to, q.limit)
    return Reply(IntervalList(meter_id=meter_id, from_=start, to=to, intervals=[Interval(
        interval_start=r.interval_start, interval_end=r.interval_end, import_wh=r.import_wh,
        export_wh=r.export_wh, backfilled=r.backfilled, closed_at=iso(r.created_at_ms))
        for r in rows]))


async def chain(call: Call) -> Reply:
    """The RPC endpoints with their health, slot and lag, and the blockhash age."""
    pipeline = call.ctx.subsystem("pipeline")
    if pipeline is None:
        return Reply(ChainState(configured=False))
    now = time.monotonic()
    age = pipeline.blockhashes.age_s()
    return Reply(ChainState(
        configured=True, commitment=str(pipeline.pool.commitment),
        block_height=pipeline.inflight.block_height,
        blockhash_age_s=None if age is None else round(age, 3),
        endpoints=[Endpoint(
            url=e.url, healthy=e.stats.healthy, slot=e.stats.slot, lag_slots=e.stats.lag_slots,
            requests=e.stats.requests, errors=e.stats.errors,
            consecutive_errors=e.stats.consecutive_errors, last_error=e.stats.last_error,
            last_error_age_s=None if e.stats.last_error_at is None
            else round(now - e.stats.last_error_at, 3)) for e in pipeline.pool.endpoints]))


async def fee_estimate(call: Call) -> Reply:
    """The compute-unit price and limit the node would use now for a tx type, with the recent
    priority fees and congestion they are based on."""
    q: FeeQuery = call.query
    pipeline = call.ctx.subsystem("pipeline")
    if pipeline is None:
        raise Problem(409, "no-chain", "No chain configured", "this node has no [chain]")
    row = TX_TYPES[q.tx_type]
    ixs = row.instructions or next(iter(row.variants.values()), ())
    # The fee market is per writable account; those known without a payload are the program's
    # global accounts (PDAs with constant seeds).
    accounts = list(dict.fromkeys(
        pipeline.builder.pda(acc) for ix in ixs for acc in ix.accounts.values()
        if isinstance(acc, Pda) and all(isinstance(s, bytes) for s in acc.seeds)))
    try:
        samples = await pipeline.pool.recent_prioritization_fees(accounts)
    except (RpcUnavailable, RpcRejected) as exc:
        raise Problem(503, "chain-unavailable", "Chain unavailable",
                      "no RPC endpoint answered getRecentPrioritizationFees"
                      + (f" ({exc.message[:120]})" if isinstance(exc, RpcRejected) else ""),
                      headers={"Retry-After": "5"}) from None
    fees, chain_cfg = pipeline.fees, pipeline.chain
    paid = [f for f in samples if f > 0]
    recent = percentile(paid, fees.pct)
    recent_limit = await views.recent_compute_limit(call.ctx.db, row.name)
    limit = recent_limit or DEFAULT_COMPUTE_UNITS
    signatures = 1 if row.signer == "gateway" else 2
    price = priority_price(fees.clamp(recent), limit, signatures,
                           chain_cfg.fees.max_lamports_per_tx, fees.cap)
    return Reply(FeeEstimate(
        tx_type=row.name, compute_unit_price_micro_lamports=price, compute_unit_limit=limit,
        compute_unit_limit_source="recent" if recent_limit else "default",
        estimated_fee_lamports=SIGNATURE_FEE_LAMPORTS * signatures
        + math.ceil(price * limit / 1_000_000),
        percentile=fees.pct, recent_fee_percentile_micro_lamports=recent,
        recent_fee_samples=len(samples),
        congestion=round(len(paid) / len(samples), 4) if samples else 0.0,
        floor_micro_lamports=fees.floor, cap_micro_lamports=fees.cap,
        max_lamports_per_tx=chain_cfg.fees.max_lamports_per_tx,
        accounts=[str(a) for a in accounts]))
