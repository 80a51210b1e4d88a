"""Time for the meters subsystem, injectable so tests and simulators can run accelerated.

Everything in gridnode/meters asks a `Clock` for wall time and for sleeps; the daemon uses the
`SystemClock`. Tests, benchmarks and simulators pass one of the clocks of gridnode.testing.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol

__all__ = ["Clock", "SystemClock"]


class Clock(Protocol):
    def time(self) -> float:
        """Unix seconds (UTC)."""

    async def sleep(self, seconds: float) -> None:
        """Sleep `seconds` of this clock's time."""


class SystemClock:
    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


def __getattr__(name: str) -> Any:
    # The test clocks lived here; tests/meters/test_recorder.py and test_storage_full.py still
    # import them from this module. Loaded on that access only, never by the daemon.
    if name in ("AcceleratedClock", "ManualClock"):
        from gridnode import testing

        return getattr(testing, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
