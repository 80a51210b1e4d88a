"""The loop every pipeline stage runs: one round, then wait for a wake-up or the interval.

A round that fails is logged and the loop goes on: the state it works from is in the store, so
the next round picks up where this one stopped. An RPC outage and a full or failing disk are
expected weather: each is logged as a state (when it begins, a summary while it lasts, when it
ends, with its duration) without a traceback, never once per round. Anything else is a bug worth
a traceback, but still not a reason to stop submitting: its traceback is logged when it first
happens (or when it changes), and while it repeats it is a state like the others, so a bug that
fails every round cannot fill the SD card with the same traceback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from gridnode.chain.rpc import RpcUnavailable
from gridnode.log import Episode, get_logger
from gridnode.store import StorageFull, StorageIOError, StoreReadOnly

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
    failing = Episode(log, f"{name}: storage failing, round paused",
                      f"{name}: storage writable again")
    broken = Episode(log, f"{name}: round failed", f"{name}: rounds succeed again", level="error")
    last_bug: str | None = None
    while True:
        try:
            await round_once()
        except RpcUnavailable as exc:
            outage.occurred(error=str(exc)[:300])
        except StorageFull as exc:
            full.occurred(error=str(exc)[:300])
        except (StorageIOError, StoreReadOnly) as exc:
            failing.occurred(error=str(exc)[:300])
        except Exception as exc:  # noqa: BLE001 - one bad round must not stop the pipeline
            bug = f"{type(exc).__name__}: {exc}"[:300]
            if bug != last_bug:
                log.exception(f"{name} round failed")
                last_bug = bug
            broken.occurred(error=bug)
        else:
            for episode in (outage, full, failing, broken):
                episode.cleared()
            last_bug = None
        if wake is None:
            await asyncio.sleep(interval_s)
            continue
        try:
            async with asyncio.timeout(interval_s):
                await wake.wait()
        except TimeoutError:
            pass
        wake.clear()
