"""The loop every pipeline stage runs: one round, then wait for a wake-up or the interval.

A round that fails is logged and the loop goes on: the state it works from is in the store, so
the next round picks up where this one stopped. An RPC outage and a full disk are expected
weather: each is logged as a state (when it begins, a summary while it lasts, when it ends, with
its duration) without a traceback, never once per round. Anything else is a bug worth a
traceback, but still not a reason to stop submitting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from gridnode.chain.rpc import RpcUnavailable
from gridnode.log import Episode, get_logger
from gridnode.store import StorageFull

log = get_logger(__name__)


async def run_rounds(name: str, round_once: Callable[[], Awaitable[Any]], interval_s: float, *,
                     wake: asyncio.Event | None = None, outage_level: str = "warning") -> None:
    """Run `round_once` forever, `interval_s` apart or sooner when `wake` is set.

    A round that completes ends both states; `outage_level` is the level of the outage lines
    (a loop whose outage another loop already reports can lower it to debug).
    """
    outage = Episode(log, f"{name}: no RPC endpoint answered",
                     f"{name}: RPC endpoint answered again", level=outage_level)
    full = Episode(log, f"{name}: storage full, round paused", f"{name}: storage writable again")
    while True:
        try:
            await round_once()
        except RpcUnavailable as exc:
            outage.occurred(error=str(exc)[:300])
        except StorageFull as exc:
            full.occurred(error=str(exc)[:300])
        except Exception:  # noqa: BLE001 - one bad round must not stop the pipeline
            log.exception(f"{name} round failed")
        else:
            outage.cleared()
            full.cleared()
        if wake is None:
            await asyncio.sleep(interval_s)
            continue
        try:
            async with asyncio.timeout(interval_s):
                await wake.wait()
        except TimeoutError:
            pass
        wake.clear()
