"""The ``gridnode`` command: run the daemon and operate it.

Exit status: 0 success, 2 usage or configuration error, 1 runtime failure, 141 (128 + SIGPIPE,
as for any Unix tool) when the reader of the output went away (``gridnode outbox list | head``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import signal
import sqlite3
import sys
import time
import typing
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from pydantic import ValidationError

from gridnode import __version__
from gridnode.chain.txtypes import new_operation
from gridnode.chain.validation import MeterRegistrationPayload, Payload, UserRegistrationPayload
from gridnode.config import (
    ConfigError,
    ConfigIssue,
    GridnodeConfig,
    does_nothing,
    load_config,
    summary,
)
from gridnode.keys import KeyFileError, generate_keypair_file, load_configured_keypairs
from gridnode.store import MigrationError, Store, StoreError, migrate, operations, transitions
from gridnode.store import alerts as stored_alerts
from gridnode.store import meters as meter_reads

T = typing.TypeVar("T")
DEFAULT_CONFIG = "/etc/gridnode/gridnode.toml"
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE


class CliError(Exception):
    """A runtime failure to report on stderr (exit 1)."""


class UsageError(Exception):
    """Arguments that can never succeed (a bad public key, a key this node does not hold);
    reported on stderr, exit 2."""


def _out(line: str = "") -> None:
    sys.stdout.write(line + "\n")


def _err(line: str) -> None:
    sys.stderr.write(line + "\n")


def _load(path: str) -> GridnodeConfig:
    return load_config(path)


def _config_path(args: argparse.Namespace) -> str:
    return args.config or os.environ.get("GRIDNODE_CONFIG") or DEFAULT_CONFIG


def _database(args: argparse.Namespace, *, must_exist: bool = True) -> Path:
    path = Path(args.db) if args.db else _load(_config_path(args)).node.database
    if must_exist and not path.exists():
        raise CliError(f"no database at {path} (gridnode run or gridnode db migrate creates it)")
    return path


async def _with_store(path: Path, fn: Callable[[Store], Awaitable[T]]) -> T:
    store = await Store.open(path)
    try:
        return await fn(store)
    finally:
        await store.close()


# --- commands ---------------------------------------------------------------------------------

def cmd_version(args: argparse.Namespace) -> int:
    _out(f"gridnode {__version__}")
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    from gridnode.daemon import check_config

    cfg = _load(args.file)
    issues = asyncio.run(check_config(cfg))
    if issues:
        raise ConfigError(issues)
    _out(f"ok: {args.file}")
    for line in summary(cfg):
        _out(f"  {line}")
    key = cfg.keys.gateway_keypair_path()
    if cfg.chain is not None:
        if key is None:
            _out("  keypair: none configured (expected as the systemd credential "
                 f"'{cfg.keys.credential}')")
        elif not key.exists():
            _out(f"  keypair: {key} does not exist yet (create it: gridnode keygen {key})")
        else:
            _out(f"  keypair: {key}")
    return EXIT_OK


def cmd_keygen(args: argparse.Namespace) -> int:
    try:
        keypair = generate_keypair_file(args.path)
    except KeyFileError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot write {args.path}: {exc.strerror}") from None
    _out(f"wrote {args.path} (mode 0600)")
    _out(f"public key: {keypair.pubkey()}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from gridnode import daemon
    from gridnode.config.machine import check_machine
    from gridnode.log import configure_logging, get_logger

    cfg = _load(_config_path(args))
    # What check-config finds on this machine is a configuration error here too (exit 2, which
    # systemd does not retry), named by its key, before anything starts.
    issues = check_machine(cfg, resolve=False)
    if issues:
        raise ConfigError(issues)
    configure_logging(cfg.logging)
    if does_nothing(cfg):
        get_logger(__name__).warning(
            "nothing to do: no meters and no [chain] are configured", config=cfg.source)
    return asyncio.run(daemon.run(cfg))


def cmd_db_migrate(args: argparse.Namespace) -> int:
    path = _database(args, must_exist=False)

    async def go(store: Store) -> int:
        version = await migrate.current_version(store)
        for mig in store.applied_now:
            _out(f"applied {mig.version:04d}_{mig.name}")
        _out(f"{path}: schema version {version}"
             + ("" if store.applied_now else " (up to date)"))
        return EXIT_OK

    return asyncio.run(_with_store(path, go))


def cmd_db_check(args: argparse.Namespace) -> int:
    path = _database(args)

    async def go(store: Store) -> int:
        result = await store.integrity_check(full=True)
        _out(f"{path}: {result}")
        return EXIT_OK if result == "ok" else EXIT_FAILURE

    return asyncio.run(_with_store(path, go))


def cmd_status(args: argparse.Namespace) -> int:
    path = _database(args)

    async def go(store: Store) -> int:
        now = time.time() * 1000
        counts = await operations.status_counts(store)
        _out(f"database: {path}")
        _out("operations: " + (", ".join(f"{k}={n}" for k, n in counts.items()) or "none"))
        oldest = await operations.oldest(store, transitions.PENDING)
        if oldest is not None:
            _out(f"oldest pending: #{oldest.id} {oldest.tx_type} "
                 f"{oldest.idempotency_key} ({_age(now - oldest.created_at_ms)} old)")
        else:
            _out("oldest pending: none")
        meters = await meter_reads.statuses(store)
        _out("meters:" + ("" if meters else " none"))
        for m in meters:
            line = f"  {m.meter_id} ({m.source}"
            line += f", {m.state}): " if m.state else "): "
            if m.read_at_ms is None:
                line += "no reading yet"
            else:
                export = (f"export={m.export_wh} Wh" if m.export_wh is not None
                          else "no export counter")
                line += (f"last reading {_iso(m.read_at_ms)} ({_age(now - m.read_at_ms)} "
                         f"ago) import={m.import_wh} Wh {export}")
            if m.state:
                why = ", ".join(f"{k}={v}" for k, v in sorted(m.rejections.items()))
                line += (f"; accepted={m.accepted} rejected={m.rejected}"
                         + (f" ({why})" if why else "") + f" errors={m.errors}")
                if m.last_error:
                    line += f" last error: {m.last_error}"
            _out(line)
        raised = [a for a in await stored_alerts.all_alerts(store) if a.raised]
        _out("alerts:" + ("" if raised else " none raised"))
        for a in raised:
            _out(f"  {a.name} since {_iso(a.changed_at_ms)}: {a.detail}")
        from gridnode.deliveries.cli import status_lines
        for line in await status_lines(store):
            _out(line)
        return EXIT_OK

    return asyncio.run(_with_store(path, go))


def cmd_outbox_list(args: argparse.Namespace) -> int:
    path = _database(args)

    async def go(store: Store) -> int:
        ops = await operations.newest(store, args.limit, args.status)
        _out(f"{'id':>8}  {'status':<10} {'attempts':>8}  {'updated (UTC)':<20} "
             "type / idempotency key")
        for op in ops:
            _out(f"{op.id:>8}  {op.status:<10} {op.attempts:>8}  "
                 f"{_iso(op.updated_at_ms):<20} {op.tx_type} {op.idempotency_key}"
                 + (f"  error: {op.last_error}" if op.last_error else ""))
        return EXIT_OK

    return asyncio.run(_with_store(path, go))


def cmd_outbox_show(args: argparse.Namespace) -> int:
    path = _database(args)

    async def go(store: Store) -> int:
        op = await operations.get(store, args.id)
        if op is None:
            raise operations.OperationNotFound(args.id)
        for field in dataclasses.fields(op):       # the columns, in the table's order
            key, value = field.name, getattr(op, field.name)
            if key.endswith("_at_ms") and value is not None:
                value = f"{_iso(value)} ({value})"
            elif key == "payload":
                value = json.dumps(value, indent=2, sort_keys=True).replace("\n", "\n    ")
            _out(f"{key}: {value}")
        attempts = await operations.attempts_of(store, args.id)
        _out(f"transactions: {len(attempts)}")
        for a in attempts:
            _out(f"  {a.signature} {a.observed_status} sent={a.send_count}x "
                 f"blockhash={a.blockhash} lvbh={a.last_valid_block_height}"
                 + (f" slot={a.slot}" if a.slot is not None else "")
                 + (f" err={a.err}" if a.err else ""))
        history = await operations.history(store, args.id)
        _out("history:" if history else "history: deleted by retention ([retention] "
             "detail_days); the times above are its steps")
        for h in history:
            _out(f"  {_iso(h.at_ms)} {h.old_status or '-'} -> {h.new_status}: "
                 f"{h.reason}" + (f" {h.details}" if h.details else ""))
        return EXIT_OK

    return asyncio.run(_with_store(path, go))


def cmd_outbox_retry(args: argparse.Namespace) -> int:
    path = _database(args)

    async def go(store: Store) -> int:
        async with store.write() as tx:
            old = await operations.operator_retry(tx, args.id, args.reason)
        _out(f"operation {args.id}: {old} -> {transitions.PENDING}")
        return EXIT_OK

    return asyncio.run(_with_store(path, go))


def cmd_register(args: argparse.Namespace) -> int:
    """Queue a user or meter registration in the outbox; the running node signs and submits it.

    The registry takes a registration only signed by the user's own wallet, so the wallet must be
    one of ``chain.user_keypairs``; the payload is checked by the tx type's payload model before
    anything is written, and the idempotency key makes a repeated command add nothing.
    """
    cfg = _load(_config_path(args))
    if cfg.chain is None:
        raise ConfigError([ConfigIssue(cfg.source, "chain", "<missing>", "a [chain] section: "
                                       "the node's pipeline signs and submits registrations")])
    wallets = [str(k.pubkey()) for k in load_configured_keypairs(
        cfg.source, cfg.chain.user_keypair_files())]
    signer = args.user if args.what == "user" else args.owner
    if signer is None:
        if len(wallets) != 1:
            raise UsageError(f"name the {'user' if args.what == 'user' else 'owner'}: the node "
                             f"holds {len(wallets)} user wallets (chain.user_keypairs)")
        signer = wallets[0]
    if signer not in wallets:
        raise UsageError(
            f"{signer} must sign its own registration, and no key in chain.user_keypairs is its "
            f"keypair (those are: {', '.join(wallets) or 'none'})")
    try:
        payload: Payload
        if args.what == "user":
            what = f"user {signer}"
            payload = UserRegistrationPayload(
                user=signer, user_type=args.type, location=args.location)
        else:
            what = f"meter {args.meter_id!r} of {signer}"
            payload = MeterRegistrationPayload(
                owner=signer, meter_id=args.meter_id, meter_type=args.type)
    except ValidationError as exc:
        raise UsageError("; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors())) from None
    op = new_operation(payload)
    path = Path(args.db) if args.db else cfg.node.database

    async def go(store: Store) -> tuple[int, bool]:
        async with store.write() as tx:
            return await operations.add(tx, op)

    op_id, created = asyncio.run(_with_store(path, go))
    where = f" --db {args.db}" if args.db else (f" -c {args.config}" if args.config else "")
    _out(f"operation {op_id}: {op.tx_type} of {what} "
         + ("queued" if created else "was queued before; nothing added"))
    _out(f"  the running node signs and submits it; follow it: gridnode outbox show {op_id}{where}")
    return EXIT_OK


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000))


def _age(ms: float) -> str:
    s = max(0, int(ms / 1000))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


# --- argument parsing -------------------------------------------------------------------------

def _choices(model: type[Payload], field: str) -> tuple[str, ...]:
    """The values a Literal field of a payload model allows (one source for CLI and checks)."""
    return typing.get_args(model.model_fields[field].annotation)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gridnode", description="Edge gateway of the GridTokenX energy market.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser, db: bool = False) -> argparse.ArgumentParser:
        p.add_argument("-c", "--config", help=f"configuration file (default: $GRIDNODE_CONFIG "
                       f"or {DEFAULT_CONFIG})")
        if db:
            p.add_argument("--db", help="database file (default: from the configuration)")
        return p

    with_config(sub.add_parser("run", help="run the daemon")).set_defaults(fn=cmd_run)
    p = sub.add_parser("check-config", help="validate a configuration file")
    p.add_argument("file")
    p.set_defaults(fn=cmd_check_config)
    p = sub.add_parser("keygen", help="write a new gateway keypair (mode 0600)")
    p.add_argument("path")
    p.set_defaults(fn=cmd_keygen)

    db = sub.add_parser("db", help="database maintenance").add_subparsers(
        dest="db_command", required=True, metavar="COMMAND")
    with_config(db.add_parser("migrate", help="apply pending schema migrations"),
                db=True).set_defaults(fn=cmd_db_migrate)
    with_config(db.add_parser("check", help="verify the database file (PRAGMA integrity_check)"),
                db=True).set_defaults(fn=cmd_db_check)

    with_config(sub.add_parser("status", help="outbox counts and last readings"),
                db=True).set_defaults(fn=cmd_status)

    ob = sub.add_parser("outbox", help="inspect and retry operations").add_subparsers(
        dest="outbox_command", required=True, metavar="COMMAND")
    p = with_config(ob.add_parser("list", help="list operations, newest first"), db=True)
    p.add_argument("--status", choices=transitions.OPERATION_STATUSES)
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(fn=cmd_outbox_list)
    p = with_config(ob.add_parser("show", help="one operation with its transactions and history"),
                    db=True)
    p.add_argument("id", type=int)
    p.set_defaults(fn=cmd_outbox_show)
    p = with_config(ob.add_parser("retry", help="send a failed, parked or expired operation "
                                  "back to pending"), db=True)
    p.add_argument("id", type=int)
    p.add_argument("--reason", help="note recorded in the audit log")
    p.set_defaults(fn=cmd_outbox_retry)

    reg = sub.add_parser("register", help="register a user or a meter on chain (through the "
                         "outbox)").add_subparsers(dest="what", required=True, metavar="WHAT")
    p = with_config(reg.add_parser("user", help="register a user wallet held by this node"),
                    db=True)
    p.add_argument("user", nargs="?", help="the wallet's public key (default: the only one in "
                   "chain.user_keypairs)")
    p.add_argument("--type", required=True, choices=_choices(UserRegistrationPayload, "user_type"))
    p.add_argument("--location", required=True, help="free text, at most 100 bytes")
    p.set_defaults(fn=cmd_register)
    p = with_config(reg.add_parser("meter", help="register a meter of a user wallet held by this "
                                   "node"), db=True)
    p.add_argument("meter_id", help="the meter's on-chain id (1-32 bytes), as in the meters "
                   "configuration")
    p.add_argument("--owner", help="the owner's public key (default: the only one in "
                   "chain.user_keypairs)")
    p.add_argument("--type", required=True,
                   choices=_choices(MeterRegistrationPayload, "meter_type"))
    p.set_defaults(fn=cmd_register)

    from gridnode.api.tokens import add_commands as token_commands
    token_commands(sub, with_config)
    from gridnode.market.cli import add_commands as market_commands
    market_commands(sub, with_config)
    from gridnode.deliveries.webhooks import add_commands as webhook_commands
    webhook_commands(sub, with_config)
    from gridnode.deliveries.cli import add_commands as delivery_commands
    delivery_commands(sub, with_config)
    from gridnode.settlement.reconciliation import add_commands as reconcile_commands
    reconcile_commands(sub, with_config)

    sub.add_parser("version", help="print the version").set_defaults(fn=cmd_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = int(args.fn(args))
        sys.stdout.flush()      # a reader that left shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        # `gridnode outbox list | head`: the reader left. Quiet, and the status a process killed
        # by SIGPIPE has; stdout goes to /dev/null so the final flush at exit cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except ConfigError as exc:
        _err(f"configuration error{'s' if len(exc.errors) > 1 else ''} ({len(exc.errors)}):")
        for issue in exc.errors:
            _err(f"  {issue}")
        return EXIT_USAGE
    except UsageError as exc:
        _err(f"gridnode: {exc}")
        return EXIT_USAGE
    except (CliError, StoreError, MigrationError) as exc:
        _err(f"gridnode: {exc}")
        return EXIT_FAILURE
    except (sqlite3.Error, OSError) as exc:
        _err(f"gridnode: database: {exc}")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_FAILURE
