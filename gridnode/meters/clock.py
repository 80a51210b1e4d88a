"""Time for the meters subsystem, injectable so tests and simulators can run accelerated.

Everything in gridnode/meters asks a `Clock` for wall time and for sleeps; the daemon uses the
`SystemClock`. Tests, benchmarks and simulators pass one of the clocks of gridnode.testing.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

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

