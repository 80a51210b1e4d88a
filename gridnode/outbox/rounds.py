"""The loop every pipeline stage runs: one round, then wait for a wake-up or the interval.

A round that fails is logged and the loop goes on: the state it works from is in the store, so
the next round picks up where this one stopped. An RPC outage is expected weather, logged at the
given level without a traceback; anything else is a bug worth a traceback, but still not a reason
to stop submitting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from gridnode.chain.rpc import RpcUnavailable
from gridnode.log import get_logger

log = get_logger(__name__)


async def run_rounds(name: str, round_once: Callable[[], Awaitable[Any]], interval_s: float, *,
                     wake: asyncio.Event | None = None, outage_level: str = "warning") -> None:
    """Run `round_once` forever, `interval_s` apart or sooner when `wake` is set."""
    while True:
        try:
            await round_once()
        except RpcUnavailable as exc:
            getattr(log, outage_level)(f"{name}: no RPC endpoint answered", error=str(exc)[:200])
        except Exception:  # noqa: BLE001 - one bad round must not stop the pipeline
            log.exception(f"{name} round failed")
        if wake is None:
            await asyncio.sleep(interval_s)
            continue
        try:
            async with asyncio.timeout(interval_s):
                await wake.wait()
        except TimeoutError:
            pass
        wake.clear()
