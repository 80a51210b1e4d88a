"""Time for the meters subsystem, injectable so tests and simulators can run accelerated.

Everything in gridnode/meters asks a `Clock` for wall time and for sleeps; the system clock is the
default. An `AcceleratedClock` runs `factor` times faster than real time from a chosen start, so a
multi-hour day profile or a 40-minute outage fits into seconds of test time.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


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


class AcceleratedClock:
    """Wall time that starts at `start` and advances `factor` times faster than real time."""

    def __init__(self, start: float | None = None, factor: float = 1.0) -> None:
        if factor <= 0:
            raise ValueError("factor must be > 0")
        self.start = time.time() if start is None else start
        self.factor = factor
        self._m0 = time.monotonic()

    def time(self) -> float:
        return self.start + (time.monotonic() - self._m0) * self.factor

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.factor)


class ManualClock:
    """A clock that moves only when told to; sleeps wait until the clock passes their deadline."""

    def __init__(self, start: float) -> None:
        self._now = start
        self._changed = asyncio.Event()

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds
        self._changed.set()
        self._changed = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        deadline = self._now + max(0.0, seconds)
        while self._now < deadline:
            await self._changed.wait()
