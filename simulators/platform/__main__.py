"""Run the platform simulator.

    python -m simulators.platform --port 8700 --db var/platform.db --secret whsec_... \
        [--secret whsec_... (a second one during a rotation)] [--fault '{"status": 503}']

Prints ``listening <url>`` once it accepts requests; stops on SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from pathlib import Path

from simulators.platform.server import Fault, PlatformSimulator


async def main() -> None:
    p = argparse.ArgumentParser(prog="python -m simulators.platform")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--db", required=True, help="SQLite file of what it accepted")
    p.add_argument("--secret", action="append", required=True,
                   help="a whsec_ secret requests may be signed with (repeat for two)")
    p.add_argument("--fault", action="append", default=[],
                   help='a fault as JSON, e.g. \'{"status": 429, "count": 5, "retry_after": 2}\'')
    args = p.parse_args()
    sim = PlatformSimulator(Path(args.db), args.secret, args.host, args.port,
                            [Fault(**json.loads(f)) for f in args.fault])
    await sim.start()
    print(f"listening {sim.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await sim.stop()


if __name__ == "__main__":
    asyncio.run(main())
