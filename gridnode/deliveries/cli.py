"""``gridnode deliveries list|show|replay``: what each destination has, and the operator's replay.

A running daemon picks a replayed item up at its next poll (it reads the same database); the
replay itself is one audited write, safe beside the daemon.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from gridnode.store import deliveries as stored

if TYPE_CHECKING:
    from gridnode.store import Store

WithConfig = Callable[..., argparse.ArgumentParser]


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                 with_config: WithConfig) -> None:
    dl = sub.add_parser("deliveries", help="upstream, webhook and other deliveries: inspect and "
                        "replay").add_subparsers(dest="deliveries_command", required=True,
                                                 metavar="COMMAND")
    p = with_config(dl.add_parser("list", help="destinations, then items newest first"), db=True)
    p.add_argument("--destination", help="only this destination's items")
    p.add_argument("--status", choices=stored.ITEM_STATUSES)
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(fn=cmd_list)
    p = with_config(dl.add_parser("show", help="one item: payload, answer, history"), db=True)
    p.add_argument("id", type=int)
    p.set_defaults(fn=cmd_show)
    p = with_config(dl.add_parser("replay", help="send parked (or delivered) items again; with "
                                  "--destination, every parked item of it, and enable it if it "
                                  "was disabled"), db=True)
    p.add_argument("ids", type=int, nargs="*", help="item ids")
    p.add_argument("--destination", help="replay every parked item of this destination")
    p.add_argument("--reason", help="note recorded in the audit log")
    p.set_defaults(fn=cmd_replay)
    p = with_config(dl.add_parser("remove", help="delete a destination that is no longer "
                                  "configured, with its items (they stop holding events and "
                                  "raw readings back)"), db=True)
    p.add_argument("name")
    p.add_argument("--reason", help="note recorded in the audit log")
    p.set_defaults(fn=cmd_remove)
    p = dl.add_parser("secret", help="write a new whsec_ signing secret for [upstream] (mode "
                      "0600, never overwrites; append a second one to rotate)")
    p.add_argument("path")
    p.set_defaults(fn=cmd_secret)


def _run(args: argparse.Namespace, go: Callable[[Store], object]) -> int:
    from gridnode.cli import _database, _with_store

    path = _database(args)
    return int(asyncio.run(_with_store(path, go)))  # type: ignore[arg-type]


async def status_lines(store: Store) -> list[str]:
    """`gridnode status`'s deliveries part: one line per destination (nothing without any)."""
    from gridnode.cli import _iso

    dests = await stored.destinations(store)
    if not dests:
        return []
    counts = await stored.status_counts(store)
    lines = ["deliveries:"]
    for d in dests:
        c = counts.get(d.name, {})
        line = (f"  {d.name} ({d.kind}) {d.status}: "
                + " ".join(f"{s}={c.get(s, 0)}" for s in stored.ITEM_STATUSES))
        if d.last_delivered_at_ms:
            line += f", last delivery {_iso(d.last_delivered_at_ms)}"
        if d.failing_since_ms:
            line += (f", failing since {_iso(d.failing_since_ms)} ({d.failures} requests)"
                     + (f", next attempt {_iso(d.next_attempt_at_ms)}"
                        if d.next_attempt_at_ms else "")
                     + (f": {d.last_error[:200]}" if d.last_error else ""))
        if d.disabled_reason:
            line += f", disabled: {d.disabled_reason[:200]}"
        lines.append(line)
    return lines


def cmd_list(args: argparse.Namespace) -> int:
    from gridnode.cli import _iso, _out

    async def go(store: Store) -> int:
        counts = await stored.status_counts(store)
        dests = await stored.destinations(store)
        _out("destinations:" + ("" if dests else " none"))
        for d in dests:
            c = counts.get(d.name, {})
            line = (f"  {d.name} ({d.kind}) {d.status} cursor={d.cursor} "
                    + " ".join(f"{s}={c.get(s, 0)}" for s in stored.ITEM_STATUSES))
            if d.failures:
                line += f" failures={d.failures}"
                if d.next_attempt_at_ms:
                    line += f" next attempt {_iso(d.next_attempt_at_ms)}"
                if d.last_error:
                    line += f" last error: {d.last_error[:200]}"
            if d.disabled_reason:
                line += f" disabled: {d.disabled_reason[:200]}"
            _out(line)
        rows = await stored.items(store, destination=args.destination, status=args.status,
                                  limit=args.limit)
        _out(f"{'id':>8}  {'status':<9} {'attempts':>8}  {'updated (UTC)':<20} "
             "destination kind key")
        for r in rows:
            _out(f"{r.id:>8}  {r.status:<9} {r.attempts:>8}  {_iso(r.updated_at_ms):<20} "
                 f"{r.destination} {r.kind} {r.idempotency_key}"
                 + (f"  error: {r.last_error[:200]}" if r.last_error and r.status != "delivered"
                    else ""))
        return 0

    return _run(args, go)


def cmd_show(args: argparse.Namespace) -> int:
    from gridnode.cli import _iso, _out

    async def go(store: Store) -> int:
        r = await stored.item(store, args.id)
        if r is None:
            raise stored.ItemNotFound(args.id)
        for key in ("id", "destination", "event_id", "kind", "idempotency_key", "order_key",
                    "status", "attempts", "next_attempt_at_ms", "last_error", "answer",
                    "created_at_ms", "updated_at_ms", "delivered_at_ms"):
            value = getattr(r, key)
            if key.endswith("_at_ms") and value is not None:
                value = f"{_iso(value)} ({value})"
            _out(f"{key}: {value}")
        _out("payload: " + json.dumps(r.payload, indent=2, sort_keys=True)
             .replace("\n", "\n    "))
        _out("history:")
        for at_ms, old, new, reason, details in await stored.history(store, args.id):
            _out(f"  {_iso(at_ms)} {old or '-'} -> {new}: {reason}"
                 + (f" {details}" if details else ""))
        return 0

    return _run(args, go)


def cmd_replay(args: argparse.Namespace) -> int:
    from gridnode.cli import UsageError, _out

    if not args.ids and not args.destination:
        raise UsageError("deliveries replay: give item ids, or --destination NAME")

    async def go(store: Store) -> int:
        ids = list(args.ids)
        async with store.write() as tx:
            if args.destination:
                if await stored.destination(tx, args.destination) is None:
                    raise UsageError(f"no delivery destination {args.destination!r}")
                if await stored.enable(tx, args.destination, args.reason):
                    _out(f"destination {args.destination}: disabled -> active")
                ids += await stored.parked_ids(tx, args.destination)
            for item_id in ids:
                old = await stored.replay(tx, item_id, args.reason)
                _out(f"delivery {item_id}: {old} -> {stored.PENDING}")
        if not ids:
            _out("nothing parked")
        return 0

    return _run(args, go)


def cmd_secret(args: argparse.Namespace) -> int:
    from gridnode.cli import CliError, _out
    from gridnode.deliveries.upstream import write_secret_file

    path = Path(args.path)
    try:
        write_secret_file(path)
    except FileExistsError:
        raise CliError(f"{path} already exists; a secret is never overwritten (the platform "
                       "would refuse every request signed with a new one)") from None
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror}") from None
    _out(f"wrote {path} (mode 0600); set [upstream] secret_file = \"{path}\" and give the "
         "platform the same secret")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    from gridnode.cli import UsageError, _out

    async def go(store: Store) -> int:
        async with store.write() as tx:
            counts = (await stored.status_counts(tx)).get(args.name, {})
            if not await stored.remove_destination(tx, args.name, args.reason):
                raise UsageError(f"no delivery destination {args.name!r}")
        _out(f"destination {args.name} removed with its items "
             + (" ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "(none)")
             + "; if it is still configured, the node's next start makes it again from the "
             "log's beginning")
        return 0

    return _run(args, go)
