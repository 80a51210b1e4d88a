"""[logging]: level, per-logger levels and the line format."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gridnode.config.base import Section

Level = Literal["debug", "info", "warning", "error", "critical"]


class LoggingConfig(Section):
    level: Level = "info"
    format: Literal["kv", "json"] = "kv"
    # Per-logger overrides, e.g. {"gridnode.meters" = "debug"}.
    levels: dict[str, Level] = Field(default_factory=dict)
    # One summary line at info (readings, intervals, operations, chain health) this often, in
    # place of a line per event in steady state; 0 turns it off.
    summary_every_s: float = Field(default=600.0, ge=0, le=86400)
