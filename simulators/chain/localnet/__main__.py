"""python -m simulators.chain.localnet --port 8899 --slot-ms 400 --state var/localnet --bootstrap"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from typing import Any

from pydantic import ValidationError

from simulators.chain.localnet.faults import Faults
from simulators.chain.localnet.node import Localnet


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m simulators.chain.localnet",
                                description="Solana JSON-RPC + WebSocket localnet on LiteSVM")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8899, help="JSON-RPC, WebSocket and admin port")
    p.add_argument("--lag-port", type=int, default=None,
                   help="second port serving a view --lag-slots behind")
    p.add_argument("--slot-ms", type=float, default=400, help="slot length in milliseconds")
    p.add_argument("--manual", action="store_true",
                   help="no slot clock: slots advance only via POST /admin/advance")
    p.add_argument("--state", default=None,
                   help="state directory: keypairs, bootstrap.json, ledger snapshot")
    p.add_argument("--bootstrap", action=argparse.BooleanOptionalAction, default=True,
                   help="initialize the deployed programs (default on)")
    p.add_argument("--users", type=int, default=3, help="number of funded test users")
    p.add_argument("--block-cu-limit", type=int, default=48_000_000)
    p.add_argument("--min-priority-fee", type=int, default=0,
                   help="minimum compute-unit price (micro-lamports) a block admits")
    p.add_argument("--snapshot-interval", type=float, default=10.0, help="seconds")
    p.add_argument("--faults", default=None,
                   help='initial faults as JSON, e.g. \'{"drop_tx_rate": 0.1, "seed": 7}\'')
    for name, field in Faults.model_fields.items():
        flag = "--" + name.replace("_", "-")
        if field.annotation is bool:
            p.add_argument(flag, action="store_true", default=None, help=field.description)
        else:
            kind: Any = int if field.annotation in (int, int | None) else float
            p.add_argument(flag, type=kind, default=None, help=field.description)
    return p.parse_args(argv)


def faults_from(args: argparse.Namespace) -> Faults:
    values: dict[str, Any] = json.loads(args.faults) if args.faults else {}
    for name in Faults.model_fields:
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    return Faults.model_validate(values)


async def run(args: argparse.Namespace, faults: Faults) -> None:
    net = Localnet(args.port, host=args.host, slot_ms=args.slot_ms, manual=args.manual,
                   state_dir=args.state, bootstrap=args.bootstrap, users=args.users,
                   faults=faults, lag_port=args.lag_port, block_cu_limit=args.block_cu_limit,
                   min_priority_fee=args.min_priority_fee,
                   snapshot_interval_s=args.snapshot_interval)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with net:
        print(json.dumps(net.bootstrap, indent=2), flush=True)
        logging.info("localnet listening on %s (ws %s)", net.rpc_url, net.ws_url)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        faults = faults_from(args)
    except (ValidationError, ValueError) as exc:
        print(f"localnet: invalid faults: {exc}", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args, faults))
    return 0


if __name__ == "__main__":
    sys.exit(main())
