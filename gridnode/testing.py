"""Stand-ins for tests, benchmarks and the simulators; the daemon never imports this module.

Clocks that make time controllable, so a multi-hour day profile or a 40-minute outage fits into
seconds (`AcceleratedClock`) or moves only when a test says so (`ManualClock`). Both satisfy
gridnode.meters.clock.Clock, which is what the meters subsystem asks for.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gridnode.meters.recorder import Recorder

__all__ = ["AcceleratedClock", "ManualClock"]


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


async def drain(recorder: Recorder) -> None:
    """Wait until everything submitted to `recorder` so far is written (or its write failed)."""
    while not recorder._queue.empty() or not recorder._idle.is_set():
        await recorder._idle.wait()
        await asyncio.sleep(0)
