"""`gridnode order sell|buy|cancel|list` and `gridnode settlement list|show|retry|write-off`.

Like the outbox commands they only read and write the database (exit 0 ok, 1 runtime failure,
2 usage or configuration error); the running node signs and submits what they queue. Operator
changes to settlements are audited; nothing is deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gridnode.config import ConfigError, ConfigIssue, GridnodeConfig
from gridnode.store import Store, market, operations, settlements, transitions

WithConfig = Callable[..., argparse.ArgumentParser]


def add_commands(sub: argparse._SubParsersAction,  # type: ignore[type-arg]
                 with_config: WithConfig) -> None:
    od = sub.add_parser("order", help="place, cancel and list the node's orders (through the "
                        "outbox)").add_subparsers(dest="order_command", required=True,
                                                  metavar="COMMAND")
    for side in ("sell", "buy"):
        p = with_config(od.add_parser(side, help=f"queue a {side} order of a [[market.users]] "
                                      "user whose key the node holds"), db=True)
        p.add_argument("user", help="the user's name in [[market.users]]")
        p.add_argument("--wh", type=int, required=True, help="energy in Wh")
        p.add_argument("--price", type=int, required=True,
                       help="GRID base units per kWh (the least to sell at, the most to buy at)")
        p.add_argument("--id", help="a name for this order: the same name again adds nothing "
                       "(default: a new one)")
        p.set_defaults(fn=cmd_order_place, side=side)
    p = with_config(od.add_parser("cancel", help="queue the cancellation of one of the node's "
                                  "orders"), db=True)
    p.add_argument("order", help="the order's id in `gridnode order list`, or its address")
    p.set_defaults(fn=cmd_order_cancel)
    p = with_config(od.add_parser("list", help="the node's orders, newest first"), db=True)
    p.add_argument("--epoch", type=int, help="only the orders of the epoch ending then (Unix s)")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(fn=cmd_order_list)

    st = sub.add_parser("settlement", help="inspect, retry or write off settlements").\
        add_subparsers(dest="settlement_command", required=True, metavar="COMMAND")
    p = with_config(st.add_parser("list", help="settlements, newest first"), db=True)
    p.add_argument("--status", choices=transitions.SETTLEMENT_STATUSES)
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(fn=cmd_settlement_list)
    p = with_config(st.add_parser("show", help="one settlement with its reversal and history"),
                    db=True)
    p.add_argument("id", type=int)
    p.set_defaults(fn=cmd_settlement_show)
    p = with_config(st.add_parser("retry", help="send a defaulted settlement back to the queue "
                                  "with a fresh budget (audited)"), db=True)
    p.add_argument("id", type=int)
    p.add_argument("--reason", help="note recorded in the audit log")
    p.set_defaults(fn=cmd_settlement_retry)
    p = with_config(st.add_parser("write-off", help="accept that a defaulted settlement will "
                                  "not be settled (audited; the row stays)"), db=True)
    p.add_argument("id", type=int)
    p.add_argument("--reason", help="note recorded in the audit log")
    p.set_defaults(fn=cmd_settlement_write_off)


# -- helpers -----------------------------------------------------------------------------------

def _db(args: argparse.Namespace) -> Path:
    from gridnode.cli import _database

    return _database(args)


def _run(path: Path, fn: Callable[[Store], Any]) -> Any:
    from gridnode.cli import _with_store

    return asyncio.run(_with_store(path, fn))


def _out(line: str = "") -> None:
    from gridnode.cli import _out as out

    out(line)


def _iso(ms: int | None) -> str:
    from gridnode.cli import _iso as iso

    return "-" if ms is None else iso(ms)


def _market_config(args: argparse.Namespace) -> GridnodeConfig:
    from gridnode.cli import _config_path, _load

    cfg = _load(_config_path(args))
    if cfg.market is None or not cfg.market.enabled:
        raise ConfigError([ConfigIssue(cfg.source, "market", "<missing>",
                                       "a [market] section with its [[market.users]]")])
    return cfg


# -- orders ------------------------------------------------------------------------------------

def cmd_order_place(args: argparse.Namespace) -> int:
    from gridnode.cli import UsageError
    from gridnode.market.clearing import epoch_of
    from gridnode.market.orders import manual_order
    from gridnode.market.service import resolve_users

    cfg = _market_config(args)
    assert cfg.market is not None
    users, issues = resolve_users(cfg)
    if issues:
        raise ConfigError(issues)
    user = users.by_name.get(args.user)
    if user is None:
        known = ", ".join(u.name for u in cfg.market.users) or "none"
        raise UsageError(f"no user {args.user!r} whose key loads in [[market.users]] "
                         f"(configured: {known})")
    if not user.holds_key:
        raise UsageError(f"{user.name} keeps its own key (delegate): its orders need its own "
                         "signature, which this node does not hold")
    import time

    try:
        planned = manual_order(user, args.side, args.wh, args.price,
                               epoch_of(time.time(), cfg.market.epoch_minutes * 60),
                               args.id or uuid.uuid4().hex[:12])
    except ValidationError as exc:
        raise UsageError("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                   for e in exc.errors())) from None
    path = Path(args.db) if args.db else cfg.node.database

    async def go(store: Store) -> tuple[int, bool]:
        async with store.write() as tx:
            return await market.add_order(tx, planned.order, planned.operation)

    order_id, created = _run(path, go)
    _out(f"order {order_id}: {args.side} {args.wh} Wh at {args.price}/kWh for {user.name} "
         + ("queued" if created else "was queued before; nothing added"))
    _out("  the running node signs and submits it; follow it: gridnode order list")
    return 0


def cmd_order_cancel(args: argparse.Namespace) -> int:
    from gridnode.cli import CliError, UsageError
    from gridnode.market.orders import cancel_operation

    path = _db(args)

    async def go(store: Store) -> tuple[int, int, bool]:
        async with store.write() as tx:
            found = (await market.order_by_id(tx, int(args.order)) if args.order.isdigit()
                     else await market.order_by_address(tx, args.order))
            if found is None:
                raise CliError(f"no order {args.order} of this node (gridnode order list)")
            if found.order_address is None:
                raise UsageError(f"order {found.id} is not on chain yet (its creation is not "
                                 "finalized); cancel it once it is")
            op_id, created = await operations.add(
                tx, cancel_operation(found.owner, found.order_address),
                details={"operator": True})
            if found.closed is None:
                await market.close(tx, found.id, "cancel", op_id)
            return found.id, op_id, created

    order_id, op_id, created = _run(path, go)
    _out(f"order {order_id}: cancel operation {op_id} "
         + ("queued" if created else "was queued before; nothing added"))
    return 0


def cmd_order_list(args: argparse.Namespace) -> int:
    path = _db(args)

    async def go(store: Store) -> int:
        views = await market.orders(store, args.limit, epoch=args.epoch)
        _out(f"{'id':>6}  {'side':<4} {'Wh':>8} {'price/kWh':>12} {'epoch (UTC)':<20} "
             f"{'source':<6} {'creation':<10} {'closed':<8} user / address")
        for v in views:
            o = v.order
            closed = o.closed or "-"
            if v.cancel_status:
                closed += f"({v.cancel_status})"
            _out(f"{o.id:>6}  {o.side:<4} {o.energy_wh:>8} {o.price_per_kwh:>12} "
                 f"{_iso(o.epoch * 1000):<20} {o.source:<6} {v.op_status:<10} {closed:<8} "
                 f"{o.user_name} {o.order_address or '-'}")
        return 0

    return int(_run(path, go))


# -- settlements -------------------------------------------------------------------------------

def cmd_settlement_list(args: argparse.Namespace) -> int:
    path = _db(args)

    async def go(store: Store) -> int:
        rows = await settlements.newest(store, args.limit, args.status)
        _out(f"{'id':>6}  {'status':<11} {'Wh':>8} {'price/kWh':>12} {'total':>14} "
             f"{'fee':>10} {'attempts':>8}  seller -> buyer / trade record")
        for s in rows:
            _out(f"{s.id:>6}  {s.status:<11} {s.energy_wh:>8} {s.price_per_kwh:>12} "
                 f"{s.total_value:>14} {s.fee:>10} {s.attempts:>8}  {s.seller} -> {s.buyer} "
                 f"{s.trade_record}" + (f"  error: {s.last_error}" if s.last_error
                                        and s.status != "settled" else ""))
        return 0

    return int(_run(path, go))


def cmd_settlement_show(args: argparse.Namespace) -> int:
    path = _db(args)

    async def go(store: Store) -> int:
        s = await settlements.get(store, args.id)
        if s is None:
            raise settlements.SettlementNotFound(args.id)
        for field in dataclasses.fields(s):
            key, value = field.name, getattr(s, field.name)
            if key.endswith("_at_ms") and value is not None:
                value = f"{_iso(value)} ({value})"
            elif key == "reversal" and value is not None:
                value = json.dumps(value, indent=2, sort_keys=True).replace("\n", "\n    ")
            _out(f"{key}: {value}")
        _out("history:")
        for h in await settlements.history(store, args.id):
            _out(f"  {_iso(h.at_ms)} {h.old_status or '-'} -> {h.new_status}: {h.reason}"
                 + (f" {h.details}" if h.details else ""))
        if s.operation_id is not None:
            _out(f"operation: gridnode outbox show {s.operation_id}")
        return 0

    return int(_run(path, go))


def _operator(args: argparse.Namespace, what: str) -> int:
    path = _db(args)

    async def go(store: Store) -> settlements.Settlement:
        async with store.write() as tx:
            if what == "retry":
                return await settlements.operator_retry(tx, args.id, args.reason)
            return await settlements.write_off(tx, args.id, args.reason)

    s = _run(path, go)      # not defaulted: a StoreError, exit 1 (as `outbox retry`)
    _out(f"settlement {s.id}: defaulted -> {s.status}")
    return 0


def cmd_settlement_retry(args: argparse.Namespace) -> int:
    return _operator(args, "retry")


def cmd_settlement_write_off(args: argparse.Namespace) -> int:
    return _operator(args, "write-off")
