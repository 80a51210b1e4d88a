"""[intervals]: how readings become interval energy."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gridnode.config.base import Section


class IntervalsConfig(Section):
    minutes: Literal[1, 5, 15, 30, 60] = 15
    # After an outage, intervals older than this are not back-filled (the counters still hold
    # the energy; it lands in the first interval after the gap).
    max_backfill_hours: int = Field(default=72, ge=0, le=24 * 31)
