"""[reconciliation]: the daily comparison of what the chain holds with what the store says.

Once a day, at `at` in the node's time zone (`node.timezone`), the node reconciles the local day
that ended before: registry meter totals against the finalized intervals, the oracle readings
that landed against the reading operations finalized, GRID balances against minted - delivered +
received, and trade records against settlement rows. A day missed while the node was down runs
at the next start, up to `catch_up_days` of them. The report is stored and written as JSON under
`report_dir` (default `<node.data_dir>/reports`).
"""

from __future__ import annotations

import datetime
import re
from pathlib import Path

from pydantic import Field, field_validator

from gridnode.config.base import Section

_HH_MM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class ReconciliationConfig(Section):
    enabled: bool = True
    # Local time of day (node.timezone) at which the previous day is reconciled, "HH:MM".
    at: str = "02:30"
    # A run whose time passed while the event loop slept or the clock jumped still runs when it
    # is at most this late (APScheduler's misfire grace); later ones are caught up at start.
    misfire_grace_s: float = Field(default=6 * 3600.0, ge=1, le=86400)
    # After an outage, at most this many of the most recent missed days are reconciled; older
    # ones are skipped with a warning (a clock that jumped years must not start years of runs).
    catch_up_days: int = Field(default=7, ge=1, le=366)
    # The catch-up at start waits this long after the start, behind the node's own start work.
    start_delay_s: float = Field(default=30.0, ge=0, le=3600)
    # Where the JSON reports go (default: <node.data_dir>/reports).
    report_dir: Path | None = None
    # Signatures of the oracle's account read per day at most (readings landed on chain).
    max_signatures: int = Field(default=100_000, ge=1000, le=10_000_000)

    @field_validator("at")
    @classmethod
    def _check_at(cls, value: str) -> str:
        if not _HH_MM.match(value):
            raise ValueError("a local time of day as \"HH:MM\" (24 h), such as \"02:30\"")
        return value

    @property
    def at_time(self) -> datetime.time:
        hour, minute = self.at.split(":")
        return datetime.time(int(hour), int(minute))

    def reports(self, data_dir: Path) -> Path:
        return self.report_dir if self.report_dir is not None else data_dir / "reports"
